"""AIBrix APA, each role on its own (algorithms.md §3.3, [paper: aibrix source, v0.5 defaults]).

Per role, ``r = mean per-pod metric over the window / target`` (the mean over Ready pods with fresh metrics,
averaged over ``window_seconds``), with ``n`` the Ready pods:

- ``r > 1 + up_tolerance``: ``desired = min(ceil(n·r), ceil(max_scale_up_rate·n))``, never below the current count;
- ``r < 1 − down_tolerance``: ``desired = max(ceil(n·r), floor(n / max_scale_down_rate))``, never above it;
- otherwise the current count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tokenscale.core import reasons
from tokenscale.core.policies.base import BehaviorLimits, Recommendation, ceil_replicas
from tokenscale.core.policies.pod_metrics import role_metric
from tokenscale.core.settings import APASettings, ScalingSettings
from tokenscale.core.types import Observation, Reason, Role

__all__ = ["APAPolicy", "APAState", "apa_replicas"]


@dataclass(frozen=True, slots=True)
class APAState:
    """Per-pod means ``(time, value)`` of each role over the window."""

    prefill: tuple[tuple[float, float], ...] = field(default=())
    decode: tuple[tuple[float, float], ...] = field(default=())


def apa_replicas(*, ratio: float, ready: int, current: int, knobs: APASettings) -> int:
    """APA's rule for one role (module docstring)."""
    pods = max(ready, 1)
    if ratio > 1.0 + knobs.up_tolerance:
        return max(current, min(ceil_replicas(pods * ratio), math.ceil(knobs.max_scale_up_rate * pods)))
    if ratio < 1.0 - knobs.down_tolerance:
        return min(current, max(ceil_replicas(pods * ratio), math.floor(pods / knobs.max_scale_down_rate)))
    return current


@dataclass(frozen=True, slots=True)
class APAPolicy(BehaviorLimits):
    """AIBrix APA per role."""

    name: str = "apa"
    converts: bool = False

    def initial_state(self, *, settings: ScalingSettings) -> APAState:
        del settings
        return APAState()

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: APAState
    ) -> tuple[Recommendation, APAState]:
        knobs = settings.apa
        now = observation.now_seconds
        oldest = now - knobs.window_seconds
        found: list[Reason] = []
        inputs: dict[str, float] = {}
        counts: dict[Role, int] = {}
        series: dict[Role, tuple[tuple[float, float], ...]] = {}
        for role, view, previous in (
            (Role.PREFILL, observation.prefill, state.prefill),
            (Role.DECODE, observation.decode, state.decode),
        ):
            metric = role_metric(view, knobs.metric)
            series[role] = (*(entry for entry in previous if entry[0] >= oldest), (now, metric.mean))
            mean = sum(value for _, value in series[role]) / len(series[role])
            ratio = mean / knobs.target
            counts[role] = apa_replicas(ratio=ratio, ready=view.ready_replicas, current=view.spec_replicas, knobs=knobs)
            inputs[f"{role.value}_{knobs.metric}_mean"] = mean
            inputs[f"{role.value}_ratio"] = ratio
            if ratio > 1.0 + knobs.up_tolerance:
                code = reasons.METRIC_ABOVE_TARGET
            elif ratio < 1.0 - knobs.down_tolerance:
                code = reasons.METRIC_BELOW_TARGET
            else:
                code = reasons.WITHIN_TOLERANCE
            found.append(
                Reason(code, f"{knobs.metric} at {ratio:.2f} x target {knobs.target:g}: {counts[role]} replicas", role)
            )
        recommendation = Recommendation(counts[Role.PREFILL], counts[Role.DECODE], reasons=tuple(found), inputs=inputs)
        return recommendation, APAState(prefill=series[Role.PREFILL], decode=series[Role.DECODE])
