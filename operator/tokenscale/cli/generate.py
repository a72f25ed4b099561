"""Generated files: one producer per path, written by `tokenscale generate` and checked by ``--check``.

Every generated artefact of the repository (CRDs, the chart's copy of them, dashboards, reference docs) is
listed in `ARTEFACTS` with the function that produces its text from the one source in code. `make verify`
runs ``--check``, which fails on any drift, so a hand edit or a forgotten regeneration cannot land.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from tokenscale.api import crdgen
from tokenscale.controller import peering

__all__ = ["ARTEFACTS", "generate"]

CRD_PATH = "crds/tokenscale.io_disaggregatedinferenceservices.yaml"

ARTEFACTS: dict[str, Callable[[], str]] = {
    CRD_PATH: crdgen.crd_yaml,
    "crds/kopf.dev_peerings.yaml": peering.peering_crds_yaml,
}


def generate(
    check: Annotated[bool, typer.Option("--check", help="Write nothing; fail if a committed file differs.")] = False,
    root: Annotated[Path, typer.Option(help="Repository root.")] = Path("."),
) -> None:
    """Write every generated file from its source, or check that the committed ones match."""
    drifted: list[str] = []
    for relative, produce in ARTEFACTS.items():
        path = root / relative
        wanted = produce()
        current = path.read_text() if path.exists() else ""
        if current == wanted:
            continue
        if check:
            drifted.append(relative)
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), wanted.splitlines(keepends=True), relative, "generated"
            )
            typer.echo("".join(list(diff)[:60]), err=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted)
            typer.echo(f"wrote {relative}")
    if drifted:
        typer.echo(f"generated files differ from their source: {', '.join(drifted)}; run `make crds`", err=True)
        raise typer.Exit(1)
