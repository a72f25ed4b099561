"""AIBrix KPA (Knative-style), each role on its own (algorithms.md §3.2, [paper: aibrix source, v0.5 defaults]).

Per role the metric *total* over Ready pods (unknown Ready pods at the known pods' mean) is averaged over the
stable (180 s) and panic (60 s) windows, giving ``stable`` and ``panic``:

- ``dspc = ceil(stable / target)``, or the current count while ``stable / ready`` lies within
  ``[target·(1 − down_tolerance), target·(1 + up_tolerance)]``; ``dppc`` likewise from ``panic``; both clamped to
  ``[floor(ready / max_scale_down_rate), max(1, ceil(max_scale_up_rate · ready))]``;
- panic starts when ``panic > 0`` and (``stable ≤ 0`` or ``panic / stable > panic_threshold``) and lasts one
  stable window after the last such tick; in panic the count is ``max(dspc, dppc)`` and never decreases,
  otherwise ``dspc``. (A zero panic value never panics, so zero load scales in: the stuck-KPA bug, aibrix #593.)

Prefill targets concurrency (running + waiting requests per pod) at ``target_concurrency``; decode targets
``decode_metric`` at ``decode_target`` (KV usage 0.7), as TokenScale's AIBrix baseline (algorithms.md §3.6).
Scale-in goes through the shared stabilisation with ``scale_down_delay_seconds`` (AIBrix v0.5: 300 s).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tokenscale.core import reasons
from tokenscale.core.policies.base import BehaviorLimits, Recommendation, ceil_replicas
from tokenscale.core.policies.pod_metrics import MetricName, role_metric
from tokenscale.core.settings import KPASettings, ScalingSettings
from tokenscale.core.types import Observation, Reason, Role, RoleView

__all__ = ["KPAPolicy", "KPARoleState", "KPAState", "kpa_step"]


@dataclass(frozen=True, slots=True)
class KPARoleState:
    """One role's metric totals ``(time, total)`` over the stable window, and its panic memory."""

    totals: tuple[tuple[float, float], ...] = ()
    panic_since_seconds: float | None = None
    max_panic_pods: int = 0


@dataclass(frozen=True, slots=True)
class KPAState:
    prefill: KPARoleState = field(default_factory=KPARoleState)
    decode: KPARoleState = field(default_factory=KPARoleState)


def _average(totals: tuple[tuple[float, float], ...], since_seconds: float) -> float:
    values = [total for time, total in totals if time >= since_seconds]
    return sum(values) / len(values) if values else 0.0


def kpa_step(
    *,
    now_seconds: float,
    total: float,
    ready: int,
    current: int,
    target: float,
    knobs: KPASettings,
    state: KPARoleState,
) -> tuple[int, bool, float, float, KPARoleState]:
    """One role's KPA evaluation: (desired, in panic, stable, panic, next state)."""
    oldest = now_seconds - knobs.stable_window_seconds
    totals = (*(entry for entry in state.totals if entry[0] >= oldest), (now_seconds, total))
    stable = _average(totals, oldest)
    panic = _average(totals, now_seconds - knobs.panic_window_seconds)
    pods = max(ready, 1)
    low = math.floor(pods / knobs.max_scale_down_rate)
    high = max(1, math.ceil(knobs.max_scale_up_rate * pods))

    def desired(value: float) -> int:
        per_pod = value / pods
        if target * (1.0 - knobs.down_tolerance) <= per_pod <= target * (1.0 + knobs.up_tolerance):
            wanted = current
        else:
            wanted = ceil_replicas(value / target)
        return min(high, max(low, wanted))

    dspc, dppc = desired(stable), desired(panic)
    over = panic > 0 and (stable <= 0 or panic / stable > knobs.panic_threshold)
    panic_since = now_seconds if over else state.panic_since_seconds
    if panic_since is not None and now_seconds - panic_since >= knobs.stable_window_seconds:
        panic_since = None
    if panic_since is not None:
        wanted = max(dspc, dppc, state.max_panic_pods)
        return wanted, True, stable, panic, KPARoleState(totals, panic_since, wanted)
    return dspc, False, stable, panic, KPARoleState(totals, None, 0)


@dataclass(frozen=True, slots=True)
class KPAPolicy(BehaviorLimits):
    """AIBrix KPA per role."""

    name: str = "kpa"
    converts: bool = False

    def initial_state(self, *, settings: ScalingSettings) -> KPAState:
        del settings
        return KPAState()

    def stabilization_seconds(self, *, settings: ScalingSettings) -> float:
        return settings.kpa.scale_down_delay_seconds

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: KPAState
    ) -> tuple[Recommendation, KPAState]:
        knobs = settings.kpa
        found: list[Reason] = []
        inputs: dict[str, float] = {}
        counts: dict[Role, int] = {}
        next_roles: dict[Role, KPARoleState] = {}
        roles: tuple[tuple[Role, RoleView, MetricName, float, KPARoleState], ...] = (
            (Role.PREFILL, observation.prefill, "concurrency", knobs.target_concurrency, state.prefill),
            (Role.DECODE, observation.decode, knobs.decode_metric, knobs.decode_target, state.decode),
        )
        for role, view, metric_name, target, role_state in roles:
            metric = role_metric(view, metric_name)
            counts[role], panicking, stable, panic, next_roles[role] = kpa_step(
                now_seconds=observation.now_seconds,
                total=metric.extrapolated_total,
                ready=view.ready_replicas,
                current=view.spec_replicas,
                target=target,
                knobs=knobs,
                state=role_state,
            )
            inputs[f"{role.value}_{metric_name}_stable_total"] = stable
            inputs[f"{role.value}_{metric_name}_panic_total"] = panic
            message = (
                f"{metric_name} stable {stable:.2f} / panic {panic:.2f} over {view.ready_replicas} Ready pods, "
                f"target {target:g} per pod: {counts[role]} replicas"
            )
            if panicking:
                found.append(Reason(reasons.PANIC_MODE, message, role))
            elif stable / max(view.ready_replicas, 1) > target:
                found.append(Reason(reasons.METRIC_ABOVE_TARGET, message, role))
            else:
                found.append(Reason(reasons.METRIC_BELOW_TARGET, message, role))
        recommendation = Recommendation(counts[Role.PREFILL], counts[Role.DECODE], reasons=tuple(found), inputs=inputs)
        return recommendation, KPAState(prefill=next_roles[Role.PREFILL], decode=next_roles[Role.DECODE])
