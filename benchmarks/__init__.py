"""Benchmarks, run by ``make bench`` (``python -m benchmarks``); results go to docs/benchmarks.md by hand.

Each ``bench_*.py`` module of this package has a ``main() -> None`` that prints its results; `__main__` runs
them all, or those named on the command line (``python -m benchmarks metrics`` runs ``bench_metrics``).
Benchmarks report per-item costs and ratios, never pass/fail: goals are stated next to the numbers.
"""
