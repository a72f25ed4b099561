"""One tick's decision: the named policy's recommendation through the shared guards. Shared by the operator and
the simulator; pure (time is ``observation.now_seconds``), deterministic, never reads a clock.

Order of a tick:

1. **Unknown input**: when ``observation.load`` is ``None`` the decision is a *hold*: every count stays at its
   workload's current replicas (moved into the bounds, which are configuration), no pod is converted, and only
   conversions past ``max_conversion_seconds`` by their own timestamps are restored (a time rule, no load needed).
   No recommendation is recorded.
2. **Policy**: `Policy.recommend` gives raw counts, pod changes, reasons and inputs.
3. **Record** each raw count in its role's recommendation history, apart from applied counts. A fresh history
   (first tick, or after a restart of the controller) first records the workload's current count, so that a
   restart never scales in before one stabilisation window has passed (none with a window of 0).
4. **Guards** per role (`tokenscale.core.guards.apply_guards`): stabilisation, no scale-in while some input is
   unknown, step limits, bounds.
5. **Conversion**: a policy without convertible decoders restores any converted pod (e.g. after a policy switch).

The action is `Action.HOLD` for 1, else `CONVERT` when pods convert, `SCALE` when a count changes or pods are
withdrawn or rejoin, `RESTORE` when pods only restore, and `NONE` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tokenscale.core import conversion, guards, reasons
from tokenscale.core.policies import registry
from tokenscale.core.policies.base import Policy, Recommendation
from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import Action, Decision, Observation, Reason, Role, ServingRole

__all__ = ["ControllerState", "decide", "initial_state"]

_MAX_UNKNOWN_IN_MESSAGE = 3


@dataclass(frozen=True, slots=True)
class ControllerState:
    """What a decision remembers for the next one. Opaque to callers: pass back what `decide` returned.

    ``policy`` is the name the memory belongs to; a different ``settings.policy`` starts afresh.
    """

    policy: str
    policy_state: Any
    prefill_history: guards.RecommendationHistory = field(default_factory=guards.RecommendationHistory)
    decode_history: guards.RecommendationHistory = field(default_factory=guards.RecommendationHistory)


def initial_state(*, settings: ScalingSettings) -> ControllerState:
    """The state before the first tick; raises `ValueError` for an unknown policy name."""
    policy = registry.get_policy(settings.policy)
    return ControllerState(policy=settings.policy, policy_state=policy.initial_state(settings=settings))


def _converted_pods(observation: Observation) -> tuple[str, ...]:
    return tuple(p.name for p in observation.decode.pods if p.serving_role is ServingRole.CONVERTED)


def _hold(*, settings: ScalingSettings, observation: Observation) -> Decision:
    prefill_current = observation.prefill.spec_replicas
    decode_current = observation.decode.spec_replicas
    shown = "; ".join(observation.unknown_reasons[:_MAX_UNKNOWN_IN_MESSAGE]) or "no load signals"
    more = len(observation.unknown_reasons) - _MAX_UNKNOWN_IN_MESSAGE
    found = [Reason(reasons.INPUT_UNKNOWN, shown + (f" (+{more} more)" if more > 0 else ""))]
    expired = conversion.expired_conversions(settings=settings, observation=observation)
    if expired:
        found.append(
            Reason(
                reasons.CONVERSION_EXPIRED,
                f"restoring {', '.join(expired)}: converted for {settings.tokenscale.max_conversion_seconds:g} s",
                Role.DECODE,
            )
        )
    return Decision(
        action=Action.HOLD,
        prefill_replicas=settings.prefill.clamp(prefill_current),
        decode_replicas=settings.decode.clamp(decode_current),
        recommended_prefill_replicas=prefill_current,
        recommended_decode_replicas=decode_current,
        restore_pods=expired,
        reasons=tuple(found),
        inputs={"unknown_pods": float(len(observation.unknown_reasons))},
    )


def _action(*, recommendation: Recommendation, restore_pods: tuple[str, ...], changed: bool) -> Action:
    if recommendation.convert_pods:
        return Action.CONVERT
    if changed or recommendation.withdraw_pods or recommendation.rejoin_pods:
        return Action.SCALE
    if restore_pods:
        return Action.RESTORE
    return Action.NONE


def _limits(*, policy: Policy, settings: ScalingSettings, role: Role, current: int) -> guards.GuardLimits:
    up, down = policy.step_limits(settings=settings, role=role, current=current)
    return guards.GuardLimits(
        bounds=settings.prefill if role is Role.PREFILL else settings.decode,
        max_up_step=up,
        max_down_step=down,
        stabilization_seconds=policy.stabilization_seconds(settings=settings),
    )


def decide(
    *, settings: ScalingSettings, observation: Observation, state: ControllerState
) -> tuple[Decision, ControllerState]:
    """The decision for ``observation`` and the state for the next tick (module docstring for the order)."""
    policy = registry.get_policy(settings.policy)
    if state.policy != settings.policy:
        state = initial_state(settings=settings)
    if observation.load is None:
        return _hold(settings=settings, observation=observation), state

    now = observation.now_seconds
    recommendation, policy_state = policy.recommend(
        settings=settings, observation=observation, state=state.policy_state
    )
    partially_unknown = bool(observation.unknown_reasons)
    found: list[Reason] = list(recommendation.reasons)
    if partially_unknown:
        shown = "; ".join(observation.unknown_reasons[:_MAX_UNKNOWN_IN_MESSAGE])
        found.insert(0, Reason(reasons.INPUT_PARTIALLY_UNKNOWN, f"assumed at the mean load: {shown}"))

    histories: dict[Role, guards.RecommendationHistory] = {}
    finals: dict[Role, int] = {}
    for role, current, recommended, previous in (
        (Role.PREFILL, observation.prefill.spec_replicas, recommendation.prefill_replicas, state.prefill_history),
        (Role.DECODE, observation.decode.spec_replicas, recommendation.decode_replicas, state.decode_history),
    ):
        limits = _limits(policy=policy, settings=settings, role=role, current=current)
        keep = limits.stabilization_seconds
        seeded = guards.RecommendationHistory(((now, current),)) if not previous.entries and keep > 0 else previous
        histories[role] = seeded.record(now_seconds=now, replicas=recommended, keep_seconds=keep)
        finals[role], guard_reasons = guards.apply_guards(
            role=role,
            current=current,
            recommended=recommended,
            limits=limits,
            history=histories[role],
            now_seconds=now,
            input_partially_unknown=partially_unknown,
        )
        found.extend(guard_reasons)

    restore_pods = recommendation.restore_pods
    if not conversion.conversion_in_use(converts=policy.converts, settings=settings):
        converted = _converted_pods(observation)
        if converted:
            restore_pods = converted
            found.append(
                Reason(
                    reasons.CONVERSION_NOT_USED,
                    f"restoring {len(converted)} converted pods: this policy does not convert",
                    Role.DECODE,
                )
            )

    changed = (
        finals[Role.PREFILL] != observation.prefill.spec_replicas
        or finals[Role.DECODE] != observation.decode.spec_replicas
    )
    decision = Decision(
        action=_action(recommendation=recommendation, restore_pods=restore_pods, changed=changed),
        prefill_replicas=finals[Role.PREFILL],
        decode_replicas=finals[Role.DECODE],
        recommended_prefill_replicas=recommendation.prefill_replicas,
        recommended_decode_replicas=recommendation.decode_replicas,
        convert_pods=recommendation.convert_pods,
        restore_pods=restore_pods,
        reasons=tuple(found),
        inputs=recommendation.inputs,
        withdraw_pods=recommendation.withdraw_pods,
        rejoin_pods=recommendation.rejoin_pods,
    )
    next_state = ControllerState(
        policy=settings.policy,
        policy_state=policy_state,
        prefill_history=histories[Role.PREFILL],
        decode_history=histories[Role.DECODE],
    )
    return decision, next_state
