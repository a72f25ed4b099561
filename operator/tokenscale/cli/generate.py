"""Generated files: one producer per path, written by `tokenscale generate` and checked by ``--check``.

Every generated artefact of the repository (CRDs, the chart's copy of them, dashboards, reference docs) is
listed in `ARTEFACTS` with the function that produces its text from the one source in code. Files rendered
from other files of the repository (the static manifests, from the chart, by helm) are in `RENDERED`; their
producers take the repository root and run after `ARTEFACTS` are written, since they read them. `make verify`
runs ``--check``, which fails on any drift, so a hand edit or a forgotten regeneration cannot land.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from tokenscale.api import crdgen, crdref
from tokenscale.cli import chart
from tokenscale.controller import dashboards, peering

__all__ = ["ARTEFACTS", "RENDERED", "generate"]

CRD_PATH = "crds/tokenscale.io_disaggregatedinferenceservices.yaml"
PEERING_CRD_PATH = "crds/kopf.dev_peerings.yaml"
CHART = chart.CHART_DIR.as_posix()

ARTEFACTS: dict[str, Callable[[], str]] = {
    CRD_PATH: crdgen.crd_yaml,
    PEERING_CRD_PATH: peering.peering_crds_yaml,
    "docs/reference/crd.md": crdref.crd_reference_markdown,
    "docs/dashboards.md": dashboards.dashboards_markdown,
    # Helm installs what is in the chart's crds/ folder: the same CRDs, copied.
    f"{CHART}/{CRD_PATH}": crdgen.crd_yaml,
    f"{CHART}/{PEERING_CRD_PATH}": peering.peering_crds_yaml,
    **{
        f"{CHART}/dashboards/{dashboard.file_name}": partial(dashboards.grafana_json, dashboard)
        for dashboard in dashboards.dashboards()
    },
}

RENDERED: dict[str, Callable[[Path], str]] = {
    "docs/reference/helm-values.md": chart.values_reference_markdown,
    **{f"deploy/base/{name}": partial(chart.base_file, name) for name in chart.BASE_FILES},
    "deploy/install.yaml": chart.install_yaml,
}


def generate(
    check: Annotated[bool, typer.Option("--check", help="Write nothing; fail if a committed file differs.")] = False,
    root: Annotated[Path, typer.Option(help="Repository root.")] = Path("."),
) -> None:
    """Write every generated file from its source, or check that the committed ones match."""
    drifted: list[str] = []
    producers: list[tuple[str, Callable[[], str]]] = [
        *ARTEFACTS.items(),
        *((relative, partial(render, root)) for relative, render in RENDERED.items()),
    ]
    for relative, produce in producers:
        path = root / relative
        try:
            wanted = produce()
        except chart.ChartRenderError as exc:
            typer.echo(f"{relative}: {exc}", err=True)
            raise typer.Exit(2) from exc
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
