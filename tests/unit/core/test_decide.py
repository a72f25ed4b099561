"""decide(): the hold on unknown input, the guards around every policy, state handling, the registry."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from tests.unit.core.helpers import decode_pods, load, make_settings, observation, pod, prefill_pods

from tokenscale.core import decide, reasons
from tokenscale.core.policies import registry
from tokenscale.core.settings import Behavior, DistServeSettings, RoleBounds, StaticSettings, TokenScaleSettings
from tokenscale.core.types import Action, Decision, ServingRole

POLICIES = registry.policy_names()
# what each policy needs beside the defaults to run
EXTRA = {
    "static": {"static": StaticSettings(prefill_replicas=1, decode_replicas=1)},
    "distserve": {
        "distserve": DistServeSettings(prefill_goodput_requests_per_second=5.0, decode_goodput_requests_per_second=5.0)
    },
}


def codes(decision: Decision) -> list[str]:
    return [r.code for r in decision.reasons]


@pytest.mark.parametrize("policy", POLICIES)
def test_unknown_load_holds_every_count(policy: str) -> None:
    settings = make_settings(policy, **EXTRA.get(policy, {}))
    state = decide.initial_state(settings=settings)
    unknown = observation(
        prefill=prefill_pods(4, known=False),
        decode=decode_pods(6),
        signals=None,
        unknown=("prefill: no Ready pod with fresh metrics (pods: p0, p1, p2)",),
    )
    decision, after = decide.decide(settings=settings, observation=unknown, state=state)
    assert decision.action is Action.HOLD
    assert (decision.prefill_replicas, decision.decode_replicas) == (4, 6)
    assert (decision.convert_pods, decision.withdraw_pods) == ((), ())
    assert codes(decision) == [reasons.INPUT_UNKNOWN]
    assert after == state


def test_hold_still_restores_conversions_past_their_time() -> None:
    settings = make_settings()
    decoders = (pod("d0", serving=ServingRole.CONVERTED, converted_since=0.0), pod("d1"))
    unknown = observation(now=400.0, prefill=prefill_pods(1, known=False), decode=decoders, unknown=("p0: stale",))
    decision, _ = decide.decide(settings=settings, observation=unknown, state=decide.initial_state(settings=settings))
    assert decision.action is Action.HOLD
    assert decision.restore_pods == ("d0",)
    assert codes(decision) == [reasons.INPUT_UNKNOWN, reasons.CONVERSION_EXPIRED]


def test_hold_keeps_configured_bounds() -> None:
    settings = make_settings(prefill=RoleBounds(1, 3))
    unknown = observation(prefill=prefill_pods(5), decode=decode_pods(2), unknown=("x",))
    decision, _ = decide.decide(settings=settings, observation=unknown, state=decide.initial_state(settings=settings))
    assert decision.prefill_replicas == 3


@pytest.mark.parametrize("policy", POLICIES)
def test_partially_unknown_input_blocks_scale_in(policy: str) -> None:
    settings = make_settings(policy, **EXTRA.get(policy, {}))
    # zero load would scale every policy in; one decoder without metrics forbids it
    partial = observation(
        prefill=prefill_pods(5),
        decode=(*decode_pods(5), pod("d9", known=False)),
        signals=load(0.0, buckets=(0.0,) * 9),
        unknown=("d9: newest sample is 9.0 s old",),
    )
    decision, _ = decide.decide(settings=settings, observation=partial, state=decide.initial_state(settings=settings))
    assert decision.prefill_replicas >= 5
    assert decision.decode_replicas >= 6
    assert reasons.INPUT_PARTIALLY_UNKNOWN in codes(decision)


def test_policy_without_conversion_restores_converted_pods() -> None:
    settings = make_settings("hpa")
    decoders = (pod("d0", serving=ServingRole.CONVERTED, kv=0.7), pod("d1", kv=0.7))
    o = observation(prefill=prefill_pods(2, kv=0.7), decode=decoders, signals=load(1.0))
    decision, _ = decide.decide(settings=settings, observation=o, state=decide.initial_state(settings=settings))
    assert decision.restore_pods == ("d0",)
    assert decision.action is Action.RESTORE
    assert reasons.CONVERSION_NOT_USED in codes(decision)


def test_switching_policy_starts_from_a_fresh_state() -> None:
    hpa = make_settings("hpa")
    o = observation(prefill=prefill_pods(2), decode=decode_pods(2), signals=load(30_000.0))
    _, hpa_state = decide.decide(settings=hpa, observation=o, state=decide.initial_state(settings=hpa))
    tokenscale = make_settings("tokenscale")
    decision, state = decide.decide(settings=tokenscale, observation=o, state=hpa_state)
    assert decision.recommended_prefill_replicas == 3
    assert state.policy == "tokenscale"


def test_unknown_policy_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="valid: tokenscale, heteroscale, hpa"):
        decide.initial_state(settings=make_settings("magic"))
    with pytest.raises(ValueError, match="tokenscale-no-conversion"):
        registry.get_policy("")


def test_registry_holds_the_published_names() -> None:
    assert set(POLICIES) == {
        "tokenscale",
        "heteroscale",
        "hpa",
        "kpa",
        "apa",
        "distserve",
        "static",
        "tokenscale-prefill-only",
        "tokenscale-no-conversion",
    }
    assert all(registry.get_policy(name).name == name for name in POLICIES)


def _flapping(stabilization_seconds: float) -> list[int]:
    """Prefill counts under load that jumps between 45k and 15k tok/s every 5 s, for two minutes (TokenScale sizing
    for the current demand alone, so that only the guard smooths)."""
    settings = make_settings(
        behavior=Behavior(scale_in_stabilization_seconds=stabilization_seconds),
        tokenscale=TokenScaleSettings(demand_window_seconds=0.0),
    )
    state = decide.initial_state(settings=settings)
    replicas, counts = 5, []
    for second in range(120):
        arriving = 45_000.0 if (second // 5) % 2 == 0 else 15_000.0
        o = observation(
            now=float(second), prefill=prefill_pods(replicas), decode=decode_pods(2), signals=load(arriving)
        )
        decision, state = decide.decide(settings=settings, observation=o, state=state)
        replicas = decision.prefill_replicas
        counts.append(replicas)
    return counts


def test_stabilisation_stops_flapping() -> None:
    # 45k needs 5 prefillers, 15k needs 2: with a 60 s window the count never leaves 5
    assert set(_flapping(60.0)) == {5}
    unstable = _flapping(0.0)
    changes = sum(a != b for a, b in itertools.pairwise(unstable))
    assert changes >= 20  # without it the count follows every swing (down in steps of 2)


def test_restart_never_scales_in_before_one_window() -> None:
    settings = make_settings(behavior=Behavior(scale_in_stabilization_seconds=60.0))
    state = decide.initial_state(settings=settings)
    counts = []
    for second in (0, 30, 60, 61):
        o = observation(now=float(second), prefill=prefill_pods(6), decode=decode_pods(2), signals=load(10_000.0))
        decision, state = decide.decide(settings=settings, observation=o, state=state)
        counts.append(decision.prefill_replicas)
    # 10k needs 1 prefiller; the 6 running at start stand as a recommendation for 60 s; then 6 - 2 (step)
    assert counts == [6, 6, 6, 4]


def test_decide_is_deterministic() -> None:
    settings = make_settings(tokenscale=dataclasses.replace(make_settings().tokenscale, prefill_chunk_tokens=500))
    o = observation(prefill=prefill_pods(2), decode=decode_pods(4), signals=load(45_000.0, recent=50_000.0))
    state = decide.initial_state(settings=settings)
    assert decide.decide(settings=settings, observation=o, state=state) == decide.decide(
        settings=settings, observation=o, state=state
    )


@pytest.mark.parametrize(
    ("arriving", "action"),
    [
        pytest.param(20_000.0, Action.NONE, id="nothing-changes"),
        pytest.param(35_000.0, Action.CONVERT, id="burst-converts"),
        pytest.param(25_000.0, Action.SCALE, id="prefill-grows"),
    ],
)
def test_action_names_what_the_decision_does(arriving: float, action: Action) -> None:
    # 2 prefillers (20k), 2 decoders (80k in bucket 0 at 40k each); conversion above 1.5 x 20k
    settings = make_settings(tokenscale=dataclasses.replace(make_settings().tokenscale, activate_ratio=1.5))
    o = observation(
        prefill=prefill_pods(2), decode=decode_pods(2), signals=load(arriving, buckets=(80_000.0,) + (0.0,) * 8)
    )
    decision, _ = decide.decide(settings=settings, observation=o, state=decide.initial_state(settings=settings))
    assert decision.action is action
