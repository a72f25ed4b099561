"""The baselines with their published defaults: HPA, AIBrix KPA and APA, DistServe-style, static."""

from __future__ import annotations

import pytest
from tests.unit.core.helpers import decode_pods, load, make_settings, observation, pod, prefill_pods

from tokenscale.core import decide, reasons
from tokenscale.core.policies import apa, distserve, hpa, kpa
from tokenscale.core.policies.pod_metrics import RoleMetric
from tokenscale.core.settings import (
    APASettings,
    Behavior,
    DistServeSettings,
    HPASettings,
    KPASettings,
    ScalingSettings,
    StaticSettings,
)
from tokenscale.core.types import Decision, Observation, Role

HPA = HPASettings()  # KV usage target 0.7, tolerance 0.1


@pytest.mark.parametrize(
    ("metric", "current", "expected"),
    [
        # 4 pods at 0.735 (ratio 1.05): inside the tolerance
        pytest.param(RoleMetric(4 * 0.735, 4, 0, 0), 4, 4, id="within-tolerance"),
        # ratio 0.35 / 0.7 = 0.5: ceil(0.5 x 4) = 2
        pytest.param(RoleMetric(4 * 0.35, 4, 0, 0), 4, 2, id="half-load-halves"),
        # ratio 1.0 / 0.7: ceil(1.4286 x 4) = 6
        pytest.param(RoleMetric(4 * 1.0, 4, 0, 0), 4, 6, id="over-target-scales-out"),
        pytest.param(RoleMetric(0.0, 4, 0, 0), 4, 0, id="zero-load-to-zero"),
        # scale-in with 2 missing: they count at the target: (0.7 + 2 x 0.7) / (4 x 0.7) = 0.75 -> ceil(3) = 3
        pytest.param(RoleMetric(2 * 0.35, 2, 2, 0), 4, 3, id="missing-pods-at-target-on-scale-in"),
        # scale-out with 2 missing at 0%: (2 x 1.05) / (4 x 0.7) = 0.75 flips the direction: hold
        pytest.param(RoleMetric(2 * 1.05, 2, 2, 0), 4, 4, id="missing-pods-at-zero-on-scale-out"),
        # 2 unready at 0%: (2 x 1.4) / (4 x 0.7) = 1.0: inside the tolerance
        pytest.param(RoleMetric(2 * 1.4, 2, 0, 2), 4, 4, id="unready-pods-at-zero-on-scale-out"),
        # 3 known at 1.4 and 1 unready: 4.2 / 2.8 = 1.5 -> ceil(6)
        pytest.param(RoleMetric(3 * 1.4, 3, 0, 1), 4, 6, id="unready-pod-dampens-scale-out"),
    ],
)
def test_hpa_replica_calculation(metric: RoleMetric, current: int, expected: int) -> None:
    assert hpa.hpa_replicas(metric=metric, current=current, knobs=HPA)[0] == expected


def _run(settings: ScalingSettings, observations: list[Observation]) -> list[Decision]:
    state = decide.initial_state(settings=settings)
    out = []
    for o in observations:
        decision, state = decide.decide(settings=settings, observation=o, state=state)
        out.append(decision)
    return out


def _kv(now: float, prefill: float, decode: float, count: int = 4) -> Observation:
    return observation(
        now=now, prefill=prefill_pods(count, kv=prefill), decode=decode_pods(count, kv=decode), signals=load(1.0)
    )


def test_hpa_evaluates_every_sync_period_and_holds_in_between() -> None:
    settings = make_settings("hpa")
    first, held, again = _run(settings, [_kv(100, 1.0, 1.0), _kv(105, 0.7, 2.0), _kv(115, 0.7, 2.0)])
    assert (first.recommended_prefill_replicas, first.recommended_decode_replicas) == (6, 6)
    assert codes(held) == [reasons.SYNC_PERIOD_WAIT]
    assert (held.recommended_prefill_replicas, held.recommended_decode_replicas) == (6, 6)
    # at 15 s: prefill inside the band (4), decode 2.0 / 0.7 x 4 = 11.4 -> 12
    assert (again.recommended_prefill_replicas, again.recommended_decode_replicas) == (4, 12)


def test_hpa_scale_down_stabilises_for_300_seconds() -> None:
    settings = make_settings("hpa")
    decisions = _run(settings, [_kv(0, 0.7, 0.7)] + [_kv(15.0 * k, 0.1, 0.1) for k in range(1, 22)])
    # the recommendation of 4 at t=0 holds the count until it leaves the 300 s window
    assert [d.decode_replicas for d in decisions[:21]] == [4] * 21
    assert decisions[21].decode_replicas == 1  # t=315: ceil(0.1/0.7 x 4) = 1
    assert reasons.SCALE_IN_STABILIZED in codes(decisions[5])


def test_hpa_scale_up_rate_is_max_of_four_pods_and_double() -> None:
    settings = make_settings("hpa", behavior=Behavior(max_scale_up_step=100))
    (two,) = _run(settings, [_kv(0, 0.7, 7.0, count=2)])
    # 10x target on 2 pods wants 20; HPA adds max(4, 100% of 2) = 4
    assert two.decode_replicas == 6


def codes(decision: Decision) -> list[str]:
    return [r.code for r in decision.reasons]


KPA = KPASettings()  # 180 s stable / 60 s panic, threshold 2, rates 2, tolerance 0.1


@pytest.mark.parametrize(
    ("history", "total", "ready", "expected", "panicking"),
    [
        # 50 running+waiting over 5 pods = 10 per pod: the target, inside the band
        pytest.param((), 50.0, 5, 5, False, id="at-target-holds"),
        # 100 steady: stable = panic = 100, ceil(100/10) = 10 = ceil(2 x 5)
        pytest.param(((820.0, 100.0),), 100.0, 5, 10, False, id="steady-over-target"),
        # 300 steady: ceil(30) capped at 2 x 5 Ready
        pytest.param(((820.0, 300.0),), 300.0, 5, 10, False, id="scale-up-rate-caps"),
        # 5, 5, 5 then 100: stable 115/4 = 28.75, panic 100; 100/28.75 > 2 -> panic, max(3, 10) = 10
        pytest.param(((880.0, 5.0), (900.0, 5.0), (920.0, 5.0)), 100.0, 5, 10, True, id="burst-panics"),
        # zero load is no panic: ceil(0) floored at 5 / 2 = 2
        pytest.param(((900.0, 0.0),), 0.0, 5, 2, False, id="zero-load-halves-never-panics"),
    ],
)
def test_kpa_step(
    *, history: tuple[tuple[float, float], ...], total: float, ready: int, expected: int, panicking: bool
) -> None:
    desired, in_panic, _, _, _ = kpa.kpa_step(
        now_seconds=1000.0,
        total=total,
        ready=ready,
        current=ready,
        target=10.0,
        knobs=KPA,
        state=kpa.KPARoleState(totals=history),
    )
    assert (desired, in_panic) == (expected, panicking)


def test_kpa_panic_never_decreases_and_ends_after_a_stable_window() -> None:
    state = kpa.KPARoleState(totals=((990.0, 0.0),), panic_since_seconds=990.0, max_panic_pods=10)
    # still within 180 s of the last panic: low load keeps 10
    desired, in_panic, _, _, state = kpa.kpa_step(
        now_seconds=1000.0, total=10.0, ready=10, current=10, target=10.0, knobs=KPA, state=state
    )
    assert (desired, in_panic) == (10, True)
    desired, in_panic, _, _, _ = kpa.kpa_step(
        now_seconds=1170.0, total=10.0, ready=10, current=10, target=10.0, knobs=KPA, state=state
    )
    assert (desired, in_panic) == (5, False)  # stable (0 + 10 + 10) / 3 = 6.7 -> ceil(0.67) = 1, floored at 10/2


def test_kpa_prefill_uses_concurrency_and_decode_kv_usage() -> None:
    settings = make_settings("kpa")
    o = observation(
        prefill=prefill_pods(2, running=5.0, waiting=25.0),  # 30 per pod vs target 10
        decode=decode_pods(2, kv=0.7),  # at the 0.7 target
        signals=load(1.0),
    )
    (decision,) = _run(settings, [o])
    # prefill: stable = panic = 60 over 2 pods -> ceil(60/10) = 6, capped at 2 x 2 = 4; decode holds
    assert (decision.recommended_prefill_replicas, decision.recommended_decode_replicas) == (4, 2)


APA = APASettings()


@pytest.mark.parametrize(
    ("ratio", "ready", "current", "expected"),
    [
        pytest.param(1.05, 4, 4, 4, id="inside-band"),
        pytest.param(1.5, 4, 4, 6, id="up-ceil-n-r"),  # ceil(6)
        pytest.param(3.0, 4, 4, 8, id="up-capped-at-twice"),  # min(12, 8)
        pytest.param(0.5, 4, 4, 2, id="down-ceil-n-r"),
        pytest.param(0.1, 4, 4, 2, id="down-floored-at-half"),  # max(ceil(0.4), floor(2))
        pytest.param(1.5, 4, 7, 7, id="scale-out-never-below-current"),
    ],
)
def test_apa_bands(ratio: float, ready: int, current: int, expected: int) -> None:
    assert apa.apa_replicas(ratio=ratio, ready=ready, current=current, knobs=APA) == expected


def test_apa_averages_over_its_window() -> None:
    settings = make_settings("apa")
    # KV 0.7 then 1.4: the window mean 1.05 gives r = 1.5 -> ceil(4 x 1.5) = 6
    decisions = _run(settings, [_kv(100, 0.7, 0.7), _kv(101, 1.4, 1.4)])
    assert decisions[0].recommended_decode_replicas == 4
    assert decisions[1].recommended_decode_replicas == 6


def _rps(now: float, requests: float) -> Observation:
    return observation(now=now, prefill=prefill_pods(2), decode=decode_pods(2), signals=load(1.0, requests=requests))


def test_distserve_replans_on_its_interval_from_the_window_mean() -> None:
    goodputs = DistServeSettings(prefill_goodput_requests_per_second=2.0, decode_goodput_requests_per_second=5.0)
    settings = make_settings("distserve", distserve=goodputs)
    first, held, replanned = _run(settings, [_rps(0, 10.0), _rps(10, 40.0), _rps(30, 40.0)])
    # 10 req/s: ceil(10/2) = 5 prefill, ceil(10/5) = 2 decode
    assert (first.recommended_prefill_replicas, first.recommended_decode_replicas) == (5, 2)
    assert codes(first)[0] == reasons.REPLANNED
    assert (held.recommended_prefill_replicas, held.recommended_decode_replicas) == (5, 2)
    assert codes(held)[0] == reasons.PLAN_HELD
    # mean of 10, 40, 40 = 30 req/s: 15 prefill, 6 decode
    assert (replanned.recommended_prefill_replicas, replanned.recommended_decode_replicas) == (15, 6)


def test_distserve_derives_goodputs_from_the_profile_when_unset() -> None:
    knobs = distserve.resolved_settings(make_settings("distserve"))
    # min(V_P, V_N) 10k / 1000 tokens = 10 req/s; V_D,mid 20k / 1090 tokens
    assert knobs.prefill_goodput_requests_per_second == pytest.approx(10.0)
    assert knobs.decode_goodput_requests_per_second == pytest.approx(20_000 / 1090)


@pytest.mark.parametrize(
    ("static", "expected"),
    [
        pytest.param(StaticSettings(prefill_replicas=3, decode_replicas=5), (3, 5), id="configured-counts"),
        pytest.param(None, (2, 2), id="unset-keeps-current"),
    ],
)
def test_static_counts(static: StaticSettings | None, expected: tuple[int, int]) -> None:
    (decision,) = _run(make_settings("static", static=static), [_rps(0, 100.0)])
    assert (decision.prefill_replicas, decision.decode_replicas) == expected


@pytest.mark.parametrize("policy", ["hpa", "kpa", "apa"])
def test_utilisation_baselines_scale_each_role_on_its_own(policy: str) -> None:
    # prefill idle, decode hot: the roles move apart
    o = observation(
        prefill=prefill_pods(4, kv=0.0),
        decode=tuple(pod(f"d{i}", Role.DECODE, kv=1.4, running=1.0) for i in range(4)),
        signals=load(1.0),
    )
    (decision,) = _run(make_settings(policy), [o])
    assert decision.recommended_prefill_replicas < 4 < decision.recommended_decode_replicas
