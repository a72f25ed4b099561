"""Convertible decoders: how many, which, when they go back.

Toy numbers (tests/unit/core/helpers.py): a decode step over B requests takes 10 + 0.1·B ms and a chunk of c
prefill tokens folded into it 0.01·c ms more (no second fixed cost). With chunks capped at 500 tokens, the budget
within 0.8 × 100 ms is min(500, (70 − 0.1·B) / 0.01) tokens: 500 up to B = 650, 20 at B = 698, 10 at B = 699 (below
the 16-token minimum: no conversion). A converted decoder adds 500 / (15 + 0.1·B ms) prefill tokens/s (33.3k at
B = 0, 25k at B = 50). It is restored once its decode step leaves fewer than 16 tokens of room within 100 ms:
(90 − 0.1·B) / 0.01 < 16, i.e. B >= 899. Each Ready prefiller gives 10k tok/s.
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.core.helpers import decode_pods, load, make_settings, observation, pod, prefill_pods

from tokenscale.core import conversion, reasons
from tokenscale.core.profile import PerfModel
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
        pytest.param(0, 500 / 0.015, id="idle-decoder"),  # 500 / (10 + 5 ms)
        pytest.param(50, 25_000.0, id="busy-decoder"),  # 500 / (15 + 5 ms)
    ],
)
def test_converted_capacity_is_chunk_over_mixed_step(running: float, expected: float) -> None:
    got = conversion.converted_prefill_tokens_per_second(
        perf=SETTINGS.profile.perf, pod=pod("d", running=running), chunk_tokens=500
    )
    assert got == pytest.approx(expected)


def test_burst_converts_least_loaded_decoders_until_covered() -> None:
    # 65k arriving vs 20k Ready: 45k short. d1 (B=0) gives 33.3k, d2 (B=50) 25k: covered after two.
    decoders = (pod("d0", running=100), pod("d1", running=0), pod("d2", running=50), pod("d3", running=200))
    got, state = plan(decoders, 65_000)
    assert got.convert_pods == ("d1", "d2")
    assert got.restore_pods == ()
    assert got.converted_after == 2
    assert got.converted_prefill_tokens_per_second == pytest.approx(500 / 0.015 + 25_000)
    assert [r.code for r in got.reasons] == [reasons.BURST_CONVERSION]
    assert dict(state.converted_since) == {"d1": NOW, "d2": NOW}


def test_conversion_stops_at_the_cap() -> None:
    settings = make_settings(tokenscale=dataclasses.replace(KNOBS, convertible_decoders_max=1))
    got, _ = plan(decode_pods(3), 60_000, settings=settings)
    assert got.convert_pods == ("d0",)
    assert [r.code for r in got.reasons] == [reasons.BURST_CONVERSION, reasons.CONVERSION_CAPPED]


@pytest.mark.parametrize(
    ("running", "converts", "capacity"),
    [
        # 10 + 69.8 ms of decode leaves 0.2 ms: a 20-token chunk, 20 / 80 ms
        pytest.param(698, True, 250.0, id="room-for-20-tokens"),
        # 10 + 69.9 ms leaves 0.1 ms: 10 tokens, below the 16-token minimum
        pytest.param(699, False, 0.0, id="room-for-10-tokens"),
    ],
)
def test_decoder_converts_only_with_room_for_a_minimum_chunk(running: int, converts: bool, capacity: float) -> None:
    got, _ = plan((pod("d0", running=running),), 25_000)
    assert got.convert_pods == (("d0",) if converts else ())
    assert got.converted_prefill_tokens_per_second == pytest.approx(capacity)


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
    # d0 converted (33.3k): 20k Ready + 33.3k converted still 6.7k short of 60k -> one more
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 5), *decode_pods(3)[1:])
    got, _ = plan(decoders, 60_000)
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
    # 10k arriving < 0.9 x 20k Ready: the first tick counts, the second restores (d0 converted 60 s ago, past the
    # 30 s restore stabilisation)
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 60), pod("d1"))
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


@pytest.mark.parametrize(
    ("running", "restored"),
    [
        pytest.param(898, False, id="room-for-20-tokens-within-tpot"),  # 10 + 89.8 ms: 0.2 ms left
        pytest.param(899, True, id="room-for-10-tokens-within-tpot"),  # 10 + 89.9 ms: 0.1 ms left
    ],
)
def test_converted_decoder_without_room_within_tpot_is_restored(running: int, restored: bool) -> None:
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 10, running=running),)
    got, _ = plan(decoders, 45_000)
    assert got.restore_pods == (("d0",) if restored else ())
    assert (reasons.CONVERSION_BREAKS_TPOT in [r.code for r in got.reasons]) is restored


def test_expired_conversions_need_no_load() -> None:
    decoders = (
        pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - 301),
        pod("d1", serving=ServingRole.CONVERTED, converted_since=NOW - 10),
        pod("d2", serving=ServingRole.CONVERTED),
    )
    obs = observation(now=NOW, prefill=prefill_pods(1), decode=decoders, signals=None)
    assert conversion.expired_conversions(settings=SETTINGS, observation=obs) == ("d0",)


QWEN_A100 = dataclasses.replace(
    SETTINGS.profile.perf, prefill_fixed_ms=25.0, prefill_ms_per_token=0.10, prefill_ms_per_token_squared=9e-7
)


@pytest.mark.parametrize(
    ("perf", "room_ms", "cap", "prior", "expected"),
    [
        pytest.param(SETTINGS.profile.perf, 70.0, 10_000, 0.0, 7000, id="linear-70ms"),  # 70 / 0.01
        pytest.param(SETTINGS.profile.perf, 70.0, 500, 0.0, 500, id="linear-capped"),
        pytest.param(SETTINGS.profile.perf, 0.0, 500, 0.0, 0, id="no-room"),
        pytest.param(SETTINGS.profile.perf, -5.0, 500, 0.0, 0, id="step-already-over"),
        # 0.1·c + 9e-7·c² <= 59: 586 gives 58.909 ms, 587 gives 59.010 ms
        pytest.param(QWEN_A100, 59.0, 8192, 0.0, 586, id="quadratic"),
        # after 4000 prompt tokens: 0.1·c + 9e-7·(c² + 8000·c) <= 59: 547 gives 58.907 ms, 548 gives 59.016 ms
        pytest.param(QWEN_A100, 59.0, 8192, 4000.0, 547, id="quadratic-with-prior-context"),
    ],
)
def test_chunk_budget_is_the_largest_chunk_within_the_room(
    perf: PerfModel, room_ms: float, cap: int, prior: float, expected: int
) -> None:
    assert conversion.chunk_budget_tokens(perf=perf, room_ms=room_ms, cap_tokens=cap, prior_tokens=prior) == expected


def test_mixed_step_pays_no_second_fixed_cost() -> None:
    # B = 50: decode 15 ms, a 500-token chunk 5 ms (the 10 ms prefill fixed cost is the decode step's own)
    assert conversion.mixed_step_ms(perf=SETTINGS.profile.perf, pod=pod("d", running=50), chunk_tokens=500) == (
        pytest.approx(20.0)
    )


def test_automatic_chunk_fills_the_headroom_up_to_the_engine_budget() -> None:
    # No cap: min(engine budget 1000, (70 - 0.1·B) / 0.01). B = 0: 1000 tokens in 20 ms (50k tok/s);
    # B = 650: 500 tokens in 80 ms (6.25k tok/s).
    automatic = make_settings(tokenscale=dataclasses.replace(KNOBS, prefill_chunk_tokens=None))
    got, _ = plan((pod("d0", running=0), pod("d1", running=650)), 200_000, settings=automatic)
    assert got.convert_pods == ("d0", "d1")
    assert got.converted_prefill_tokens_per_second == pytest.approx(50_000 + 6_250)


@pytest.mark.parametrize(
    ("converted_ago", "pressure_ago", "stabilization", "restored"),
    [
        pytest.param(29.0, None, 30.0, False, id="converted-29s-ago"),
        pytest.param(30.0, None, 30.0, True, id="converted-30s-ago"),
        pytest.param(60.0, 29.0, 30.0, False, id="pressure-29s-ago"),
        pytest.param(60.0, 30.0, 30.0, True, id="pressure-30s-ago"),
        pytest.param(60.0, 90.0, 30.0, True, id="pressure-before-the-conversion"),
        pytest.param(2.0, 2.0, 0.0, True, id="no-stabilization"),
    ],
)
def test_low_water_restore_waits_for_calm_since_conversion_and_pressure(
    converted_ago: float, pressure_ago: float | None, stabilization: float, restored: bool
) -> None:
    # The second low-water tick: restored only once the later of the conversion and the last tick above the
    # high-water mark lies `stabilization` seconds back.
    settings = make_settings(tokenscale=dataclasses.replace(KNOBS, restore_stabilization_seconds=stabilization))
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=NOW - converted_ago),)
    state = conversion.ConversionState(
        low_water_ticks=1, pressure_seconds=None if pressure_ago is None else NOW - pressure_ago
    )
    got, after = plan(decoders, 10_000, state=state, settings=settings)
    assert got.restore_pods == (("d0",) if restored else ())
    codes = [r.code for r in got.reasons]
    assert codes == ([reasons.CONVERSION_LOW_WATER] if restored else [reasons.CONVERSION_STABILIZED])
    # a held pod keeps counting low-water ticks, so it goes once the stabilisation has passed
    assert after.low_water_ticks == (0 if restored else 2)


def test_pressure_tick_is_remembered_even_when_nothing_converts() -> None:
    # 45k > 20k Ready with both decoders already converted (cap 2): no conversion, but the pressure counts
    decoders = tuple(pod(f"d{i}", serving=ServingRole.CONVERTED, converted_since=NOW - 100) for i in range(2))
    got, state = plan(decoders, 45_000, state=conversion.ConversionState(pressure_seconds=NOW - 50))
    assert got.convert_pods == ()
    assert state.pressure_seconds == NOW


def _replay_demands(
    demands: list[float], *, stabilization: float, decoders: int = 2
) -> list[conversion.ConversionPlan]:
    """One plan per 1 s tick against 20k Ready, each decoder's serving role following the plans so far."""
    settings = make_settings(tokenscale=dataclasses.replace(KNOBS, restore_stabilization_seconds=stabilization))
    since: dict[str, float] = {}
    state = conversion.ConversionState()
    plans = []
    for tick, demand in enumerate(demands):
        now = NOW + tick
        pods = tuple(
            pod(f"d{i}", serving=ServingRole.CONVERTED, converted_since=since[f"d{i}"])
            if f"d{i}" in since
            else pod(f"d{i}")
            for i in range(decoders)
        )
        obs = observation(now=now, prefill=prefill_pods(2), decode=pods, signals=load(demand))
        got, state = conversion.plan_conversion(
            settings=settings,
            observation=obs,
            state=state,
            arriving_prompt_tokens_per_second=demand,
            ready_prefill_tokens_per_second=READY_CAPACITY,
            enabled=True,
        )
        for name in got.restore_pods:
            del since[name]
        since.update(dict.fromkeys(got.convert_pods, now))
        plans.append(got)
    return plans


# A backlog that one converted decoder drains: the demand (arrivals + backlog / T_obj) spikes to 45k against 20k
# Ready every `period` ticks and reads 10k (arrivals alone, below the 18k low-water mark) in between: the pattern
# the simulator showed on azure-conv (docs/algorithms.md §4, "Flapping").
SPIKE, CALM = 45_000.0, 10_000.0


@pytest.mark.parametrize(
    ("period", "spikes"),
    [
        pytest.param(4, 10, id="spike-every-4s"),
        pytest.param(12, 5, id="spike-every-12s"),
        pytest.param(29, 3, id="spike-every-29s"),
    ],
)
def test_recurring_backlog_spikes_flip_a_decoder_once_with_stabilization(period: int, spikes: int) -> None:
    demands = ([SPIKE] + [CALM] * (period - 1)) * spikes + [CALM] * 40
    last_spike = period * (spikes - 1)
    flapping = _replay_demands(demands, stabilization=0.0)
    stable = _replay_demands(demands, stabilization=30.0)
    # Without stabilisation every spike converts and the second calm tick after it restores.
    assert sum(len(p.convert_pods) for p in flapping) == spikes
    assert sum(len(p.restore_pods) for p in flapping) == spikes
    # With it the spikes, each within 30 s of the last, keep the one conversion; it is restored once, 30 s after
    # the last spike.
    converted = [(t, p.convert_pods) for t, p in enumerate(stable) if p.convert_pods]
    restored = [(t, p.restore_pods) for t, p in enumerate(stable) if p.restore_pods]
    assert converted == [(0, ("d0",))]
    assert restored == [(last_spike + 30, ("d0",))]


@pytest.mark.parametrize("stabilization", [pytest.param(0.0, id="none"), pytest.param(30.0, id="30s")])
def test_no_tick_converts_and_restores_on_the_low_water_mark(stabilization: float) -> None:
    # demand alternating around both marks at every phase: conversions and low-water restores never share a tick
    demands = [SPIKE, CALM, CALM, SPIKE, CALM, 19_000.0, CALM, CALM, SPIKE, SPIKE, CALM] * 8 + [CALM] * 40
    plans = _replay_demands(demands, stabilization=stabilization)
    assert any(p.convert_pods for p in plans)
    assert any(p.restore_pods for p in plans)
    assert not any(p.convert_pods and p.restore_pods for p in plans)


@pytest.mark.parametrize(
    ("activate", "deactivate", "valid"),
    [
        pytest.param(1.0, 0.9, True, id="band-below"),
        pytest.param(1.0, 1.0, True, id="no-band"),
        pytest.param(1.0, 1.1, False, id="low-water-above-high-water"),
    ],
)
def test_low_water_mark_may_not_exceed_the_high_water_mark(activate: float, deactivate: float, valid: bool) -> None:
    if valid:
        TokenScaleSettings(activate_ratio=activate, deactivate_ratio=deactivate)
    else:
        with pytest.raises(ValueError, match="deactivate_ratio"):
            TokenScaleSettings(activate_ratio=activate, deactivate_ratio=deactivate)
