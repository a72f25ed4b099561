"""Run every ``benchmarks/bench_*.py`` module's ``main()`` in name order."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path


def main() -> None:
    folder = Path(__file__).resolve().parent
    for module in sorted(m.name for m in pkgutil.iter_modules([str(folder)]) if m.name.startswith("bench_")):
        importlib.import_module(f"benchmarks.{module}").main()


if __name__ == "__main__":
    main()
