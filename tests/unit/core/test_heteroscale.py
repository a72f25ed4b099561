"""HeteroScale through decide(): proportional sizing at the ratio, hysteresis, cooldowns, the latency net and
soft scale-in. Settings: T_D 1000 decode tok/s per decoder, P:D ratio 0.5, cooldowns 30 s out / 300 s in."""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.core.helpers import decode_pods, load, make_settings, observation, pod, prefill_pods

from tokenscale.core import decide, reasons
from tokenscale.core.policies import heteroscale
from tokenscale.core.settings import HeteroScaleSettings, ScalingSettings
from tokenscale.core.types import Decision, LoadSignals, Observation, PodView

KNOBS = HeteroScaleSettings(target_decode_tokens_per_second=1000.0, prefill_to_decode_ratio=0.5)
SETTINGS = make_settings("heteroscale", heteroscale=KNOBS)


def codes(decision: Decision) -> list[str]:
    return [r.code for r in decision.reasons]


def obs(
    signals: LoadSignals, *, prefill: int = 5, decode: int = 10, now: float = 1000.0, unknown: tuple[str, ...] = ()
) -> Observation:
    decoders = tuple(pod(f"d{i}", running=float(i)) for i in range(decode))
    return observation(now=now, prefill=prefill_pods(prefill), decode=decoders, signals=signals, unknown=unknown)


def once(o: Observation, settings: ScalingSettings = SETTINGS, state: decide.ControllerState | None = None) -> Decision:
    return decide.decide(settings=settings, observation=o, state=state or decide.initial_state(settings=settings))[0]


def test_derived_target_and_ratio_come_from_the_middle_bucket() -> None:
    settings = make_settings("heteroscale")
    # middle bucket: 1000 in, 90 out; V_D = 20k: T_D = 20k x 90 / 1090; r = (1000 / 10k) / (1090 / 20k)
    assert heteroscale.target_decode_tokens_per_second(settings) == pytest.approx(20_000 * 90 / 1090)
    assert heteroscale.prefill_to_decode_ratio(settings) == pytest.approx(0.1 / (1090 / 20_000))


@pytest.mark.parametrize(
    ("tps", "prefill", "decode", "code"),
    [
        # u = 6000 / (1000 x 10) = 0.6 -> soft scale-in starts (counts unchanged)
        pytest.param(6_000.0, 5, 10, reasons.SOFT_SCALE_IN_STARTED, id="below-band-starts-soft-scale-in"),
        # u = 1.05: inside [0.85, 1.10]
        pytest.param(10_500.0, 5, 10, reasons.WITHIN_TOLERANCE, id="inside-band-holds"),
        # u = 1.5: I_D = 15, I_P = ceil(0.5 x 15) = 8
        pytest.param(15_000.0, 8, 15, reasons.DECODE_THROUGHPUT, id="above-band-scales-both"),
    ],
)
def test_proportional_sizing_with_hysteresis(tps: float, prefill: int, decode: int, code: str) -> None:
    decision = once(obs(load(generation=tps)))
    assert (decision.prefill_replicas, decision.decode_replicas) == (prefill, decode)
    assert codes(decision) == [code]


def test_scale_out_keeps_prefill_when_it_is_above_the_ratio() -> None:
    # I_D = 12 -> ratio says 6, but 9 prefillers run: keep 9 (P and D never move against each other)
    decision = once(obs(load(generation=12_000.0), prefill=9))
    assert (decision.prefill_replicas, decision.decode_replicas) == (9, 12)


@pytest.mark.parametrize(
    ("signals", "prefill", "decode", "code"),
    [
        # ITL p90 0.105 s > 1.0 x 100 ms: +10% -> D ceil(11) = 11, P max(ceil(5.5), ceil(0.5 x 11)) = 6
        pytest.param(load(generation=10_000.0, itl_p90=0.105), 6, 11, reasons.LATENCY_MODERATE, id="moderate-itl"),
        # ITL p90 0.13 s > 1.2 x 100 ms: +20% -> D 12, P 6
        pytest.param(load(generation=10_000.0, itl_p90=0.13), 6, 12, reasons.LATENCY_SEVERE, id="severe-itl"),
        # TTFT p90 0.5 s for 1000-token prompts (tier 0.4 s): 1.25 x -> severe
        pytest.param(load(generation=10_000.0, ttft_p90=0.5), 6, 12, reasons.LATENCY_SEVERE, id="severe-ttft"),
        # a breach wins over a low load: u = 0.5 but ITL breached -> +10%
        pytest.param(
            load(generation=5_000.0, itl_p90=0.11), 6, 11, reasons.LATENCY_MODERATE, id="breach-beats-low-load"
        ),
    ],
)
def test_latency_safety_net_scales_out_both_roles(signals: LoadSignals, prefill: int, decode: int, code: str) -> None:
    decision = once(obs(signals))
    assert (decision.prefill_replicas, decision.decode_replicas) == (prefill, decode)
    assert codes(decision) == [code]


def test_scale_out_waits_for_its_cooldown() -> None:
    state = decide.initial_state(settings=SETTINGS)
    first, state = decide.decide(settings=SETTINGS, observation=obs(load(generation=15_000.0)), state=state)
    assert first.decode_replicas == 15
    # 10 s later the load rises again, but the 30 s cooldown holds; at 30 s it acts
    held, state = decide.decide(
        settings=SETTINGS, observation=obs(load(generation=20_000.0), decode=15, now=1010.0), state=state
    )
    assert held.decode_replicas == 15
    assert codes(held) == [reasons.COOLDOWN_ACTIVE]
    acted, _ = decide.decide(
        settings=SETTINGS, observation=obs(load(generation=20_000.0), decode=15, now=1030.0), state=state
    )
    assert acted.decode_replicas == 20


class Cluster:
    """Applies decisions: final counts become the next spec; withdrawn pods stay until their role shrinks."""

    def __init__(self, settings: ScalingSettings, prefill: int = 5, decode: int = 10) -> None:
        self.settings = settings
        self.state = decide.initial_state(settings=settings)
        self.prefill = prefill_pods(prefill)
        self.decode: tuple[PodView, ...] = tuple(pod(f"d{i}", running=float(i)) for i in range(decode))
        self.withdrawn: set[str] = set()

    def tick(self, now: float, signals: LoadSignals, unknown: tuple[str, ...] = ()) -> Decision:
        o = observation(now=now, prefill=self.prefill, decode=self.decode, signals=signals, unknown=unknown)
        decision, self.state = decide.decide(settings=self.settings, observation=o, state=self.state)
        self.withdrawn |= set(decision.withdraw_pods)
        self.withdrawn -= set(decision.rejoin_pods)
        self.prefill = self._resize(self.prefill, decision.prefill_replicas)
        self.decode = self._resize(self.decode, decision.decode_replicas)
        return decision

    def _resize(self, pods: tuple[PodView, ...], replicas: int) -> tuple[PodView, ...]:
        # withdrawn pods are removed first
        ordered = sorted(pods, key=lambda p: (p.name not in self.withdrawn, p.name))
        removed = {p.name for p in ordered[: max(0, len(pods) - replicas)]}
        self.withdrawn -= removed
        kept = tuple(p for p in pods if p.name not in removed)
        added = tuple(dataclasses.replace(kept[0], name=f"{kept[0].name}-{i}") for i in range(replicas - len(kept)))
        return kept + added


LOW = load(generation=2_000.0)  # u = 0.2: I_D = 2


def test_soft_scale_in_withdraws_observes_then_removes_the_withdrawn_pods() -> None:
    cluster = Cluster(SETTINGS)
    start = cluster.tick(1000.0, LOW)
    # decode: gap 10 - 2 = 8, damped by half: 4 go; prefill: its share ceil(0.5 x 2) = 1, gap 4, half: 2 go.
    # Least loaded first.
    assert codes(start) == [reasons.SOFT_SCALE_IN_STARTED]
    assert (start.prefill_replicas, start.decode_replicas) == (5, 10)
    assert start.withdraw_pods == ("p0", "p1", "d0", "d1", "d2", "d3")
    watching = cluster.tick(1030.0, LOW)
    assert codes(watching) == [reasons.SOFT_SCALE_IN_OBSERVING]
    assert (watching.prefill_replicas, watching.decode_replicas) == (5, 10)
    done = cluster.tick(1060.0, LOW)
    assert codes(done) == [reasons.SOFT_SCALE_IN_COMPLETED]
    assert (done.prefill_replicas, done.decode_replicas) == (3, 6)
    assert [p.name for p in cluster.decode] == ["d4", "d5", "d6", "d7", "d8", "d9"]
    # the next scale-in waits for the 300 s scale-in cooldown
    assert codes(cluster.tick(1100.0, LOW)) == [reasons.COOLDOWN_ACTIVE]
    assert codes(cluster.tick(1360.0, LOW)) == [reasons.SOFT_SCALE_IN_STARTED]


def test_latency_regression_during_observation_rejoins_and_scales_out() -> None:
    cluster = Cluster(SETTINGS)
    cluster.tick(1000.0, LOW)
    regressed = cluster.tick(1020.0, load(generation=2_000.0, itl_p90=0.11))
    assert codes(regressed) == [reasons.SOFT_SCALE_IN_ABORTED, reasons.LATENCY_MODERATE]
    assert set(regressed.rejoin_pods) == {"p0", "p1", "d0", "d1", "d2", "d3"}
    assert (regressed.prefill_replicas, regressed.decode_replicas) == (6, 11)
    assert cluster.withdrawn == set()


def test_load_returning_during_observation_aborts_and_counts_as_a_scale_in() -> None:
    cluster = Cluster(SETTINGS)
    cluster.tick(1000.0, LOW)
    # 7000 tok/s on the 6 decoders still serving: 1.17 x target > 1.10 -> rejoin; u = 0.7 overall wants
    # a scale-in again, but the aborted attempt started the 300 s cooldown
    back = cluster.tick(1020.0, load(generation=7_000.0))
    assert codes(back) == [reasons.SOFT_SCALE_IN_ABORTED, reasons.COOLDOWN_ACTIVE]
    assert len(back.rejoin_pods) == 6
    assert (back.prefill_replicas, back.decode_replicas) == (5, 10)


def test_completion_waits_while_an_input_is_unknown() -> None:
    cluster = Cluster(SETTINGS)
    cluster.tick(1000.0, LOW)
    waiting = cluster.tick(1060.0, LOW, unknown=("d9: stale",))
    assert reasons.SOFT_SCALE_IN_OBSERVING in codes(waiting)
    assert waiting.decode_replicas == 10
    assert cluster.tick(1061.0, LOW).decode_replicas == 6


def test_no_soft_scale_in_starts_while_an_input_is_unknown() -> None:
    decision = once(obs(LOW, unknown=("d9: stale",)))
    assert decision.withdraw_pods == ()
    assert codes(decision) == [reasons.INPUT_PARTIALLY_UNKNOWN, reasons.SCALE_IN_BLOCKED_UNKNOWN_INPUT]


def test_zero_observation_period_scales_in_directly() -> None:
    settings = make_settings("heteroscale", heteroscale=dataclasses.replace(KNOBS, soft_scale_in_seconds=0))
    decision = once(obs(LOW), settings)
    assert (decision.prefill_replicas, decision.decode_replicas) == (3, 6)
    assert decision.withdraw_pods == ()


def test_scale_in_steps_are_limited_by_the_behaviour() -> None:
    settings = dataclasses.replace(SETTINGS, behavior=dataclasses.replace(SETTINGS.behavior, max_scale_down_step=2))
    decision = once(obs(LOW), settings)
    # decode 10 -> 8 (half the gap is 4, at most 2 per tick); prefill 5 -> 3 (half its gap of 4 to ceil(0.5 x 2))
    assert decision.withdraw_pods == ("p0", "p1", "d0", "d1")


def test_zero_load_scales_in_to_the_minimum_over_time() -> None:
    settings = make_settings("heteroscale", heteroscale=dataclasses.replace(KNOBS, soft_scale_in_seconds=0))
    state = decide.initial_state(settings=settings)
    prefill, decode = 5, 10
    for step in range(10):
        o = observation(
            now=1000.0 + 300 * step, prefill=prefill_pods(prefill), decode=decode_pods(decode), signals=load(0.0)
        )
        decision, state = decide.decide(settings=settings, observation=o, state=state)
        prefill, decode = decision.prefill_replicas, decision.decode_replicas
    assert (prefill, decode) == (1, 1)


def test_the_ratio_splits_the_capacity_demand_before_rounding() -> None:
    # T_D 1000, r 2.5; 1200 decode tok/s is 1.2 decoders of demand: D = ceil(1.2) = 2, P = ceil(2.5 x 1.2) = 3
    # (the ratio applied to the rounded decoders would ask ceil(2.5 x 2) = 5 prefillers)
    settings = make_settings("heteroscale", heteroscale=dataclasses.replace(KNOBS, prefill_to_decode_ratio=2.5))
    decision = once(obs(load(generation=1_200.0), prefill=1, decode=1), settings)
    assert (decision.prefill_replicas, decision.decode_replicas) == (3, 2)
    assert codes(decision) == [reasons.DECODE_THROUGHPUT]


def test_a_busy_prefill_share_alone_scales_out() -> None:
    # D = 10 decoders at 0.9 x target (inside the band), but P = 3 holds 0.5 x 9 = 4.5 prefillers of demand: 1.5 x
    decision = once(obs(load(generation=9_000.0), prefill=3, decode=10))
    assert (decision.prefill_replicas, decision.decode_replicas) == (5, 10)
