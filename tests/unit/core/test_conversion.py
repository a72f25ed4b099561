"""Convertible decoders: how many, which, when they go back.

Toy numbers (tests/unit/core/helpers.py) with 500-token chunks: a decoder running B requests takes
10 + 0.1·B + 15 ms per mixed step, so it adds 500 / step prefill tokens/s (20k at B = 0, 16.7k at B = 50);
it may convert while the step is <= 0.8 x 100 ms (B <= 550) and is restored above 100 ms (B > 750).
Each Ready prefiller gives 10k tok/s.
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.core.helpers import decode_pods, load, make_settings, observation, pod, prefill_pods

from tokenscale.core import conversion, reasons
from tokenscale.core.settings import ScalingSettings, TokenScaleSettings
from tokenscale.core.types import PodView, ServingRole

KNOBS = TokenScaleSettings(prefill_chunk_tokens=500, convertible_decoders_max=2)
SETTINGS = make_settings(tokenscale=KNOBS)
NOW = 1000.0
READY_CAPACITY = 20_000.0  # two Ready prefillers


def plan(
    decoders: tuple[PodView, ...],
    arriving: float,
    *,
    state: conversion.ConversionState | None = None,
    settings: ScalingSettings = SETTINGS,
) -> tuple[conversion.ConversionPlan, conversion.ConversionState]:
    obs = observation(now=NOW, prefill=prefill_pods(2), decode=decoders, signals=load(arriving))
    return conversion.plan_conversion(
        settings=settings,
        observation=obs,
        state=state or conversion.ConversionState(),
        arriving_prompt_tokens_per_second=arriving,
        ready_prefill_tokens_per_second=READY_CAPACITY,
        enabled=True,
    )


@pytest.mark.parametrize(
    ("running", "expected"),
    [
        pytest.param(0, 20_000.0, id="idle-decoder"),  # 500 / 25 ms
        pytest.param(50, 500 / 0.030, id="busy-decoder"),  # 500 / 30 ms
    ],
)
def test_converted_capacity_is_chunk_over_mixed_step(running: float, expected: float) -> None:
    got = conversion.converted_prefill_tokens_per_second(
        perf=SETTINGS.profile.perf, pod=pod("d", running=running), chunk_tokens=500
    )
    assert got == pytest.approx(expected)


def test_burst_converts_least_loaded_decoders_until_covered() -> None:
    # 45k arriving vs 20k Ready: 25k short. d1 (B=0) gives 20k, d2 (B=50) 16.7k: covered after two.
    decoders = (pod("d0", running=100), pod("d1", running=0), pod("d2", running=50), pod("d3", running=200))
    got, state = plan(decoders, 45_000)
    assert got.convert_pods == ("d1", "d2")
    assert got.restore_pods == ()
    assert got.converted_after == 2
    assert got.converted_prefill_tokens_per_second == pytest.approx(20_000 + 500 / 0.030)
    assert [r.code for r in got.reasons] == [reasons.BURST_CONVERSION]
    assert dict(state.converted_since) == {"d1": NOW, "d2": NOW}


def test_conversion_stops_at_the_cap() -> None:
    settings = make_settings(tokenscale=dataclasses.replace(KNOBS, convertible_decoders_max=1))
    got, _ = plan(decode_pods(3), 60_000, settings=settings)
    assert got.convert_pods == ("d0",)
    assert [r.code for r in got.reasons] == [reasons.BURST_CONVERSION, reasons.CONVERSION_CAPPED]


def test_decoder_without_tpot_headroom_is_skipped() -> None:
    # d0 runs 600: 10 + 60 + 15 = 85 ms > 80 ms; d1 at 100 runs 35 ms
    got, _ = plan((pod("d0", running=600), pod("d1", running=100)), 25_000)
    assert got.convert_pods == ("d1",)


@pytest.mark.parametrize(
    "decoder",
    [
        pytest.param(pod("d0", ready=False), id="unready"),
        pytest.param(pod("d0", known=False), id="unknown-load"),
    ],
)
def test_only_ready_decoders_with_fresh_metrics_convert(decoder: PodView) -> None:
    got, _ = plan((decoder,), 45_000)
    assert got.convert_pods == ()
    assert reasons.CONVERSION_CAPPED in [r.code for r in got.reasons]


def test_no_conversion_below_the_high_water_mark() -> None:
    got, _ = plan(decode_pods(2), 19_999)
    assert (got.convert_pods, got.restore_pods, got.reasons) == ((), (), ())


def test_already_converted_capacity_counts() -> None:
    # d0 converted (20k): 20k Ready + 20k converted still 5k short of 45k -> one more
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 5), *decode_pods(3)[1:])
    got, _ = plan(decoders, 45_000)
    assert got.convert_pods == ("d1",)
    assert got.converted_after == 2


def test_expired_conversion_is_restored_and_rests() -> None:
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 300), pod("d1"))
    got, state = plan(decoders, 45_000)
    assert got.restore_pods == ("d0",)
    assert got.convert_pods == ("d1",)  # the burst goes on; d0 may not convert again
    assert reasons.CONVERSION_EXPIRED in [r.code for r in got.reasons]
    assert dict(state.resting_since) == {"d0": NOW}


def test_restored_pod_rests_for_one_max_conversion_time() -> None:
    decoders = (pod("d0"),)
    resting = conversion.ConversionState(resting_since=(("d0", NOW - 299),))
    assert plan(decoders, 45_000, state=resting)[0].convert_pods == ()
    rested = conversion.ConversionState(resting_since=(("d0", NOW - 300),))
    assert plan(decoders, 45_000, state=rested)[0].convert_pods == ("d0",)


def test_conversion_time_without_timestamp_is_remembered() -> None:
    # the label carries no timestamp: the plan remembers when it first saw d0 converted
    decoders = (pod("d0", serving=ServingRole.CONVERTED),)
    state = conversion.ConversionState(converted_since=(("d0", NOW - 300),))
    got, _ = plan(decoders, 45_000, state=state)
    assert got.restore_pods == ("d0",)


def test_low_water_restores_after_the_configured_ticks() -> None:
    # 10k arriving < 0.9 x 20k Ready: the first tick counts, the second restores
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 10), pod("d1"))
    first, state = plan(decoders, 10_000)
    assert first.restore_pods == ()
    assert state.low_water_ticks == 1
    second, state = plan(decoders, 10_000, state=state)
    assert second.restore_pods == ("d0",)
    assert [r.code for r in second.reasons] == [reasons.CONVERSION_LOW_WATER]
    assert state.low_water_ticks == 0


def test_low_water_count_restarts_when_load_returns() -> None:
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 10),)
    _, state = plan(decoders, 10_000)
    _, state = plan(decoders, 19_000, state=state)  # above 18k: not low
    assert state.low_water_ticks == 0


def test_converted_decoder_breaking_tpot_is_restored() -> None:
    # 800 running: 10 + 80 + 15 = 105 ms > 100 ms
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 10, running=800),)
    got, _ = plan(decoders, 45_000)
    assert got.restore_pods == ("d0",)
    assert reasons.CONVERSION_BREAKS_TPOT in [r.code for r in got.reasons]


def test_expired_conversions_need_no_load() -> None:
    decoders = (
        pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 301),
        pod("d1", serving=ServingRole.CONVERTED, converted_since=NOW - 10),
        pod("d2", serving=ServingRole.CONVERTED),
    )
    obs = observation(now=NOW, prefill=prefill_pods(1), decode=decoders, signals=None)
    assert conversion.expired_conversions(settings=SETTINGS, observation=obs) == ("d0",)
