"""The interface every scaling policy implements, and what it returns.

A policy sees an `Observation` whose ``load`` is known (`tokenscale.core.decide` holds otherwise) and its own
state, and returns a `Recommendation`: raw counts before the shared guards, pod changes, reasons and the inputs
that led to them. It is pure: the same arguments give the same answer; time is ``observation.now_seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import LoadSignals, Observation, Reason, Role

__all__ = ["BehaviorLimits", "Policy", "Recommendation", "ceil_replicas", "known_load"]

_CEIL_SLACK = 1e-9
"""Demand that is a whole number of instances up to float noise needs that many, not one more."""


def ceil_replicas(instances: float) -> int:
    """``ceil(instances)`` tolerant of float noise (2.000000000001 → 2), at least 0."""
    whole = int(instances)
    return max(0, whole if instances - whole <= _CEIL_SLACK else whole + 1)


def known_load(observation: Observation) -> LoadSignals:
    """The observation's load; policies are only called when it is known."""
    if observation.load is None:
        raise ValueError("a policy needs a known load; decide() holds when it is unknown")
    return observation.load


@dataclass(frozen=True, slots=True)
class Recommendation:
    """A policy's answer before the shared guards: counts and pod changes with their reasons and inputs."""

    prefill_replicas: int
    decode_replicas: int
    reasons: tuple[Reason, ...] = ()
    inputs: Mapping[str, float] = field(default_factory=dict)
    convert_pods: tuple[str, ...] = ()
    restore_pods: tuple[str, ...] = ()
    withdraw_pods: tuple[str, ...] = ()
    rejoin_pods: tuple[str, ...] = ()


class Policy(Protocol):
    """A named scaling policy (one module each, registered in `tokenscale.core.policies.registry`)."""

    @property
    def name(self) -> str:
        """The registry name."""
        ...

    @property
    def converts(self) -> bool:
        """Whether the policy uses convertible decoders; `decide` restores converted pods for those that do not."""
        ...

    def initial_state(self, *, settings: ScalingSettings) -> Any:
        """The policy's memory before the first tick (a frozen value)."""
        ...

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: Any
    ) -> tuple[Recommendation, Any]:
        """The raw recommendation for this tick and the next state."""
        ...

    def stabilization_seconds(self, *, settings: ScalingSettings) -> float:
        """Scale-in stabilisation window of the shared guards (the behaviour's, unless the policy has its own)."""
        ...

    def step_limits(self, *, settings: ScalingSettings, role: Role, current: int) -> tuple[int, int]:
        """(most replicas added, most removed) in one tick for ``role`` at ``current`` replicas."""
        ...


class BehaviorLimits:
    """Default guard limits: the behaviour's stabilisation window and step limits (a policy may override)."""

    def stabilization_seconds(self, *, settings: ScalingSettings) -> float:
        return settings.behavior.scale_in_stabilization_seconds

    def step_limits(self, *, settings: ScalingSettings, role: Role, current: int) -> tuple[int, int]:
        del role, current
        return settings.behavior.max_scale_up_step, settings.behavior.max_scale_down_step
