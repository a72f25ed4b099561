"""PNG plots of a scoreboard: provisioning against load over time, and latency CDFs, per (trace, profile).

matplotlib is optional (the ``plots`` extra); it is imported only here, lazily, and its absence is reported as
`PlotsUnavailableError` with the command that installs it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokenscale.sim.loop import RunOutcome
from tokenscale.sim.report import ttft_objectives_seconds
from tokenscale.sim.scoreboard import RunRecord, Scenario

__all__ = ["PlotsUnavailableError", "write_plots"]

_SMOOTH_SECONDS = 10


class PlotsUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 - optional dependency, imported only when plots are asked for

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as error:
        raise PlotsUnavailableError(
            "plots need matplotlib: pip install 'tokenscale[plots]' (or uv sync, which installs the dev group)"
        ) from error
    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _smooth(values: Sequence[float], width: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    array = np.asarray(values, dtype=np.float64)
    if len(array) < width:
        return array
    kernel = np.ones(width) / width
    return np.convolve(array, kernel, mode="same")


def write_plots(*, scenario: Scenario, runs: Sequence[tuple[RunRecord, RunOutcome]], directory: Path) -> list[Path]:
    """Write ``<trace>_<profile>_provisioning.png`` and ``<trace>_<profile>_latency.png``; returns their paths."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{_slug(scenario.trace_name)}_{_slug(scenario.profile.name)}"
    written: list[Path] = []

    figure, (load_axis, prefill_axis, decode_axis) = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    first = runs[0][1].timeline
    minutes = np.asarray(first.seconds) / 60.0
    load_axis.plot(minutes, _smooth(first.arriving_prompt_tokens_per_second, _SMOOTH_SECONDS) / 1000.0, color="k")
    load_axis.set_ylabel("arriving prompt\nktokens/s (10 s mean)")
    load_axis.set_title(f"{scenario.trace_name} x{scenario.rate_scale:g} on {scenario.profile.name}")
    schedule = scenario.oracle.schedule
    bins = np.arange(len(schedule.prefill_instances)) * schedule.bin_seconds / 60.0
    prefill_axis.step(bins, schedule.prefill_instances, where="post", color="0.6", label="oracle schedule", linewidth=2)
    decode_axis.step(bins, schedule.decode_instances, where="post", color="0.6", label="oracle schedule", linewidth=2)
    for record, outcome in runs:
        timeline = outcome.timeline
        t = np.asarray(timeline.seconds) / 60.0
        prefill_axis.plot(t, timeline.prefill_provisioned, label=record.policy, linewidth=1)
        decode_axis.plot(t, timeline.decode_provisioned, label=record.policy, linewidth=1)
    prefill_axis.set_ylabel("prefill instances\nprovisioned")
    decode_axis.set_ylabel("decode instances\nprovisioned")
    decode_axis.set_xlabel("minutes")
    prefill_axis.legend(loc="upper right", fontsize="small", ncol=3)
    figure.tight_layout()
    path = directory / f"{stem}_provisioning.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.append(path)

    figure, (ttft_axis, tpot_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for record, outcome in runs:
        for axis, values in (
            (ttft_axis, outcome.outcomes.ttft_seconds),
            (tpot_axis, outcome.outcomes.tpot_seconds),
        ):
            finite = np.sort(values[np.isfinite(values)])
            if len(finite):
                axis.plot(finite, np.arange(1, len(finite) + 1) / len(values), label=record.policy, linewidth=1)
    objectives = ttft_objectives_seconds(slo=scenario.slo, input_tokens=scenario.trace.input_tokens)
    for seconds in sorted(set(objectives.tolist())):
        ttft_axis.axvline(seconds, color="0.7", linestyle=":", linewidth=1)
    tpot_axis.axvline(scenario.slo.tpot_seconds, color="0.7", linestyle=":", linewidth=1)
    ttft_axis.set_xscale("log")
    ttft_axis.set_xlabel("TTFT seconds (dotted: tier objectives)")
    tpot_axis.set_xlabel("TPOT seconds (dotted: objective)")
    ttft_axis.set_ylabel("share of requests")
    ttft_axis.legend(loc="lower right", fontsize="small")
    figure.suptitle(f"latency CDFs: {scenario.trace_name} x{scenario.rate_scale:g} on {scenario.profile.name}")
    figure.tight_layout()
    path = directory / f"{stem}_latency.png"
    figure.savefig(path, dpi=100)
    plt.close(figure)
    written.append(path)
    return written
