"""Simulator speed (issue 5): one policy over the one-hour Azure conv trace, and the whole policy scoreboard.

Goals: one policy (TokenScale, Llama-3.1-8B H100, the raw trace: 19,366 requests, 3,502 ticks) in <= 3 s on one
core; the scoreboard of docs/results.md at the profiles' cold start (4 traces × profiles, 10 policies: 40 runs, and
the oracle searches before them) in <= 2 minutes, run as `make bench-policies` runs it (``JOBS`` worker processes,
default 2). CPU seconds (this process and its workers) are reported beside wall seconds because the machine may be
shared; their sum is what one core would take.

Run: ``.venv/bin/python -m benchmarks sim`` (or ``make bench``).
"""

from __future__ import annotations

import os
import resource
import time

from benchmarks import policies
from tokenscale.api import profiles
from tokenscale.sim import scoreboard, traces

REPEATS = 3
JOBS = int(os.environ.get("JOBS", "2"))


def _cpu_seconds() -> float:
    """CPU of this process and of its finished worker processes (user + system)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _one_policy() -> None:
    trace = traces.load_trace("azure-conv")
    profile = profiles.load_profile("llama-3.1-8b-h100")
    scenario = scoreboard.Scenario.prepare(trace_name="azure-conv", trace=trace, profile=profile)
    _ = scenario.oracle  # the oracle's search (simulator replays) is timed with the scoreboard's preparation
    best_wall = best_cpu = float("inf")
    for _ in range(REPEATS):
        wall, cpu = time.perf_counter(), time.process_time()
        record, outcome = scoreboard.run_one(scenario, "tokenscale")
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    ticks = len(outcome.timeline.seconds)
    print(
        f"one policy, azure-conv (raw, {record.requests} requests, {ticks} ticks), tokenscale on llama-3.1-8b-h100: "
        f"{best_wall:.2f} s wall, {best_cpu:.2f} s CPU (best of {REPEATS}; goal <= 3 s) = "
        f"{1e6 * best_cpu / record.requests:.0f} us CPU per request, {1e3 * best_cpu / ticks:.2f} ms per tick"
    )


def _scoreboard() -> None:
    cpu = _cpu_seconds()
    wall = time.perf_counter()
    scenarios = policies.prepare_scenarios(jobs=JOBS)
    prepare_cpu, prepare_wall = _cpu_seconds() - cpu, time.perf_counter() - wall
    print(
        f"scoreboard preparation (4 oracle searches and goodputs, once for both tables), {JOBS} process(es): "
        f"{prepare_wall:.1f} s wall, {prepare_cpu:.1f} s CPU"
    )
    cpu = _cpu_seconds()
    table = policies.run_table(scenarios=scenarios, cold_start_seconds=None, jobs=JOBS)
    cpu_seconds = _cpu_seconds() - cpu
    requests = sum(r.requests for r in table.records)
    print(
        f"scoreboard at the profiles' cold start, {JOBS} process(es): {len(table.records)} runs, {requests} requests: "
        f"{table.seconds:.1f} s wall, {cpu_seconds:.1f} s CPU = {cpu_seconds / len(table.records):.2f} s per run, "
        f"{1e6 * cpu_seconds / requests:.0f} us per request; with the preparation {prepare_wall + table.seconds:.1f} s "
        f"wall (goal <= 120 s), {prepare_cpu + cpu_seconds:.1f} s CPU"
    )


def main() -> None:
    _one_policy()
    _scoreboard()


if __name__ == "__main__":
    main()
