"""Convertible decoders stay converted through a busy period instead of flapping (docs/algorithms.md §4, "Flapping").

The segment: the first 240 s of azure-conv at 4× on the 8B H100 profile, as on the scoreboard. One convertible
decoder (the scoreboard's count from the burst ratio) and arrivals at about half to nine tenths of the Ready
prefill capacity, so the prompt backlog crosses the high-water mark for a tick every few seconds and the converted
decoder drains it at once. Without restore stabilisation that decoder was converted 13 times in the segment, each
time for 2–7 s.

The bound is the rule's own guarantee: a pod restored on the low-water mark was converted at least S seconds
before, and a restored pod converts again a tick later at the earliest, so one pod converts at most
``floor(T / (S + tick)) + 1`` times in T seconds (S = 30 s, tick 1 s, T = 248 s of ticks: 9). The expiry and TPOT
restores are not bounded by S; neither occurs in this segment.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from tokenscale.api.profiles import load_profile
from tokenscale.core.settings import ScalingSettings
from tokenscale.sim import loop, scoreboard, traces


@pytest.fixture(scope="module")
def conv_segment() -> scoreboard.Scenario:
    return scoreboard.Scenario.prepare(
        trace_name="azure-conv",
        trace=traces.load_trace("azure-conv"),
        profile=load_profile("llama-3.1-8b-h100"),
        rate_scale=4.0,
        seed=0,
        duration_seconds=240.0,
    )


def _run(scenario: scoreboard.Scenario, settings: ScalingSettings) -> loop.RunOutcome:
    prefill, decode = scenario.initial_counts()
    return loop.run_policy(trace=scenario.trace, settings=settings, initial_prefill=prefill, initial_decode=decode)


def _conversion_periods_seconds(outcome: loop.RunOutcome) -> list[float]:
    """How long each conversion that ended lasted: from the tick that converted to the tick that restored."""
    periods, started = [], None
    for now, converted in zip(outcome.timeline.seconds, outcome.timeline.converted, strict=True):
        if converted and started is None:
            started = now
        elif not converted and started is not None:
            periods.append(now - started)
            started = None
    return periods


def _flip_bound(settings: ScalingSettings, outcome: loop.RunOutcome) -> int:
    knobs = settings.tokenscale
    span = outcome.timeline.seconds[-1]
    per_pod = math.floor(span / (knobs.restore_stabilization_seconds + settings.tick_seconds)) + 1
    return knobs.convertible_decoders_max * per_pod


def test_busy_period_keeps_its_conversion_instead_of_flapping(conv_segment: scoreboard.Scenario) -> None:
    stable = conv_segment.settings_for("tokenscale")
    assert stable.tokenscale.convertible_decoders_max == 1
    flapping = dataclasses.replace(
        stable, tokenscale=dataclasses.replace(stable.tokenscale, restore_stabilization_seconds=0.0)
    )

    before = _run(conv_segment, flapping)
    after = _run(conv_segment, stable)

    # The segment flaps without the rule: more conversions than the rule allows, each over within seconds.
    assert before.conversions > _flip_bound(stable, before)
    assert max(_conversion_periods_seconds(before)) < stable.tokenscale.restore_stabilization_seconds
    # With it: conversions still happen, within the bound, and each lasts at least the stabilisation.
    assert 1 <= after.conversions <= _flip_bound(stable, after)
    periods = _conversion_periods_seconds(after)
    assert periods
    assert min(periods) >= stable.tokenscale.restore_stabilization_seconds
