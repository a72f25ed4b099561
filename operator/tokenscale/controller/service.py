"""One DisaggregatedInferenceService as the controller sees it: its parsed spec and its in-memory state.

`parse_service` turns a resource's ``.spec`` into what a tick needs (core settings, scale targets, role label
values) and refuses what the API server's schema cannot refuse (an unknown profile). `ServiceMemory` is
what the operator keeps between ticks; everything it must not lose across a restart (conversions) lives on
the pods instead.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenscale.api import profiles, v1alpha1
from tokenscale.core import decide
from tokenscale.core import settings as core_settings
from tokenscale.core.types import EngineSample
from tokenscale.kube.scale import ScaleRef

__all__ = ["InvalidSpecError", "MetricsEndpoint", "RoleLabel", "ServiceConfig", "ServiceMemory", "parse_service"]


class InvalidSpecError(ValueError):
    """The resource cannot be reconciled as written; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """Where a service's engine metrics are read (``spec.engine``, ``spec.modelName``, ``spec.metrics``)."""

    engine: str
    port: int
    path: str
    model_name: str | None
    namespace: str
    prometheus_url: str | None = None
    """Set for ``source: prometheus``: ask this Prometheus instead of scraping the pods."""


@dataclass(frozen=True, slots=True)
class RoleLabel:
    """The pod label that tells the router a pod's serving role, and its three values."""

    key: str
    prefill: str
    decode: str
    converted: str


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """A parsed resource at one generation."""

    spec: v1alpha1.DisaggregatedInferenceServiceSpec
    settings: core_settings.ScalingSettings
    prefill_ref: ScaleRef
    decode_ref: ScaleRef
    role_label: RoleLabel
    generation: int

    @property
    def tick_seconds(self) -> float:
        return self.spec.metrics.scrape_interval_seconds

    def metrics_endpoint(self, *, namespace: str) -> MetricsEndpoint:
        """Where this service's engine metrics are read."""
        metrics = self.spec.metrics
        return MetricsEndpoint(
            engine=self.spec.engine.value,
            port=metrics.port,
            path=metrics.path,
            model_name=self.spec.model_name,
            namespace=namespace,
            prometheus_url=metrics.prometheus_url if metrics.source is v1alpha1.MetricsSource.PROMETHEUS else None,
        )


def _ref(role: v1alpha1.RoleSpec) -> ScaleRef:
    target = role.scale_target_ref
    return ScaleRef(api_version=target.api_version, kind=target.kind, name=target.name)


def parse_service(*, spec: Mapping[str, Any], generation: int) -> ServiceConfig:
    """Validate ``spec`` and build the core settings. Raises `InvalidSpecError` with what to fix."""
    try:
        parsed = v1alpha1.parse_spec(dict(spec))
        profile = profiles.load_profile(parsed.profile.name)
        settings = parsed.to_core(profile=profile)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise InvalidSpecError(str(exc)) from exc
    prefill_ref, decode_ref = _ref(parsed.prefill), _ref(parsed.decode)
    if prefill_ref == decode_ref:
        raise InvalidSpecError("prefill and decode must scale different targets")
    key, prefill, decode, converted = parsed.role_label.resolved()
    return ServiceConfig(
        spec=parsed,
        settings=settings,
        prefill_ref=prefill_ref,
        decode_ref=decode_ref,
        role_label=RoleLabel(key=key, prefill=prefill, decode=decode, converted=converted),
        generation=generation,
    )


@dataclass
class ServiceMemory:
    """What the operator remembers of one service between ticks (lost on restart, rebuilt from the cluster)."""

    generation: int | None = None
    """Generation the policy state was built for; a new spec starts the policy afresh."""
    state: decide.ControllerState | None = None
    histories: dict[str, list[EngineSample]] = field(default_factory=dict)
    """Recent samples per pod name, oldest first, trimmed to the rate window."""
    decisions: collections.deque[v1alpha1.DecisionRecord] = field(
        default_factory=lambda: collections.deque(maxlen=v1alpha1.MAX_DECISION_HISTORY)
    )
    posted_events: dict[tuple[str, str], float] = field(default_factory=dict)
    """(reason, message) -> when last posted, to keep a repeated Event from being posted every tick."""

    def state_for(self, config: ServiceConfig) -> decide.ControllerState:
        """The policy state, started afresh when the spec's generation changed."""
        if self.state is None or self.generation != config.generation:
            self.state = decide.initial_state(settings=config.settings)
            self.generation = config.generation
        return self.state
