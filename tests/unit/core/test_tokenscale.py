"""TokenScale through decide(): Token Velocity sizing, zero load, burst onset with conversion, the variants.

Toy velocities: min(V_P 10k, V_N 20k) = 10k prompt tok/s per prefiller; V_D = 40k / 20k / 10k tok/s per decoder
for output buckets 0 / 1 / 2 (tests/unit/core/helpers.py).
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.core.helpers import decode_pods, load, make_settings, observation, pod, prefill_pods

from tokenscale.core import decide, reasons
from tokenscale.core.policies import registry, tokenscale
from tokenscale.core.settings import SLO, Behavior, DistServeSettings, RoleBounds, ScalingSettings, TokenScaleSettings
from tokenscale.core.types import Action, Decision, LoadSignals, Observation, ServingRole


def run(obs: Observation, policy: str = "tokenscale", **overrides: object) -> Decision:
    settings = make_settings(policy, **overrides)
    decision, _ = decide.decide(settings=settings, observation=obs, state=decide.initial_state(settings=settings))
    return decision


def steady(signals: LoadSignals, prefill: int = 2, decode: int = 2) -> Observation:
    return observation(prefill=prefill_pods(prefill), decode=decode_pods(decode), signals=signals)


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        pytest.param(load(10_000), 1, id="exactly-one-prefiller"),
        pytest.param(load(10_001), 2, id="a-token-more-needs-two"),
        pytest.param(load(95_000), 10, id="ceil-of-9.5"),
        # the recent window sees 35k while the 10 s window still averages 12k
        pytest.param(load(12_000, recent=35_000), 4, id="recent-burst-wins"),
        pytest.param(load(35_000, recent=12_000), 4, id="window-wins-when-higher"),
    ],
)
def test_prefillers_are_arrivals_over_prefill_velocity(signals: LoadSignals, expected: int) -> None:
    assert run(steady(signals)).recommended_prefill_replicas == expected


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        # 40k in bucket (0, 0) at 40k/decoder: 1
        pytest.param((40_000.0, 0, 0, 0, 0, 0, 0, 0, 0), 1, id="one-bucket"),
        # 40k/40k + 36k/20k (bucket (1, 1)) + 5k/10k (bucket (2, 2)) = 1 + 1.8 + 0.5 = 3.3 -> 4
        pytest.param((40_000.0, 0, 0, 0, 36_000.0, 0, 0, 0, 5_000.0), 4, id="sum-over-buckets"),
        # 60k/20k = 3 exactly
        pytest.param((0, 60_000.0, 0, 0, 0, 0, 0, 0, 0), 3, id="whole-number-not-rounded-up"),
    ],
)
def test_decoders_are_sum_of_bucket_rates_over_bucket_velocities(buckets: tuple[float, ...], expected: int) -> None:
    assert run(steady(load(5_000, buckets=buckets))).recommended_decode_replicas == expected


def test_decode_sizing_without_bucket_rates_uses_the_mean_lengths() -> None:
    # 10 req/s of 1000 in / 100 out: bucket (1, 1), 10 x 1100 / 20k = 0.55 -> 1
    signals = load(10_000, requests=10.0, mean_prompt=1000, mean_generation=100)
    assert run(steady(signals)).recommended_decode_replicas == 1
    # 40 req/s: 44k / 20k = 2.2 -> 3
    signals = load(40_000, requests=40.0, mean_prompt=1000, mean_generation=100)
    assert run(steady(signals)).recommended_decode_replicas == 3


def test_zero_load_goes_to_the_minimum() -> None:
    decision = run(steady(load(0.0, buckets=(0.0,) * 9), prefill=5, decode=7), prefill=RoleBounds(2, 10))
    assert (decision.recommended_prefill_replicas, decision.recommended_decode_replicas) == (0, 0)
    assert (decision.prefill_replicas, decision.decode_replicas) == (2, 1)
    assert decision.action is Action.SCALE
    assert reasons.ZERO_LOAD in [r.code for r in decision.reasons]


BURST_KNOBS = TokenScaleSettings(prefill_chunk_tokens=500, convertible_decoders_max=2)


def test_burst_onset_converts_and_raises_prefill_in_the_same_tick() -> None:
    # 2 Ready prefillers (20k) see 65k arriving: convert d1 (idle, 500 tokens per 15 ms step: +33.3k) and d2
    # (B=50, per 20 ms: +25k); prefill to 7
    decoders = (pod("d0", running=100), pod("d1"), pod("d2", running=50))
    obs = observation(prefill=prefill_pods(2), decode=decoders, signals=load(12_000, recent=65_000))
    decision = run(obs, tokenscale=BURST_KNOBS)
    assert decision.action is Action.CONVERT
    assert decision.convert_pods == ("d1", "d2")
    assert decision.prefill_replicas == 7
    assert decision.inputs["ready_prefill_capacity_tokens_per_second"] == 20_000
    assert decision.inputs["converted_prefill_capacity_tokens_per_second"] == pytest.approx(500 / 0.015 + 25_000)


def test_converted_decoders_raise_decode_by_their_kv_reserve() -> None:
    # 36k in bucket (1, 1) = 1.8 decoders; + 2 converted x 0.15 = 2.1 -> 3 (2 without conversion)
    decoders = (pod("d0", running=100), pod("d1"), pod("d2", running=50))
    signals = dataclasses.replace(
        load(12_000, recent=65_000), bucket_tokens_per_second=(0, 0, 0, 0, 36_000.0, 0, 0, 0, 0)
    )
    obs = observation(prefill=prefill_pods(2), decode=decoders, signals=signals)
    assert run(obs, tokenscale=BURST_KNOBS).recommended_decode_replicas == 3
    assert run(obs, "tokenscale-no-conversion", tokenscale=BURST_KNOBS).recommended_decode_replicas == 2


def test_no_conversion_variant_never_converts_and_restores_converted_pods() -> None:
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=90.0), pod("d1"))
    obs = observation(prefill=prefill_pods(2), decode=decoders, signals=load(45_000))
    decision = run(obs, "tokenscale-no-conversion", tokenscale=BURST_KNOBS)
    assert decision.convert_pods == ()
    assert decision.restore_pods == ("d0",)
    assert decision.prefill_replicas == 5
    assert reasons.CONVERSION_NOT_USED in [r.code for r in decision.reasons]


def test_conversion_cap_of_zero_turns_conversion_off() -> None:
    obs = observation(prefill=prefill_pods(2), decode=decode_pods(2), signals=load(45_000))
    knobs = dataclasses.replace(BURST_KNOBS, convertible_decoders_max=0)
    assert run(obs, tokenscale=knobs).convert_pods == ()


def test_prefill_only_variant_sizes_decode_from_the_request_rate() -> None:
    # decode goodput 4 req/s: 10 req/s -> 3 decoders, whatever the bucket rates say
    distserve = DistServeSettings(prefill_goodput_requests_per_second=1.0, decode_goodput_requests_per_second=4.0)
    signals = load(25_000, requests=10.0, buckets=(400_000.0, 0, 0, 0, 0, 0, 0, 0, 0))
    decision = run(steady(signals), "tokenscale-prefill-only", distserve=distserve)
    assert (decision.recommended_prefill_replicas, decision.recommended_decode_replicas) == (3, 3)
    assert decision.convert_pods == ()


def test_max_conversion_time_restores_across_ticks() -> None:
    settings = make_settings(tokenscale=dataclasses.replace(BURST_KNOBS, max_conversion_seconds=30))
    state = decide.initial_state(settings=settings)
    burst = load(65_000)  # 45k beyond Ready prefill: d0 (33.3k) and d1 (B=10: 500 per 16 ms, 31.3k) convert
    decoders = (pod("d0"), pod("d1", running=10))
    converted_at: dict[str, float] = {}
    restored_at: dict[str, float] = {}
    for now in range(100, 140):
        shown = tuple(
            dataclasses.replace(p, serving_role=ServingRole.CONVERTED) if p.name in converted_at else p
            for p in decoders
        )
        obs = observation(now=float(now), prefill=prefill_pods(2), decode=shown, signals=burst)
        decision, state = decide.decide(settings=settings, observation=obs, state=state)
        for name in decision.convert_pods:
            converted_at[name] = now
        for name in decision.restore_pods:
            restored_at[name] = now
            del converted_at[name]
    # both converted at 100 (no timestamp on the pods: remembered), restored exactly 30 s later
    assert restored_at == {"d0": 130, "d1": 130}
    assert converted_at == {}


def waiting(signals: LoadSignals, requests: float) -> LoadSignals:
    return dataclasses.replace(signals, requests_waiting=requests)


@pytest.mark.parametrize(
    ("signals", "drain_seconds", "expected"),
    [
        pytest.param(waiting(load(0, mean_prompt=1000), 20), 0.25, 80_000.0, id="20x1000-within-0.25s"),
        pytest.param(waiting(load(0, mean_prompt=2000), 5), 0.25, 40_000.0, id="5x2000-within-0.25s"),
        pytest.param(waiting(load(0, mean_prompt=1000), 20), 10.0, 2_000.0, id="20x1000-within-10s"),
        pytest.param(load(0, mean_prompt=1000), 0.25, 0.0, id="no-backlog"),
    ],
)
def test_backlog_drain_is_waiting_prompt_tokens_over_the_drain_time(
    signals: LoadSignals, drain_seconds: float, expected: float
) -> None:
    got = tokenscale.backlog_drain_tokens_per_second(load=signals, drain_seconds=drain_seconds)
    assert got == pytest.approx(expected)


def _with_cold_start(settings: ScalingSettings, cold_start_seconds: float) -> ScalingSettings:
    perf = dataclasses.replace(settings.profile.perf, cold_start_seconds=cold_start_seconds)
    return dataclasses.replace(settings, profile=dataclasses.replace(settings.profile, perf=perf))


@pytest.mark.parametrize(
    ("cold_start_seconds", "configured_seconds", "slo", "immediate", "provisioning"),
    [
        # the tightest of the default tiers is 0.25 s, whatever the mean prompt's own tier
        pytest.param(0.0, None, SLO(), 0.25, 0.25, id="instant-start"),
        # a prefiller started now serves 60 s later: the backlog is spread over 60 s + 0.25 s
        pytest.param(60.0, None, SLO(), 0.25, 60.25, id="60s-cold-start"),
        pytest.param(60.0, 10.0, SLO(), 0.25, 10.0, id="configured-overrides-provisioning-only"),
        # tiers 0.5 s (< 512 tokens) and 3 s
        pytest.param(100.0, None, SLO(ttft_tiers=((512, 0.5), (8192, 3.0))), 0.5, 100.5, id="configured-tiers"),
    ],
)
def test_drain_times_for_capacity_now_and_for_new_prefillers(
    cold_start_seconds: float, configured_seconds: float | None, slo: SLO, immediate: float, provisioning: float
) -> None:
    settings = _with_cold_start(
        make_settings(slo=slo, tokenscale=TokenScaleSettings(backlog_drain_seconds=configured_seconds)),
        cold_start_seconds,
    )
    assert tokenscale.immediate_drain_seconds(settings) == pytest.approx(immediate)
    assert tokenscale.provisioning_drain_seconds(settings) == pytest.approx(provisioning)


def test_prefillers_cover_arrivals_and_the_backlog_drain() -> None:
    # 12k arriving + 10 x 1000 waiting over 0.25 s (40k) = 52k at 10k per prefiller: 6 (2 without the backlog)
    assert run(steady(waiting(load(12_000), 10))).recommended_prefill_replicas == 6
    assert run(steady(load(12_000))).recommended_prefill_replicas == 2


def test_a_backlog_converts_decoders_now_but_starts_prefillers_only_for_what_outlasts_a_cold_start() -> None:
    # 12k arriving + 10 x 1000 waiting, 2 Ready prefillers (20k), 60 s cold start. New prefillers: 12k + 10k / 60.25 s
    # (166) = 12.2k -> 2, none started for a queue that is gone before they serve. Capacity now: 12k + 10k / 0.25 s
    # = 52k against 20k Ready: decoders convert at once.
    settings = _with_cold_start(make_settings(), 60.0)
    obs = steady(waiting(load(12_000), 10))
    decision, _ = decide.decide(settings=settings, observation=obs, state=decide.initial_state(settings=settings))
    assert decision.recommended_prefill_replicas == 2
    assert decision.convert_pods


@pytest.mark.parametrize(
    ("demands", "quantile", "expected"),
    [
        pytest.param([], 0.95, 0.0, id="empty"),
        pytest.param([7.0], 0.95, 7.0, id="one-value"),
        pytest.param([5.0, 1.0, 3.0, 2.0, 4.0], 0.5, 3.0, id="median-of-five"),
        pytest.param([float(v) for v in range(101)], 0.95, 95.0, id="q95-of-0-to-100"),
        pytest.param([10.0, 20.0], 0.25, 12.5, id="interpolated"),  # rank 0.25 between 10 and 20
        pytest.param([10.0, 20.0, 90.0], 1.0, 90.0, id="q1-is-the-max"),
    ],
)
def test_demand_quantile_interpolates_order_statistics(demands: list[float], quantile: float, expected: float) -> None:
    history = tuple((float(t), d) for t, d in enumerate(demands))
    assert tokenscale.demand_quantile(history=history, quantile=quantile) == pytest.approx(expected)


def test_demand_history_keeps_only_the_window() -> None:
    history = ((0.0, 1.0), (5.0, 2.0), (10.0, 3.0))
    # at 12 s with a 10 s window: entries after 2 s stay
    got = tokenscale.record_demand(history=history, now_seconds=12.0, demand_tokens_per_second=4.0, window_seconds=10)
    assert got == ((5.0, 2.0), (10.0, 3.0), (12.0, 4.0))
    # a 0 s window keeps only the current tick
    assert tokenscale.record_demand(
        history=history, now_seconds=12.0, demand_tokens_per_second=4.0, window_seconds=0
    ) == ((12.0, 4.0),)


def _prefill_over(arrivals: list[float], knobs: TokenScaleSettings) -> list[int]:
    """Recommended prefillers, one tick per second, for the given arriving prompt tokens/s."""
    settings = make_settings(tokenscale=knobs)
    state = decide.initial_state(settings=settings)
    counts = []
    for second, arriving in enumerate(arrivals):
        obs = observation(now=float(second), prefill=prefill_pods(2), decode=decode_pods(2), signals=load(arriving))
        decision, state = decide.decide(settings=settings, observation=obs, state=state)
        counts.append(decision.recommended_prefill_replicas)
    return counts


def test_a_spike_shorter_than_the_quantile_starts_nothing_a_sustained_burst_does() -> None:
    knobs = TokenScaleSettings(demand_quantile=0.95, demand_window_seconds=600)
    # 100 s at 10k (1 prefiller), then 90k. With k ticks of 90k among n = 100 + k, the q0.95 rank 0.95·(n − 1)
    # reaches the first 90k (sorted index 100) past n − k − 1 = 99: k = 5 gives rank 98.8 (still 10k), k = 6 rank
    # 99.75 (10k + 0.75 x 80k = 70k: 7 prefillers), k = 7 rank 100.7 (90k: 9).
    counts = _prefill_over([10_000.0] * 100 + [90_000.0] * 7, knobs)
    assert counts[100:] == [1, 1, 1, 1, 1, 7, 9]
    # The current demand alone (the paper's formula) follows the spike at once.
    assert _prefill_over([10_000.0] * 100 + [90_000.0], TokenScaleSettings(demand_window_seconds=0))[100] == 9


def test_the_burst_level_holds_while_it_stays_in_the_top_of_the_window() -> None:
    knobs = TokenScaleSettings(demand_quantile=0.9, demand_window_seconds=100)
    # 30 s at 90k then 10k: the window's top 10% stay at 90k until fewer than ~10 of the 100 ticks carry it
    counts = _prefill_over([90_000.0] * 30 + [10_000.0] * 120, knobs)
    assert counts[30 + 60] == 9  # 30 of the last 100 ticks are still 90k
    assert counts[-1] == 1  # the burst has left the window


@pytest.mark.parametrize(
    ("behaviour_seconds", "cold_start_seconds", "expected"),
    [
        pytest.param(60.0, 100.0, 100.0, id="cold-start-longer"),
        pytest.param(60.0, 30.0, 60.0, id="behaviour-longer"),
    ],
)
def test_scale_in_is_held_at_least_one_cold_start(
    behaviour_seconds: float, cold_start_seconds: float, expected: float
) -> None:
    base = make_settings(behavior=Behavior(scale_in_stabilization_seconds=behaviour_seconds))
    perf = dataclasses.replace(base.profile.perf, cold_start_seconds=cold_start_seconds)
    settings = dataclasses.replace(base, profile=dataclasses.replace(base.profile, perf=perf))
    assert registry.get_policy("tokenscale").stabilization_seconds(settings=settings) == expected
