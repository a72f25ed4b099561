"""One DisaggregatedInferenceService as the controller sees it: its parsed spec and its in-memory state.

`parse_service` turns a resource's ``.spec`` into what a tick needs (core settings, scale targets, role label
values, and for a heterogeneous or placed service its pools) and refuses what the API server's schema cannot
refuse (an unknown profile, one target for two pools). `ServiceMemory` is
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
from tokenscale.core import profile as core_profile
from tokenscale.core import settings as core_settings
from tokenscale.core.types import EngineSample, Role
from tokenscale.kube.scale import ScaleRef

__all__ = [
    "DEFAULT_POOL",
    "InvalidSpecError",
    "MetricsEndpoint",
    "Pool",
    "Pools",
    "RoleLabel",
    "ServiceConfig",
    "ServiceMemory",
    "parse_service",
]

DEFAULT_POOL = "default"
"""Name of a role's one pool when it has a scaleTargetRef (no variants) and spec.placement is set."""


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
class Pool:
    """One pool of a role: a variant, or the role's one workload under spec.placement.

    ``ref`` is the workload scaled, or with placement the template of the pool's deployment groups.
    """

    role: Role
    name: str
    ref: ScaleRef
    profile: core_profile.Profile
    gpu_product: str | None
    cost_per_gpu_hour: float
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True, slots=True)
class Pools:
    """Every pool of both roles, and the placement spec when pools are pinned to network domains."""

    prefill: tuple[Pool, ...]
    decode: tuple[Pool, ...]
    placement: v1alpha1.PlacementSpec | None

    def of(self, role: Role) -> tuple[Pool, ...]:
        return self.prefill if role is Role.PREFILL else self.decode

    @property
    def all(self) -> tuple[Pool, ...]:
        return self.prefill + self.decode


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """A parsed resource at one generation.

    ``prefill_ref``/``decode_ref`` are each role's scale target, or with variants its first variant's. ``pools``
    is set when a role has variants or spec.placement is set: the tick then scales the pools (and their groups)
    instead of one target per role; None keeps the one-target-per-role path unchanged.
    """

    spec: v1alpha1.DisaggregatedInferenceServiceSpec
    settings: core_settings.ScalingSettings
    prefill_ref: ScaleRef
    decode_ref: ScaleRef
    role_label: RoleLabel
    generation: int
    pools: Pools | None = None

    def template_refs(self, role: Role) -> tuple[ScaleRef, ...]:
        """Every workload of ``role`` the spec names (its scale target, or each variant's)."""
        if self.pools is None:
            return (self.prefill_ref if role is Role.PREFILL else self.decode_ref,)
        return tuple(pool.ref for pool in self.pools.of(role))

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


def _ref(target: v1alpha1.ScaleTargetRef) -> ScaleRef:
    return ScaleRef(api_version=target.api_version, kind=target.kind, name=target.name)


def _pools(*, role: Role, spec: v1alpha1.RoleSpec, profile: core_profile.Profile) -> tuple[Pool, ...]:
    if spec.variants is None:
        assert spec.scale_target_ref is not None  # the schema asks for one of the two
        # One pool whose instances are the reference profile's: the role's bounds are its bounds.
        return (
            Pool(
                role=role,
                name=DEFAULT_POOL,
                ref=_ref(spec.scale_target_ref),
                profile=profile,
                gpu_product=None,
                cost_per_gpu_hour=1.0,
                min_replicas=spec.min_replicas,
                max_replicas=spec.max_replicas,
            ),
        )
    return tuple(
        Pool(
            role=role,
            name=variant.name,
            ref=_ref(variant.scale_target_ref),
            # Loaded as the service's profile is, so their velocities compare.
            profile=profiles.load_profile(variant.profile) if variant.profile else profile,
            gpu_product=variant.gpu_product,
            cost_per_gpu_hour=variant.cost_per_gpu_hour,
            min_replicas=variant.min_replicas,
            max_replicas=variant.max_replicas,
        )
        for variant in spec.variants
    )


def parse_service(*, spec: Mapping[str, Any], generation: int) -> ServiceConfig:
    """Validate ``spec`` and build the core settings. Raises `InvalidSpecError` with what to fix."""
    try:
        parsed = v1alpha1.parse_spec(dict(spec))
        profile = profiles.load_profile(parsed.profile.name)
        settings = parsed.to_core(profile=profile)
        pools: Pools | None = None
        if parsed.placement is not None or parsed.prefill.variants or parsed.decode.variants:
            pools = Pools(
                prefill=_pools(role=Role.PREFILL, spec=parsed.prefill, profile=profile),
                decode=_pools(role=Role.DECODE, spec=parsed.decode, profile=profile),
                placement=parsed.placement,
            )
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise InvalidSpecError(str(exc)) from exc
    if pools is None:
        assert parsed.prefill.scale_target_ref is not None
        assert parsed.decode.scale_target_ref is not None
        prefill_ref, decode_ref = _ref(parsed.prefill.scale_target_ref), _ref(parsed.decode.scale_target_ref)
        if prefill_ref == decode_ref:
            raise InvalidSpecError("prefill and decode must scale different targets")
    else:
        refs = [pool.ref for pool in pools.all]
        if len(set(refs)) != len(refs):
            raise InvalidSpecError("every pool (variant) of both roles must scale a different target")
        if pools.placement is not None and any((r.api_version, r.kind) != ("apps/v1", "Deployment") for r in refs):
            raise InvalidSpecError(
                "spec.placement copies its templates: every scaleTargetRef must be an apps/v1 Deployment"
            )
        prefill_ref, decode_ref = pools.prefill[0].ref, pools.decode[0].ref
    key, prefill, decode, converted = parsed.role_label.resolved()
    return ServiceConfig(
        spec=parsed,
        settings=settings,
        prefill_ref=prefill_ref,
        decode_ref=decode_ref,
        role_label=RoleLabel(key=key, prefill=prefill, decode=decode, converted=converted),
        generation=generation,
        pools=pools,
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
    placements: collections.deque[v1alpha1.PlacementRecord] = field(
        default_factory=lambda: collections.deque(maxlen=v1alpha1.MAX_PLACEMENT_HISTORY)
    )
    """The last placements of a service with deployment groups, newest last."""
    domain_priorities: dict[str, str] = field(default_factory=dict)
    """Subgroup priority of each domain when nodes were last read (they are read only when a count changes)."""
    status_written_seconds: float | None = None
    """When this operator last wrote the status (its live numbers are refreshed from then on)."""

    def state_for(self, config: ServiceConfig) -> decide.ControllerState:
        """The policy state, started afresh when the spec's generation changed."""
        if self.state is None or self.generation != config.generation:
            self.state = decide.initial_state(settings=config.settings)
            self.generation = config.generation
        return self.state
