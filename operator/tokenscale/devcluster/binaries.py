"""Where the control-plane binaries are: the cache directory that ``tools/build-cluster-bins.sh`` fills.

The build script keys the directory on the pinned versions (``~/.cache/tokenscale/bin/<pins>/``) and answers
``--locate`` without Go, so the key is computed in one place only. ``TOKENSCALE_CLUSTER_BIN_DIR`` overrides the
lookup (an installed package has no ``tools/``, or someone built the binaries elsewhere).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BINARY_NAMES", "BIN_DIR_ENV", "Binaries", "BinariesMissingError", "locate_binaries"]

BINARY_NAMES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)
BIN_DIR_ENV = "TOKENSCALE_CLUSTER_BIN_DIR"
_BUILD_SCRIPT = Path("tools") / "build-cluster-bins.sh"
_HOW_TO_BUILD = (
    "build them with `make cluster-bins` (Go 1.26 and the Go module proxy; the first build takes long, "
    "see docs/benchmarks.md), or point TOKENSCALE_CLUSTER_BIN_DIR at a directory that holds them"
)


class BinariesMissingError(RuntimeError):
    """The binaries are not built; the message says how to build them."""


@dataclass(frozen=True)
class Binaries:
    """A directory holding every binary of `BINARY_NAMES`."""

    directory: Path

    def path(self, name: str) -> Path:
        """Absolute path of one binary; ``name`` is one of `BINARY_NAMES`."""
        if name not in BINARY_NAMES:
            raise ValueError(f"unknown binary {name!r}; known: {', '.join(BINARY_NAMES)}")
        return self.directory / name


def _repository_root() -> Path | None:
    """The checkout this package runs from (editable install), found by the build script beside it."""
    for base in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (base, *base.parents):
            if (candidate / _BUILD_SCRIPT).is_file():
                return candidate
    return None


def _checked(directory: Path) -> Binaries:
    missing = [name for name in BINARY_NAMES if not os.access(directory / name, os.X_OK)]
    if missing:
        raise BinariesMissingError(f"cluster binaries missing from {directory}: {', '.join(missing)}; {_HOW_TO_BUILD}")
    return Binaries(directory=directory)


def locate_binaries() -> Binaries:
    """The binaries for this checkout's pins; raises `BinariesMissingError` saying how to build them."""
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        return _checked(Path(override).expanduser())
    root = _repository_root()
    if root is None:
        raise BinariesMissingError(f"cannot find {_BUILD_SCRIPT} above {Path(__file__).parent}; {_HOW_TO_BUILD}")
    located = subprocess.run(
        ["bash", str(root / _BUILD_SCRIPT), "--locate"], capture_output=True, text=True, check=False
    )
    lines = located.stdout.strip().splitlines()
    if not lines:
        raise BinariesMissingError(f"{_BUILD_SCRIPT} --locate failed: {located.stderr.strip()}; {_HOW_TO_BUILD}")
    return _checked(Path(lines[-1]))
