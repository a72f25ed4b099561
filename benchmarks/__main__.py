"""Run every ``benchmarks/bench_*.py`` module's ``main()``, or only those named: ``python -m benchmarks operator``."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import benchmarks


def _modules(selected: list[str]) -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    if selected:
        names = [n for n in names if n.removeprefix("bench_") in selected or n in selected]
    return names


def main() -> None:
    for name in _modules(sys.argv[1:]):
        print(f"== {name}", flush=True)
        importlib.import_module(f"benchmarks.{name}").main()


main()
