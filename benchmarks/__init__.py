"""Benchmarks: ``python -m benchmarks`` (``make bench``) runs every ``bench_*.py`` module's ``main()``.

Results are recorded by hand, with their command, in ``docs/benchmarks.md``; performance goals live here and
never as timed assertions in tests.
"""
