"""Limits every policy's recommendation passes through, as small composable functions.

`apply_guards` applies them to one role in this order (each later step sees the earlier one's result):

1. **stabilisation**: a scale-in goes only down to the highest recommendation recorded within the last
   ``stabilization_seconds`` (Kubernetes HPA's scale-down stabilisation; scale-out is immediate);
2. **unknown input**: no scale-in while some input is unknown (an unknown pod never counts as idle);
3. **step limits**: at most ``max_up_step`` replicas added and ``max_down_step`` removed per tick;
4. **bounds**: ``[min_replicas, max_replicas]``; last, so the configured bounds always hold.

Tolerance bands and cooldowns depend on a policy's own metric and memory; the policies call
`within_tolerance` and `cooldown_elapsed` themselves. Recommendations are recorded in a
`RecommendationHistory`, apart from the applied counts, so that a clamp never feeds back into the next
recommendation (a stuck-scaling bug of other autoscalers, reference/ecosystem.md R2).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenscale.core import reasons
from tokenscale.core.settings import RoleBounds
from tokenscale.core.types import Reason, Role

__all__ = [
    "GuardLimits",
    "RecommendationHistory",
    "apply_guards",
    "block_scale_in",
    "clamp_to_bounds",
    "cooldown_elapsed",
    "limit_step",
    "stabilize_scale_in",
    "within_tolerance",
]


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The limits of one role for one decision."""

    bounds: RoleBounds
    max_up_step: int
    max_down_step: int
    stabilization_seconds: float


@dataclass(frozen=True, slots=True)
class RecommendationHistory:
    """Recommendations of one role, ``(time_seconds, replicas)`` in ascending time, newest last."""

    entries: tuple[tuple[float, int], ...] = ()

    def record(self, *, now_seconds: float, replicas: int, keep_seconds: float) -> RecommendationHistory:
        """This history with ``replicas`` recorded at ``now_seconds``, entries older than ``keep_seconds`` dropped."""
        oldest = now_seconds - keep_seconds
        kept = tuple(entry for entry in self.entries if entry[0] >= oldest)
        return RecommendationHistory((*kept, (now_seconds, replicas)))

    def highest_since(self, *, since_seconds: float) -> int | None:
        """The highest recommendation recorded at or after ``since_seconds``; ``None`` if there is none."""
        values = [replicas for time, replicas in self.entries if time >= since_seconds]
        return max(values) if values else None


def stabilize_scale_in(
    *,
    current: int,
    proposed: int,
    history: RecommendationHistory,
    now_seconds: float,
    stabilization_seconds: float,
) -> int:
    """``proposed`` if it scales out; else ``min(current, max(proposed, highest recommendation in the window)).``"""
    if proposed >= current:
        return proposed
    highest = history.highest_since(since_seconds=now_seconds - stabilization_seconds)
    return min(current, max(proposed, highest if highest is not None else proposed))


def block_scale_in(*, current: int, proposed: int) -> int:
    """``max(current, proposed)``: nothing is removed."""
    return max(current, proposed)


def limit_step(*, current: int, proposed: int, max_up_step: int, max_down_step: int) -> int:
    """``proposed`` cut to ``[current − max_down_step, current + max_up_step]``."""
    return min(current + max_up_step, max(current - max_down_step, proposed))


def clamp_to_bounds(*, bounds: RoleBounds, replicas: int) -> int:
    """``replicas`` moved into ``[min_replicas, max_replicas]``."""
    return bounds.clamp(replicas)


def within_tolerance(*, ratio: float, tolerance_up: float, tolerance_down: float) -> bool:
    """True inside the dead band ``1 − tolerance_down ≤ ratio ≤ 1 + tolerance_up`` (metric ÷ target)."""
    return 1.0 - tolerance_down <= ratio <= 1.0 + tolerance_up


def cooldown_elapsed(*, now_seconds: float, last_seconds: float | None, cooldown_seconds: float) -> bool:
    """True when nothing happened yet or at least ``cooldown_seconds`` passed since ``last_seconds``."""
    return last_seconds is None or now_seconds - last_seconds >= cooldown_seconds


def apply_guards(
    *,
    role: Role,
    current: int,
    recommended: int,
    limits: GuardLimits,
    history: RecommendationHistory,
    now_seconds: float,
    input_partially_unknown: bool,
) -> tuple[int, tuple[Reason, ...]]:
    """The final count of one role and the reasons of every guard that changed it, in the module's order.

    ``history`` must already hold ``recommended`` (recorded at ``now_seconds``).
    """
    found: list[Reason] = []
    value = stabilize_scale_in(
        current=current,
        proposed=recommended,
        history=history,
        now_seconds=now_seconds,
        stabilization_seconds=limits.stabilization_seconds,
    )
    if value != recommended:
        found.append(
            Reason(
                reasons.SCALE_IN_STABILIZED,
                f"scale-in to {recommended} held at {value}: highest recommendation in the last "
                f"{limits.stabilization_seconds:g} s",
                role,
            )
        )
    if input_partially_unknown and value < current:
        found.append(
            Reason(
                reasons.SCALE_IN_BLOCKED_UNKNOWN_INPUT,
                f"scale-in to {value} refused while some pods have no fresh metrics",
                role,
            )
        )
        value = block_scale_in(current=current, proposed=value)
    stepped = limit_step(
        current=current, proposed=value, max_up_step=limits.max_up_step, max_down_step=limits.max_down_step
    )
    if stepped != value:
        found.append(
            Reason(
                reasons.STEP_LIMITED,
                f"{current} -> {value} cut to {stepped} (at most +{limits.max_up_step}/-{limits.max_down_step} "
                "per tick)",
                role,
            )
        )
    bounded = clamp_to_bounds(bounds=limits.bounds, replicas=stepped)
    if bounded > stepped:
        found.append(Reason(reasons.BOUNDED_BY_MIN, f"raised to minReplicas {bounded}", role))
    elif bounded < stepped:
        found.append(Reason(reasons.BOUNDED_BY_MAX, f"capped at maxReplicas {bounded}", role))
    return bounded, tuple(found)
