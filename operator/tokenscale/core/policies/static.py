"""Static provisioning: fixed counts whatever the load (the cost and attainment reference point).

Without configured counts the policy keeps the workloads' current replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenscale.core import reasons
from tokenscale.core.policies.base import BehaviorLimits, Recommendation
from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import Observation, Reason

__all__ = ["StaticPolicy"]


@dataclass(frozen=True, slots=True)
class StaticPolicy(BehaviorLimits):
    """Fixed replica counts."""

    name: str = "static"
    converts: bool = False

    def initial_state(self, *, settings: ScalingSettings) -> None:
        del settings

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: None
    ) -> tuple[Recommendation, None]:
        counts = settings.static
        if counts is None:
            prefill, decode = observation.prefill.spec_replicas, observation.decode.spec_replicas
            message = f"no static counts configured: keeping {prefill} prefill, {decode} decode"
        else:
            prefill, decode = counts.prefill_replicas, counts.decode_replicas
            message = f"static counts: {prefill} prefill, {decode} decode"
        return Recommendation(prefill, decode, reasons=(Reason(reasons.STATIC_COUNTS, message),)), state
