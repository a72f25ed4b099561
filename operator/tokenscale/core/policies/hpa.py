"""Kubernetes HPA (autoscaling/v2) on a per-pod metric, each role on its own (algorithms.md §3.1, [paper: k8s docs]).

Per role, over the Ready pods with fresh metrics: ``ratio = mean(metric) / target``; inside the tolerance
``|ratio − 1| ≤ 0.1`` the count stays, else ``desired = ceil(ratio · pods)``. As the HPA controller does, pods
without a value change the ratio before it is applied: missing metrics count as 100% of the target when
scaling in and 0% when scaling out, unready pods as 0% when scaling out; if that flips the direction or lands in
the tolerance the count stays. Evaluated every ``sync_period_seconds`` (15 s), held in between. Its own
defaults replace the shared behaviour's: scale-down stabilisation 300 s; per evaluation at most
``max(4, 100%)`` added and 100% removed (each also within the behaviour's step limits).
Default metric: KV-cache usage with target 0.7, from the TokenScale author's simulator configs [paper].
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenscale.core import reasons
from tokenscale.core.policies.base import Recommendation, ceil_replicas
from tokenscale.core.policies.pod_metrics import RoleMetric, role_metric
from tokenscale.core.settings import HPASettings, ScalingSettings
from tokenscale.core.types import Observation, Reason, Role

__all__ = ["HPAPolicy", "HPAState", "hpa_replicas"]

_HPA_MIN_SCALE_UP_PODS = 4


@dataclass(frozen=True, slots=True)
class HPAState:
    """Time of the last evaluation and its recommendations."""

    evaluated_at_seconds: float | None = None
    prefill_replicas: int = 0
    decode_replicas: int = 0


def hpa_replicas(*, metric: RoleMetric, current: int, knobs: HPASettings) -> tuple[int, float]:
    """The HPA controller's replica calculation for one role: (desired replicas, usage ratio used)."""
    if metric.known_pods == 0:
        return current, 1.0
    ratio = metric.total / (metric.known_pods * knobs.target)
    ignore_unready = metric.unready_pods > 0 and ratio > 1.0
    if not ignore_unready and metric.unknown_ready_pods == 0:
        if abs(1.0 - ratio) <= knobs.tolerance:
            return current, ratio
        return ceil_replicas(ratio * metric.known_pods), ratio
    total = metric.total
    pods = metric.known_pods + metric.unknown_ready_pods
    if ratio < 1.0:
        total += metric.unknown_ready_pods * knobs.target
    if ignore_unready:
        pods += metric.unready_pods
    new_ratio = total / (pods * knobs.target)
    if abs(1.0 - new_ratio) <= knobs.tolerance or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        return current, new_ratio
    desired = ceil_replicas(new_ratio * pods)
    if (new_ratio < 1.0 and desired > current) or (new_ratio > 1.0 and desired < current):
        return current, new_ratio
    return desired, new_ratio


@dataclass(frozen=True, slots=True)
class HPAPolicy:
    """HPA per role."""

    name: str = "hpa"
    converts: bool = False

    def initial_state(self, *, settings: ScalingSettings) -> HPAState:
        del settings
        return HPAState()

    def stabilization_seconds(self, *, settings: ScalingSettings) -> float:
        return settings.hpa.scale_down_stabilization_seconds

    def step_limits(self, *, settings: ScalingSettings, role: Role, current: int) -> tuple[int, int]:
        del role
        behavior = settings.behavior
        return (
            min(behavior.max_scale_up_step, max(_HPA_MIN_SCALE_UP_PODS, current)),
            min(behavior.max_scale_down_step, current),
        )

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: HPAState
    ) -> tuple[Recommendation, HPAState]:
        knobs = settings.hpa
        now = observation.now_seconds
        if state.evaluated_at_seconds is not None and now - state.evaluated_at_seconds < knobs.sync_period_seconds:
            wait = Reason(
                reasons.SYNC_PERIOD_WAIT, f"next evaluation {knobs.sync_period_seconds:g} s after the last one"
            )
            return Recommendation(state.prefill_replicas, state.decode_replicas, reasons=(wait,)), state
        found: list[Reason] = []
        inputs: dict[str, float] = {}
        counts: dict[Role, int] = {}
        for role, view in ((Role.PREFILL, observation.prefill), (Role.DECODE, observation.decode)):
            metric = role_metric(view, knobs.metric)
            counts[role], ratio = hpa_replicas(metric=metric, current=view.spec_replicas, knobs=knobs)
            inputs[f"{role.value}_{knobs.metric}_mean"] = metric.mean
            inputs[f"{role.value}_usage_ratio"] = ratio
            found.append(_reason(role=role, ratio=ratio, desired=counts[role], knobs=knobs))
        recommendation = Recommendation(counts[Role.PREFILL], counts[Role.DECODE], reasons=tuple(found), inputs=inputs)
        return recommendation, HPAState(now, counts[Role.PREFILL], counts[Role.DECODE])


def _reason(*, role: Role, ratio: float, desired: int, knobs: HPASettings) -> Reason:
    if abs(1.0 - ratio) <= knobs.tolerance:
        code = reasons.WITHIN_TOLERANCE
    elif ratio > 1.0:
        code = reasons.METRIC_ABOVE_TARGET
    else:
        code = reasons.METRIC_BELOW_TARGET
    return Reason(code, f"{knobs.metric} at {ratio:.2f} x target {knobs.target:g}: {desired} replicas", role)
