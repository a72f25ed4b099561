"""A tick's pools: the variants of each role and, with ``spec.placement``, their deployment groups per network
domain (docs/heterogeneous.md). Used only for a service whose config has pools; a service with one target per
role never gets here.

**Read.** Each pool's template /scale (its selector lists the pool's pods, group pods included); with placement,
the template Deployments (copied into groups) and the service's group Deployments. A role's replicas for the
policy are its capacity in whole instances of the service's profile (`tokenscale.core.variants.reference_replicas`),
so every policy sizes a heterogeneous role in tokens/s. Per-instance velocities are the profiles' at the middle
bucket (decode) and ``min(V_P, V_N)`` (prefill), the same all tick.

**Act** (after the decision, in this order):

1. split each role's demand across its pools, cheapest tokens/s first (`tokenscale.core.variants.split_capacity`),
   within each pool's bounds and the instances the free GPUs of its type allow (nodes are read only when a count
   changes);
2. without placement, write each pool's /scale (scale-ins first, victims marked); with placement, plan where
   (HeteroScale's Algorithm 4, `tokenscale.core.placement.plan_placement`): delete the groups the plan empties,
   shrink groups (victims marked), create the groups of new domains as copies of the templates (owned by the
   resource), grow groups, and keep the templates at 0 replicas;
3. the ratio guard (`tokenscale.core.ratio_guard`, placement only): per group, the larger role's newest Ready pods
   get the label ``tokenscale.io/ratio-withdrawn=true`` (out of routing) until the other role catches up.

Every placement is recorded for status (``lastPlacements``) with its reason, and posted as an Event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tokenscale.api import labels as api_labels
from tokenscale.api import v1alpha1
from tokenscale.controller import report
from tokenscale.controller.service import Pool, ServiceConfig
from tokenscale.controller.victims import VICTIM_DELETION_COST, scale_in_victims
from tokenscale.core import placement, ratio_guard, variants
from tokenscale.core.placement import Domain, NodeResources, PendingPod, PoolKey, PoolRequest, SubgroupPriority
from tokenscale.core.types import Decision, PodView, Role
from tokenscale.kube import deployments
from tokenscale.kube import errors as kube_errors
from tokenscale.kube import pods as kube_pods
from tokenscale.kube import topology as kube_topology
from tokenscale.kube.scale import Scale, ScaleRef

__all__ = ["PlacementCluster", "PoolCluster", "PoolEvent", "PoolReport", "PooledTick"]

logger = logging.getLogger(__name__)

_CLUSTER_DOMAIN = "cluster"
"""The one domain of a service with variants but no placement: every node with GPUs."""
_ROLES = (Role.PREFILL, Role.DECODE)

Write = Callable[[str, str, Awaitable[object]], Awaitable[bool]]
"""Awaits one write and records its failure (the tick's ``_write``): operation, target, the write."""


class PoolCluster(Protocol):
    """The part of the tick's cluster a pool needs: /scale and pods."""

    async def read_scale(self, *, namespace: str, ref: ScaleRef) -> Scale: ...

    async def write_scale(self, *, namespace: str, ref: ScaleRef, replicas: int) -> Scale: ...

    async def list_pods(self, *, namespace: str, selector: str) -> Sequence[kube_pods.PodInfo]: ...

    async def patch_pod(
        self,
        *,
        namespace: str,
        name: str,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> None: ...


class PlacementCluster(Protocol):
    """What pools read and write besides /scale and pods (implemented by `tokenscale.kube.cluster.KubeCluster`)."""

    async def read_deployment(self, *, namespace: str, name: str) -> Mapping[str, Any]: ...

    async def list_group_deployments(
        self, *, namespace: str, service: str
    ) -> Sequence[deployments.GroupDeployment]: ...

    async def create_deployment(self, *, namespace: str, body: Mapping[str, Any]) -> bool: ...

    async def delete_deployment(self, *, namespace: str, name: str) -> bool: ...

    async def read_topology(
        self, *, labels: kube_topology.TopologyLabels, tolerations: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[list[NodeResources], list[PendingPod]]: ...


@dataclass(frozen=True, slots=True)
class PoolEvent:
    """An Event to post; with ``dedup`` not again within the repeat interval."""

    type_: Literal["Normal", "Warning"]
    reason: str
    message: str
    dedup: str | None = None


@dataclass(slots=True)
class PoolReport:
    """What the tick's pools add to status, and the Events to post."""

    variants: list[v1alpha1.VariantStatus] = field(default_factory=list)
    groups: list[v1alpha1.GroupStatus] = field(default_factory=list)
    placements: list[v1alpha1.PlacementRecord] = field(default_factory=list)
    events: list[PoolEvent] = field(default_factory=list)


@dataclass(slots=True)
class _PoolState:
    """One pool as read this tick."""

    pool: Pool
    template: Scale
    tokens_per_second: float
    gpus_per_instance: int
    template_body: Mapping[str, Any] | None = None
    groups: dict[str, deployments.GroupDeployment] = field(default_factory=dict)
    """Its group Deployments by domain (placement only)."""
    desired: int | None = None

    @property
    def key(self) -> PoolKey:
        return PoolKey(self.pool.role, self.pool.name)

    def replicas(self, *, placed: bool) -> int:
        """Replicas that count: with placement the groups' (the template's own pods are being removed)."""
        return sum(g.replicas for g in self.groups.values()) if placed else self.template.spec_replicas

    def variant(self) -> variants.Variant:
        return variants.Variant(
            name=self.pool.name,
            tokens_per_second=self.tokens_per_second,
            gpus_per_instance=self.gpus_per_instance,
            cost_per_gpu_hour=self.pool.cost_per_gpu_hour,
            min_replicas=self.pool.min_replicas,
            max_replicas=self.pool.max_replicas,
        )


def _timestamp(unix_seconds: float) -> str:
    """RFC 3339 in UTC to the second, as the decision records."""
    moment = datetime.datetime.fromtimestamp(unix_seconds, tz=datetime.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


class PooledTick:
    """The pools of one service during one tick (module docstring)."""

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        config: ServiceConfig,
        cluster: PoolCluster,
        placement_cluster: PlacementCluster | None,
        owner: deployments.OwnerRef | None,
        now_seconds: float,
        write: Write,
        domain_priorities: dict[str, str] | None = None,
    ) -> None:
        """``domain_priorities``: the service's memory of each domain's priority, updated when nodes are read."""
        assert config.pools is not None
        self._namespace = namespace
        self._name = name
        self._config = config
        self._pools = config.pools
        self._spec = config.pools.placement
        self._cluster = cluster
        self._placement_cluster = placement_cluster
        self._owner = owner
        self._now = now_seconds
        self._write = write
        self.states: dict[PoolKey, _PoolState] = {}
        self.orphans: list[deployments.GroupDeployment] = []
        """Group Deployments of the service whose pool is no longer in the spec."""
        self.pods: dict[Role, list[kube_pods.PodInfo]] = {role: [] for role in _ROLES}
        self.pod_pools: dict[str, PoolKey] = {}
        self.actions: list[report.Action] = []
        self.report = PoolReport()
        self._priorities = domain_priorities if domain_priorities is not None else {}

    @property
    def placed(self) -> bool:
        return self._spec is not None

    def _reference_tokens_per_second(self, role: Role) -> float:
        return variants.instance_tokens_per_second(velocities=self._config.settings.profile.velocities, role=role)

    def _role_states(self, role: Role) -> list[_PoolState]:
        return [state for key, state in self.states.items() if key.role is role]

    def capacity_tokens_per_second(self, role: Role) -> float:
        return sum(s.replicas(placed=self.placed) * s.tokens_per_second for s in self._role_states(role))

    # -- read ---------------------------------------------------------------------------------------------------

    async def read(self) -> dict[Role, Scale]:
        """Read every pool (templates and groups); returns each role's replicas as the policy sees them: whole
        instances of the service's profile. Raises what the cluster raises (`tokenscale.kube.errors`)."""
        all_pools = self._pools.all
        scales = await asyncio.gather(
            *(self._cluster.read_scale(namespace=self._namespace, ref=pool.ref) for pool in all_pools)
        )
        bodies: Sequence[Mapping[str, Any] | None] = [None] * len(all_pools)
        groups: Sequence[deployments.GroupDeployment] = ()
        if self.placed:
            cluster = self._require_placement_cluster()
            bodies, groups = await asyncio.gather(
                asyncio.gather(
                    *(cluster.read_deployment(namespace=self._namespace, name=pool.ref.name) for pool in all_pools)
                ),
                cluster.list_group_deployments(namespace=self._namespace, service=self._name),
            )
        resource = self._spec.gpu_resource if self._spec is not None else api_labels.GPU_RESOURCE
        for pool, scale, body in zip(all_pools, scales, bodies, strict=True):
            from_template = kube_topology.pod_gpus(_pod_spec(body), resource=resource) if body is not None else 0
            state = _PoolState(
                pool=pool,
                template=scale,
                tokens_per_second=variants.instance_tokens_per_second(
                    velocities=pool.profile.velocities, role=pool.role
                ),
                gpus_per_instance=from_template or pool.profile.perf.gpus_per_instance,
                template_body=body,
            )
            self.states[state.key] = state
        for group in groups:
            key = PoolKey(Role(group.role), group.variant) if group.role in {r.value for r in _ROLES} else None
            if key is not None and key in self.states:
                self.states[key].groups[group.domain] = group
            else:
                self.orphans.append(group)
        aggregates = {}
        for role in _ROLES:
            states = self._role_states(role)
            aggregates[role] = Scale(
                spec_replicas=variants.reference_replicas(
                    capacity_tokens_per_second=self.capacity_tokens_per_second(role),
                    reference_tokens_per_second=self._reference_tokens_per_second(role),
                ),
                status_replicas=sum(s.replicas(placed=self.placed) for s in states),
                # Only read for the label keys it constrains (conversions); every pool's selector is in it.
                selector=",".join(s.template.selector for s in states if s.template.selector),
                resource_version="",
            )
        return aggregates

    def _require_placement_cluster(self) -> PlacementCluster:
        if self._placement_cluster is None:
            # Reported as the targets' problem (Ready False), like a refused read.
            raise kube_errors.ApiError(
                "spec.placement needs an operator that reads nodes and copies Deployments", status=0
            )
        return self._placement_cluster

    def missing_selectors(self) -> list[str]:
        """The pools whose template reports no pod selector (their pods cannot be found)."""
        return [str(s.pool.ref) for s in self.states.values() if not s.template.selector]

    async def list_pods(self) -> dict[Role, list[kube_pods.PodInfo]]:
        """Each role's pods: every pool's, by its template's selector (which its groups' pods match too)."""
        states = list(self.states.values())
        listed = await asyncio.gather(
            *(self._cluster.list_pods(namespace=self._namespace, selector=s.template.selector) for s in states)
        )
        for state, found in zip(states, listed, strict=True):
            for pod in found:
                if pod.name in self.pod_pools:
                    continue
                self.pod_pools[pod.name] = state.key
                self.pods[state.pool.role].append(pod)
        return self.pods

    # -- act ----------------------------------------------------------------------------------------------------

    async def actuate(
        self, *, decision: Decision, views: Mapping[Role, Sequence[PodView]], keep: frozenset[str]
    ) -> None:
        """Split, place and write the decided counts; then the ratio guard. ``keep``: pods no scale-in may pick."""
        decided = {Role.PREFILL: decision.prefill_replicas, Role.DECODE: decision.decode_replicas}
        splits = {role: self._split(role=role, decided=decided[role], room=None) for role in _ROLES}
        domains: tuple[Domain, ...] | None = ()
        changing = any(
            split.replicas[s.pool.name] != s.replicas(placed=self.placed)
            for role, split in splits.items()
            for s in self._role_states(role)
        )
        if changing:
            domains = await self._read_domains()
            splits = {role: self._split(role=role, decided=decided[role], room=self._room(domains)) for role in _ROLES}
        for role, split in splits.items():
            for state in self._role_states(role):
                state.desired = split.replicas[state.pool.name]
            for reason in split.reasons:
                warning = reason.code == variants.CAPACITY_SHORT
                self.report.events.append(
                    PoolEvent(
                        "Warning" if warning else "Normal",
                        reason.code,
                        f"{role.value}: {reason.message}",
                        dedup=role.value if warning else None,
                    )
                )
        if self.placed:
            await self._place(domains=domains or (), views=views, keep=keep)
        else:
            await self._scale_pools(views=views, keep=keep)
        if self.placed:
            await self._balance(decision=decision)

    def _split(self, *, role: Role, decided: int, room: Mapping[str, int] | None) -> variants.VariantSplit:
        states = self._role_states(role)
        capacity = self.capacity_tokens_per_second(role)
        demand = variants.demand_tokens_per_second(
            decided_replicas=decided,
            capacity_tokens_per_second=capacity,
            reference_tokens_per_second=self._reference_tokens_per_second(role),
        )
        return variants.split_capacity(
            demand_tokens_per_second=demand,
            variants=[s.variant() for s in states],
            current={s.pool.name: s.replicas(placed=self.placed) for s in states},
            room=None if room is None else {s.pool.name: room.get(str(s.key), 0) for s in states},
        )

    def _labels(self) -> kube_topology.TopologyLabels:
        spec = self._spec
        if spec is None:
            # No domains: every node is in one; a label no node has keeps pending pods out of it.
            return kube_topology.TopologyLabels(
                domain_label="",
                gpu_product_label=api_labels.GPU_PRODUCT_LABEL,
                priority_label=api_labels.RDMA_SUBGROUP_PRIORITY_LABEL,
                gpu_resource=api_labels.GPU_RESOURCE,
            )
        return kube_topology.TopologyLabels(
            domain_label=spec.domain_label,
            gpu_product_label=spec.gpu_product_label,
            priority_label=spec.priority_label,
            gpu_resource=spec.gpu_resource,
        )

    async def _read_domains(self) -> tuple[Domain, ...] | None:
        """The domains with their free GPUs; None when nodes cannot be read (no cluster for it, or the API
        refuses: the operator's RBAC lacks list on nodes and pods)."""
        if self._placement_cluster is None:
            return None
        tolerations = [
            toleration
            for state in self.states.values()
            for toleration in _pod_spec(state.template_body).get("tolerations") or ()
        ]
        try:
            nodes, pending = await self._placement_cluster.read_topology(labels=self._labels(), tolerations=tolerations)
        except kube_errors.ApiError as exc:
            self.report.events.append(
                PoolEvent(
                    "Warning",
                    "TopologyUnreadable",
                    f"free GPUs unknown, so pools grow without that limit and nothing is placed: {exc}; grant list on "
                    "nodes and pods (chart value rbac.placement)",
                    dedup="topology",
                )
            )
            return None
        if not self.placed:
            nodes = [dataclasses.replace(node, domain=_CLUSTER_DOMAIN) for node in nodes]
            pending = []
        domains = placement.topology_view(nodes=nodes, pending=pending)
        self._priorities.clear()
        self._priorities.update({d.name: d.priority.name.lower() for d in domains})
        return domains

    def _pair_products(self) -> dict[Role, tuple[str | None, ...]]:
        return {role: tuple(s.pool.gpu_product for s in self._role_states(role)) for role in _ROLES}

    def _room(self, domains: Sequence[Domain] | None) -> dict[str, int] | None:
        """Instances each pool may add: its free slots in the domains the affinity rule allows (None: nodes not
        readable, no limit)."""
        if domains is None:
            return None
        max_priority = self._max_priority()
        pair = self._pair_products()
        room = {}
        for key, state in self.states.items():
            others = pair[Role.DECODE if key.role is Role.PREFILL else Role.PREFILL]
            room[str(key)] = sum(
                d.slots(gpu_product=state.pool.gpu_product, gpus_per_instance=state.gpus_per_instance)
                for d in domains
                if d.priority <= max_priority and (not self.placed or any(d.hosts(p) for p in others))
            )
        return room

    def _max_priority(self) -> SubgroupPriority:
        if self._spec is None:
            return SubgroupPriority.HIGH
        parsed = SubgroupPriority.parse(self._spec.max_subgroup_priority.value)
        assert parsed is not None
        return parsed

    async def _mark_victims(self, *, pods: Sequence[kube_pods.PodInfo], victims: frozenset[str]) -> None:
        """The lowest deletion cost on ``victims`` of ``pods`` (one workload's), taken back from earlier victims
        that are no longer ones (withdrawn pods keep theirs)."""
        victim_cost = str(VICTIM_DELETION_COST)
        for pod in pods:
            marked = pod.annotations.get(kube_pods.DELETION_COST_ANNOTATION) == victim_cost
            withdrawn = kube_pods.WITHDRAWN_AT_ANNOTATION in pod.annotations
            if (pod.name in victims) == marked or withdrawn:
                continue
            value = victim_cost if pod.name in victims else None
            patch = self._cluster.patch_pod(
                namespace=self._namespace, name=pod.name, annotations={kube_pods.DELETION_COST_ANNOTATION: value}
            )
            await self._write("deletion_cost", pod.name, patch)

    async def _shrink(
        self,
        *,
        role: Role,
        pods: Sequence[kube_pods.PodInfo],
        views: Mapping[Role, Sequence[PodView]],
        count: int,
        keep: frozenset[str],
    ) -> None:
        names = {p.name for p in pods}
        leaving = frozenset(p.name for p in pods if p.deleting)
        withdrawn = frozenset(p.name for p in pods if kube_pods.WITHDRAWN_AT_ANNOTATION in p.annotations)
        victims = scale_in_victims(
            pods=[v for v in views[role] if v.name in names], count=count, keep=keep | leaving, withdrawn=withdrawn
        )
        await self._mark_victims(pods=pods, victims=frozenset(victims))

    def _pods_of(self, key: PoolKey, *, domain: str | None = None) -> list[kube_pods.PodInfo]:
        return [
            p
            for p in self.pods[key.role]
            if self.pod_pools.get(p.name) == key and (domain is None or p.labels.get(api_labels.DOMAIN_LABEL) == domain)
        ]

    async def _scale(self, *, state: _PoolState, ref: ScaleRef, current: int, wanted: int, target: str) -> bool:
        done = await self._write(
            "scale", str(ref), self._cluster.write_scale(namespace=self._namespace, ref=ref, replicas=wanted)
        )
        if done:
            self.actions.append(
                report.Action(
                    kind="scale", role=state.pool.role, from_replicas=current, to_replicas=wanted, target=target
                )
            )
        return done

    async def _scale_pools(self, *, views: Mapping[Role, Sequence[PodView]], keep: frozenset[str]) -> None:
        """Without placement: each pool's own workload, scale-ins first."""
        changing = [s for s in self.states.values() if s.desired is not None and s.desired != s.template.spec_replicas]
        changing.sort(key=lambda s: (s.desired or 0) > s.template.spec_replicas)
        for state in changing:
            assert state.desired is not None
            current = state.template.spec_replicas
            if state.desired < current:
                await self._shrink(
                    role=state.pool.role,
                    pods=self._pods_of(state.key),
                    views=views,
                    count=current - state.desired,
                    keep=keep,
                )
            await self._scale(
                state=state, ref=state.pool.ref, current=current, wanted=state.desired, target=str(state.key)
            )

    async def _place(
        self, *, domains: Sequence[Domain], views: Mapping[Role, Sequence[PodView]], keep: frozenset[str]
    ) -> None:
        """With placement: plan where the split's changes go, then delete, shrink, create and grow groups."""
        cluster = self._require_placement_cluster()
        groups_now: dict[str, dict[PoolKey, int]] = {}
        for key, state in self.states.items():
            for domain, existing in state.groups.items():
                groups_now.setdefault(domain, {})[key] = existing.replicas
        requests = [
            PoolRequest(
                pool=key,
                gpu_product=state.pool.gpu_product,
                gpus_per_instance=state.gpus_per_instance,
                delta=(state.desired or 0) - state.replicas(placed=True),
            )
            for key, state in self.states.items()
            if state.desired is not None and state.desired != state.replicas(placed=True)
        ]
        plan = placement.plan_placement(
            domains=domains,
            groups=groups_now,
            requests=requests,
            max_priority=self._max_priority(),
            pair_products=self._pair_products(),
        )
        after = plan.replicas(groups_now)
        self._record(plan)
        for key, state in self.states.items():
            state.desired = sum(after.get(domain, {}).get(key, 0) for domain in after)
        emptied = {domain for domain, pools in after.items() if not any(count > 0 for count in pools.values())}
        for domain in sorted(emptied):
            for state in self.states.values():
                empty = state.groups.get(domain)
                if empty is not None and await self._write(
                    "delete_group",
                    empty.name,
                    cluster.delete_deployment(namespace=self._namespace, name=empty.name),
                ):
                    self.report.events.append(
                        PoolEvent("Normal", "GroupDeleted", f"deployment group {empty.name} in {domain} is empty")
                    )
        for orphan in self.orphans:
            if await self._write(
                "delete_group", orphan.name, cluster.delete_deployment(namespace=self._namespace, name=orphan.name)
            ):
                self.report.events.append(
                    PoolEvent(
                        "Normal",
                        "GroupDeleted",
                        f"deployment group {orphan.name}: pool {orphan.role}/{orphan.variant} is no longer in the spec",
                    )
                )
        changes = sorted(
            (p for p in plan.placements if p.domain not in emptied), key=lambda p: (p.delta > 0, p.domain, p.pool)
        )
        for change in changes:
            state = self.states[change.pool]
            domain = change.domain
            wanted = after[domain][change.pool]
            group = state.groups.get(domain)
            if change.delta < 0 and group is not None:
                await self._shrink(
                    role=change.pool.role,
                    pods=self._pods_of(change.pool, domain=domain),
                    views=views,
                    count=-change.delta,
                    keep=keep,
                )
            name = group.name if group is not None else await self._create_group(state=state, domain=domain)
            if name is None:
                continue
            ref = ScaleRef(api_version="apps/v1", kind="Deployment", name=name)
            await self._scale(
                state=state,
                ref=ref,
                current=group.replicas if group is not None else 0,
                wanted=wanted,
                target=f"{change.pool} in {domain}",
            )
        for state in self.states.values():
            if state.template.spec_replicas > 0:
                # The template's own pods are pinned to no domain: its replicas live in its groups instead.
                await self._scale(
                    state=state,
                    ref=state.pool.ref,
                    current=state.template.spec_replicas,
                    wanted=0,
                    target=f"{state.key} template",
                )

    async def _create_group(self, *, state: _PoolState, domain: str) -> str | None:
        spec = self._spec
        assert spec is not None
        if self._owner is None or state.template_body is None:
            return None
        name = deployments.group_name(template=state.pool.ref.name, domain=domain)
        body = deployments.group_deployment(
            template=state.template_body,
            name=name,
            owner=self._owner,
            role=state.pool.role.value,
            variant=state.pool.name,
            domain_label=spec.domain_label,
            domain=domain,
            gpu_product_label=spec.gpu_product_label,
            gpu_product=state.pool.gpu_product,
        )
        cluster = self._require_placement_cluster()
        created: list[bool] = []

        async def create() -> None:
            created.append(await cluster.create_deployment(namespace=self._namespace, body=body))

        if not await self._write("create_group", name, create()):
            return None
        if not created[0]:
            return name  # an earlier tick made it (not listed yet): scale it
        self.report.events.append(
            PoolEvent(
                "Normal",
                "GroupCreated",
                f"deployment group {name}: {state.key} pinned to {spec.domain_label}={domain}, copied from "
                f"{state.pool.ref}",
            )
        )
        return name

    def _record(self, plan: placement.PlacementPlan) -> None:
        when = _timestamp(self._now)
        for change in plan.placements:
            self.report.placements.append(
                v1alpha1.PlacementRecord(
                    time=when,
                    role=change.pool.role.value,
                    variant=change.pool.variant,
                    domain=change.domain,
                    delta=change.delta,
                    reason=change.reason,
                    message=change.message,
                )
            )
            self.report.events.append(PoolEvent("Normal", change.reason, change.message))
        for shortfall in plan.shortfalls:
            pool, reason = shortfall.pool, shortfall.reason
            self.report.placements.append(
                v1alpha1.PlacementRecord(
                    time=when,
                    role=pool.role.value,
                    variant=pool.variant,
                    delta=0,
                    reason=reason.code,
                    message=reason.message,
                )
            )
            self.report.events.append(PoolEvent("Warning", reason.code, reason.message, dedup=str(pool)))

    async def _balance(self, *, decision: Decision) -> None:
        """The ratio guard over each group's Ready pods; without it, every pod it withdrew rejoins."""
        spec = self._spec
        assert spec is not None
        prefill = decision.prefill_replicas * self._reference_tokens_per_second(Role.PREFILL)
        decode = decision.decode_replicas * self._reference_tokens_per_second(Role.DECODE)
        by_domain: dict[str, list[ratio_guard.GroupPod]] = {}
        for role in _ROLES:
            for pod in self.pods[role]:
                domain = pod.labels.get(api_labels.DOMAIN_LABEL)
                key = self.pod_pools.get(pod.name)
                if domain is None or key is None:
                    continue
                converted = role is Role.DECODE and pod.labels.get(self._config.role_label.key) == (
                    self._config.role_label.converted
                )
                by_domain.setdefault(domain, []).append(
                    ratio_guard.GroupPod(
                        name=pod.name,
                        role=role,
                        ready=pod.ready and not pod.deleting,
                        ready_since_seconds=pod.ready_since_seconds,
                        tokens_per_second=self.states[key].tokens_per_second,
                        withdrawn=pod.labels.get(api_labels.RATIO_WITHDRAWN_LABEL) == "true",
                        protected=converted or kube_pods.WITHDRAWN_AT_ANNOTATION in pod.annotations,
                    )
                )
        for domain, group_pods in sorted(by_domain.items()):
            if spec.ratio_guard and prefill > 0 and decode > 0:
                changes = ratio_guard.balance_group(
                    group=domain, pods=group_pods, target_ratio=prefill / decode, tolerance=spec.ratio_tolerance
                )
            else:
                rejoin = tuple(sorted(p.name for p in group_pods if p.withdrawn))
                changes = ratio_guard.RatioChanges(rejoin=rejoin)
            for names, value in ((changes.withdraw, "true"), (changes.rejoin, None)):
                for pod_name in names:
                    patch = self._cluster.patch_pod(
                        namespace=self._namespace, name=pod_name, labels={api_labels.RATIO_WITHDRAWN_LABEL: value}
                    )
                    await self._write("ratio_withdraw" if value else "ratio_rejoin", pod_name, patch)
            for reason in changes.reasons:
                self.report.events.append(PoolEvent("Normal", reason.code, reason.message))

    # -- report -------------------------------------------------------------------------------------------------

    def build_report(self, *, views: Mapping[Role, Sequence[PodView]]) -> PoolReport:
        """Status of the pools and groups after this tick (the events and placements it made are in it)."""
        for key, state in self.states.items():
            desired = state.desired if state.desired is not None else state.replicas(placed=self.placed)
            self.report.variants.append(
                v1alpha1.VariantStatus(
                    role=key.role.value,
                    name=key.variant,
                    replicas=state.replicas(placed=self.placed),
                    desired_replicas=desired,
                    capacity_tokens_per_second=round(state.tokens_per_second, 3),
                    cost_per_hour=round(desired * state.pool.cost_per_gpu_hour * state.gpus_per_instance, 6),
                )
            )
        if not self.placed:
            return self.report
        ready = {v.name for role in _ROLES for v in views[role] if v.ready}
        domains = sorted({domain for state in self.states.values() for domain in state.groups})
        for domain in domains[: v1alpha1.MAX_GROUPS]:
            in_domain = [
                p for role in _ROLES for p in self.pods[role] if p.labels.get(api_labels.DOMAIN_LABEL) == domain
            ]
            self.report.groups.append(
                v1alpha1.GroupStatus(
                    domain=domain,
                    priority=self._priorities.get(domain, ""),
                    prefill_replicas=sum(
                        s.groups[domain].replicas for s in self._role_states(Role.PREFILL) if domain in s.groups
                    ),
                    decode_replicas=sum(
                        s.groups[domain].replicas for s in self._role_states(Role.DECODE) if domain in s.groups
                    ),
                    ready_prefill=sum(1 for p in self.pods[Role.PREFILL] if p in in_domain and p.name in ready),
                    ready_decode=sum(1 for p in self.pods[Role.DECODE] if p in in_domain and p.name in ready),
                    withdrawn=sum(1 for p in in_domain if p.labels.get(api_labels.RATIO_WITHDRAWN_LABEL) == "true"),
                )
            )
        return self.report


def _pod_spec(body: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if body is None:
        return {}
    return ((body.get("spec") or {}).get("template") or {}).get("spec") or {}
