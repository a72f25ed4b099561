"""Run every ``benchmarks/bench_*.py`` module's ``main()``, or only those named: ``python -m benchmarks metrics``."""

from __future__ import annotations

import importlib
import platform
import sys
import time
from pathlib import Path


def main(selected: list[str]) -> None:
    names = sorted(path.stem.removeprefix("bench_") for path in Path(__file__).parent.glob("bench_*.py"))
    unknown = sorted(set(selected) - set(names))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
    print(f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}, {_cpu()}")
    for name in selected or names:
        print(f"\n## bench_{name}")
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.bench_{name}").main()
        print(f"(bench_{name} took {time.perf_counter() - started:.1f} s)")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main(sys.argv[1:])
