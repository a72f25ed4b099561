"""The ratio guard of a deployment group: HeteroScale pauses the service-discovery registration of the larger
role when the Ready P:D ratio is far from its target, until the other role catches up (pods become Ready out
of order: prefill and decode start at different speeds) [secondary: reference/algorithms.md §2.3, "Ratio
maintenance"; the rule below is reconstructed].

Ratios are of Ready *capacity* (each pod counts its variant's tokens/s for its role), so pools of different GPU
types compare fairly; with one GPU type per role they are ratios of Ready pods times a constant. The target is
the service's decided prefill capacity over its decided decode capacity.

Per group, with ``r = Ready prefill capacity / Ready decode capacity``, target ``t`` and tolerance ``τ``:

- ``r > t·(1 + τ)``: prefill is the larger role; its Ready pods serve oldest first while the ratio stays within
  ``t·(1 + τ)``, and the newer ones are withdrawn;
- ``r < t/(1 + τ)``: the same for decode against ``(1 + τ)/t``;
- otherwise every pod serves.

A role's oldest Ready pod always serves (a group is never dark), so a group whose other role has no Ready pod yet
serves one pod of the larger role. Protected pods (converted decoders, pods a soft scale-in withdrew) are neither
withdrawn nor rejoined here, but their capacity counts; pods that are not Ready are left as they are. The answer is
computed afresh each tick from the pods, so withdrawn pods rejoin as soon as the other role's new pods are Ready.
Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenscale.core.types import Reason, Role

__all__ = ["RATIO_REJOIN", "RATIO_WITHDRAW", "GroupPod", "RatioChanges", "balance_group"]

RATIO_WITHDRAW = "RatioWithdraw"
"""Pods of a group's larger role withdrawn from routing: its Ready P:D ratio is past the tolerance."""
RATIO_REJOIN = "RatioRejoin"
"""Pods the ratio guard withdrew rejoin routing: the other role caught up."""


@dataclass(frozen=True, slots=True)
class GroupPod:
    """One pod of a group, as the ratio guard sees it."""

    name: str
    role: Role
    ready: bool
    ready_since_seconds: float | None
    tokens_per_second: float
    """Its variant's per-instance capacity for its role."""
    withdrawn: bool = False
    """Withdrawn by the ratio guard now."""
    protected: bool = False
    """Converted, or withdrawn by a soft scale-in: the guard leaves it alone."""


@dataclass(frozen=True, slots=True)
class RatioChanges:
    """Pods to withdraw from and return to routing, and why."""

    withdraw: tuple[str, ...] = ()
    rejoin: tuple[str, ...] = ()
    reasons: tuple[Reason, ...] = ()


def _oldest_first(pod: GroupPod) -> tuple[float, str]:
    return (pod.ready_since_seconds if pod.ready_since_seconds is not None else float("inf"), pod.name)


def _serving(*, candidates: Sequence[GroupPod], protected_capacity: float, limit_tokens_per_second: float) -> set[str]:
    """The oldest candidates whose capacity, with the protected pods', stays within the limit (at least one)."""
    serving: set[str] = set()
    capacity = protected_capacity
    for pod in sorted(candidates, key=_oldest_first):
        dark = capacity <= 0  # no pod of the role serves yet: the oldest always does
        if not dark and capacity + pod.tokens_per_second > limit_tokens_per_second * (1 + 1e-9):
            break
        serving.add(pod.name)
        capacity += pod.tokens_per_second
    return serving


def balance_group(*, group: str, pods: Sequence[GroupPod], target_ratio: float, tolerance: float) -> RatioChanges:
    """Withdrawals and rejoins that bring ``group``'s Ready prefill:decode capacity ratio within ``tolerance`` of
    ``target_ratio`` (module docstring). Raises `ValueError` for a non-positive target or a negative tolerance."""
    if target_ratio <= 0 or tolerance < 0:
        raise ValueError("the target ratio must be positive and the tolerance not negative")
    ready = [p for p in pods if p.ready]
    capacity = {role: sum(p.tokens_per_second for p in ready if p.role is role) for role in (Role.PREFILL, Role.DECODE)}
    prefill, decode = capacity[Role.PREFILL], capacity[Role.DECODE]
    larger: Role | None = None
    if prefill > 0 and (decode <= 0 or prefill / decode > target_ratio * (1 + tolerance)):
        larger = Role.PREFILL
    elif decode > 0 and (prefill <= 0 or prefill / decode < target_ratio / (1 + tolerance)):
        larger = Role.DECODE
    serving: set[str] = {p.name for p in ready}
    if larger is not None:
        other = decode if larger is Role.PREFILL else prefill
        ratio = target_ratio if larger is Role.PREFILL else 1 / target_ratio
        limit = other * ratio * (1 + tolerance)
        own = [p for p in ready if p.role is larger]
        kept = _serving(
            candidates=[p for p in own if not p.protected],
            protected_capacity=sum(p.tokens_per_second for p in own if p.protected),
            limit_tokens_per_second=limit,
        )
        serving = {p.name for p in ready if p.role is not larger or p.protected} | kept
    withdraw = tuple(sorted(p.name for p in ready if not p.protected and not p.withdrawn and p.name not in serving))
    rejoin = tuple(sorted(p.name for p in ready if p.withdrawn and not p.protected and p.name in serving))
    reasons: list[Reason] = []
    shown = (
        f"{group}: Ready prefill:decode capacity {prefill:.0f}:{decode:.0f} tokens/s, target ratio {target_ratio:.3g}"
    )
    if withdraw:
        assert larger is not None
        reasons.append(
            Reason(
                RATIO_WITHDRAW,
                f"{shown} ±{100 * tolerance:.0f}%: {larger.value}'s newest {', '.join(withdraw)} withdrawn until the "
                "other role catches up",
                larger,
            )
        )
    if rejoin:
        reasons.append(Reason(RATIO_REJOIN, f"{shown}: {', '.join(rejoin)} rejoin routing"))
    return RatioChanges(withdraw=withdraw, rejoin=rejoin, reasons=tuple(reasons))
