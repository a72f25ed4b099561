"""Topology-aware placement of a service's scale changes: HeteroScale's Algorithm 4, "Network Affinity-aware
Scheduling and Allocation" (reference/algorithms.md §2.4), pure: a topology view in, a placement plan out.

**Model.** A *domain* is one network domain (the value of a node label such as the S2 switch); a *deployment
group* is the service's prefill and decode pods in one domain, so KV moves inside the domain. A domain's *RDMA
subgroup priority* says how scarce it is: **low** (one GPU type under the switch, the common case), **medium**
(mixed types under the S2, each S1 homogeneous), **high** (mixed types directly under one S1). The nodes' priority
label gives it; without one, a domain of one GPU type is low and a mixed one medium [reconstructed].

**Affinity rule.** A service may use domains up to ``max_priority``, and a group must hold both roles: a domain
is *eligible* for a pool (role, variant) when its priority is allowed, it has nodes of the pool's GPU type and
nodes of a GPU type of the other role's variants.

**Scale-out** (Algorithm 4 step 3), one pod at a time, the pools taking turns (the one with the largest share of
its delta still to place goes next, so both roles of a new group arrive together); each pod goes to the eligible
domain with a free slot (a node with the pool's GPU type and ``gpus_per_instance`` free GPUs), ranked by

1. lowest priority first: the scarce mixed domains stay free for services that need them, even if that means a
   new group [paper, Algorithm 4];
2. then a domain where the other role already is (existing or placed this cycle), then one where the service
   has a group at all, then the most free slots, then the name [reconstructed].

Each pod is allocated at once on the fullest node that fits (virtual allocation: later pods and pools of the cycle
see it). A domain without the other role may take a pod only while the other role still has pods to place that
could go there; a new group left with one role only is rolled back and planned again without that domain
[reconstructed: a half group would ship KV across domains].

**Scale-in** (step 4): pods leave one at a time, the pools taking turns, from the groups in the scarcest domains
first: highest priority, then fewest free GPUs, then fewest pods of the service, then the name. A role's last pod
in a group goes only when the other role's pods there go too (or there are none), so no group is left half.
Capacity freed by scale-in is not reused within the cycle (step 5); the next one rebuilds the view.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenscale.core.types import Reason, Role

__all__ = [
    "NO_DOMAIN_FITS",
    "PLACED",
    "PLACED_NEW_GROUP",
    "REMOVED_SCARCEST_FIRST",
    "SCALE_IN_KEEPS_PAIR",
    "Domain",
    "NodeResources",
    "PendingPod",
    "Placement",
    "PlacementPlan",
    "PoolKey",
    "PoolRequest",
    "Shortfall",
    "SubgroupPriority",
    "plan_placement",
    "topology_view",
]

PLACED = "Placed"
"""Pods added to an existing group: the lowest-priority eligible domain with room."""
PLACED_NEW_GROUP = "PlacedNewGroup"
"""Pods placed in a domain where the service had no group: a new deployment group."""
NO_DOMAIN_FITS = "NoDomainFits"
"""Pods that no eligible domain has room for (the affinity rule allows no other): left unplaced."""
REMOVED_SCARCEST_FIRST = "RemovedScarcestFirst"
"""Pods removed from the group in the scarcest domain (highest priority, fewest free GPUs) first."""
SCALE_IN_KEEPS_PAIR = "ScaleInKeepsPair"
"""A removal skipped: it would leave a group with one role only."""


class SubgroupPriority(enum.IntEnum):
    """RDMA-subgroup priority of a domain (HeteroScale): low is common, high is scarce."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2

    @classmethod
    def parse(cls, text: str | None) -> SubgroupPriority | None:
        """The priority named ``text`` (``low``, ``medium``, ``high``, any case); None for anything else."""
        if text is None:
            return None
        return {p.name.lower(): p for p in cls}.get(text.strip().lower())


@dataclass(frozen=True, slots=True)
class NodeResources:
    """One node as placement sees it: its domain, GPU type and GPUs (allocatable, and requested by its pods)."""

    name: str
    domain: str | None
    """The node's domain label value; None: in no domain, never used."""
    gpu_product: str | None
    allocatable_gpus: int
    requested_gpus: int = 0
    priority: SubgroupPriority | None = None
    """The node's subgroup-priority label; None: unlabelled (the domain's priority is derived)."""
    schedulable: bool = True


@dataclass(frozen=True, slots=True)
class PendingPod:
    """A pod not yet on a node whose node selector already commits it to ``domain``: its GPUs are taken there."""

    domain: str
    gpu_product: str | None
    gpus: int


@dataclass(frozen=True, slots=True)
class Domain:
    """A network domain: its priority and, per node, the GPU type and free GPUs (pending pods subtracted)."""

    name: str
    priority: SubgroupPriority
    nodes: tuple[tuple[str | None, int], ...]
    """(GPU product, free GPUs) of each schedulable node."""

    @property
    def gpu_products(self) -> frozenset[str | None]:
        return frozenset(product for product, _ in self.nodes)

    @property
    def free_gpus(self) -> int:
        return sum(free for _, free in self.nodes)

    def slots(self, *, gpu_product: str | None, gpus_per_instance: int) -> int:
        """Instances of ``gpus_per_instance`` GPUs of ``gpu_product`` (None: any) that fit on the free GPUs."""
        return sum(
            free // gpus_per_instance for product, free in self.nodes if gpu_product is None or product == gpu_product
        )

    def hosts(self, gpu_product: str | None) -> bool:
        return gpu_product is None or gpu_product in self.gpu_products


@dataclass(slots=True)
class _Slot:
    """A node's GPU type and free GPUs, changed as a cycle allocates."""

    gpu_product: str | None
    free_gpus: int

    def matches(self, gpu_product: str | None) -> bool:
        return gpu_product is None or self.gpu_product == gpu_product


def _take(slots: Sequence[_Slot], *, gpu_product: str | None, gpus: int) -> None:
    """Take ``gpus`` from the fullest node of ``gpu_product`` that fits them (as a scheduler packing GPUs would,
    keeping whole nodes free); where none fits, from the one with the most free."""
    cells = [s for s in slots if s.matches(gpu_product)]
    if not cells:
        return
    fitting = [s for s in cells if s.free_gpus >= gpus]
    cell = min(fitting, key=lambda s: s.free_gpus) if fitting else max(cells, key=lambda s: s.free_gpus)
    cell.free_gpus = max(cell.free_gpus - gpus, 0)


def topology_view(*, nodes: Sequence[NodeResources], pending: Sequence[PendingPod] = ()) -> tuple[Domain, ...]:
    """The domains of ``nodes`` (sorted by name) with each node's free GPUs.

    A node's free GPUs are ``allocatable − requested`` (never negative); an unschedulable node has none. A pending
    pod takes its GPUs in its domain from the fullest node of its GPU type that fits it (as a scheduler packing
    GPUs would; where none fits, from the one with the most free). A domain's priority is the highest priority
    label among its nodes; with no label, low for one GPU type and medium for several.
    """
    by_domain: dict[str, list[NodeResources]] = defaultdict(list)
    for node in nodes:
        if node.domain is not None:
            by_domain[node.domain].append(node)
    free = {
        name: [
            _Slot(n.gpu_product, max(n.allocatable_gpus - n.requested_gpus, 0) if n.schedulable else 0)
            for n in sorted(members, key=lambda n: n.name)
        ]
        for name, members in by_domain.items()
    }
    for pod in pending:
        _take(free.get(pod.domain, []), gpu_product=pod.gpu_product, gpus=pod.gpus)
    domains = []
    for name in sorted(by_domain):
        members = by_domain[name]
        labelled = [n.priority for n in members if n.priority is not None]
        if labelled:
            priority = max(labelled)
        else:
            products = {n.gpu_product for n in members}
            priority = SubgroupPriority.LOW if len(products) <= 1 else SubgroupPriority.MEDIUM
        nodes_free = tuple((slot.gpu_product, slot.free_gpus) for slot in free[name])
        domains.append(Domain(name=name, priority=priority, nodes=nodes_free))
    return tuple(domains)


@dataclass(frozen=True, slots=True, order=True)
class PoolKey:
    """One pool of the service: a role's variant."""

    role: Role
    variant: str

    def __str__(self) -> str:
        return f"{self.role.value}/{self.variant}"


@dataclass(frozen=True, slots=True)
class PoolRequest:
    """A pool's change this cycle: ``delta`` pods (positive: scale-out, negative: scale-in), each of
    ``gpus_per_instance`` GPUs of ``gpu_product`` (None: any GPU type)."""

    pool: PoolKey
    gpu_product: str | None
    gpus_per_instance: int
    delta: int


@dataclass(frozen=True, slots=True)
class Placement:
    """A pool's change in one domain, with its reason code and why in words."""

    pool: PoolKey
    domain: str
    delta: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Pods of a pool's change that the plan could not make, and why (`NO_DOMAIN_FITS`, `SCALE_IN_KEEPS_PAIR`)."""

    pool: PoolKey
    pods: int
    reason: Reason


@dataclass(frozen=True, slots=True)
class PlacementPlan:
    """What to do per (pool, domain), what could not be placed or removed, and why."""

    placements: tuple[Placement, ...] = ()
    shortfalls: tuple[Shortfall, ...] = ()

    @property
    def unplaced(self) -> dict[PoolKey, int]:
        """Pods of a scale-out no eligible domain had room for."""
        return {s.pool: s.pods for s in self.shortfalls if s.reason.code == NO_DOMAIN_FITS}

    @property
    def kept(self) -> dict[PoolKey, int]:
        """Pods of a scale-in that could not go without leaving a group with one role."""
        return {s.pool: s.pods for s in self.shortfalls if s.reason.code == SCALE_IN_KEEPS_PAIR}

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(s.reason for s in self.shortfalls)

    def replicas(self, groups: Mapping[str, Mapping[PoolKey, int]]) -> dict[str, dict[PoolKey, int]]:
        """``groups`` (replicas per pool per domain) after the plan."""
        after = {domain: dict(pools) for domain, pools in groups.items()}
        for placement in self.placements:
            pools = after.setdefault(placement.domain, {})
            pools[placement.pool] = pools.get(placement.pool, 0) + placement.delta
        return after


def _other(role: Role) -> Role:
    return Role.DECODE if role is Role.PREFILL else Role.PREFILL


class _Cycle:
    """The mutable view of one planning cycle: free GPUs per node and pods per (domain, pool)."""

    def __init__(self, *, domains: Sequence[Domain], groups: Mapping[str, Mapping[PoolKey, int]]) -> None:
        self.domains = {d.name: d for d in domains}
        self.free = {d.name: [_Slot(p, f) for p, f in d.nodes] for d in domains}
        self.pods: dict[str, dict[PoolKey, int]] = {name: dict(pools) for name, pools in groups.items()}
        self.existing = {name for name, pools in groups.items() if any(count > 0 for count in pools.values())}

    def role_pods(self, domain: str, role: Role) -> int:
        return sum(count for pool, count in self.pods.get(domain, {}).items() if pool.role is role)

    def slots(self, domain: str, request: PoolRequest) -> int:
        return sum(
            s.free_gpus // request.gpus_per_instance for s in self.free[domain] if s.matches(request.gpu_product)
        )

    def allocate(self, domain: str, request: PoolRequest) -> None:
        _take(self.free[domain], gpu_product=request.gpu_product, gpus=request.gpus_per_instance)
        pools = self.pods.setdefault(domain, {})
        pools[request.pool] = pools.get(request.pool, 0) + 1


def _next_request(remaining: Mapping[PoolKey, int], initial: Mapping[PoolKey, int]) -> PoolKey | None:
    """The pool with the largest share of its change still to do (then by key), or None when all are done."""
    open_ = [key for key, left in remaining.items() if left > 0]
    if not open_:
        return None
    return min(open_, key=lambda key: (-remaining[key] / initial[key], key))


def plan_placement(
    *,
    domains: Sequence[Domain],
    groups: Mapping[str, Mapping[PoolKey, int]],
    requests: Sequence[PoolRequest],
    max_priority: SubgroupPriority,
    pair_products: Mapping[Role, Sequence[str | None]],
) -> PlacementPlan:
    """The placement of ``requests`` (module docstring for the rules).

    ``groups``: the service's pods per pool in each domain now (Deployment replicas, pending pods included).
    ``pair_products``: the GPU types of each role's variants (None: any), which a domain must host for a group.
    Scale-ins are planned before scale-outs and free nothing for them. Deterministic.
    """
    plan_in = _scale_in(domains=domains, groups=groups, requests=[r for r in requests if r.delta < 0])
    plan_out = _scale_out(
        domains=domains,
        groups=groups,
        requests=[r for r in requests if r.delta > 0],
        max_priority=max_priority,
        pair_products=pair_products,
    )
    return PlacementPlan(
        placements=plan_in.placements + plan_out.placements, shortfalls=plan_in.shortfalls + plan_out.shortfalls
    )


def _eligible(
    domain: Domain,
    request: PoolRequest,
    *,
    max_priority: SubgroupPriority,
    pair_products: Mapping[Role, Sequence[str | None]],
) -> bool:
    others = pair_products.get(_other(request.pool.role), ())
    return (
        domain.priority <= max_priority
        and domain.hosts(request.gpu_product)
        and (not others or any(domain.hosts(product) for product in others))
    )


def _scale_out(
    *,
    domains: Sequence[Domain],
    groups: Mapping[str, Mapping[PoolKey, int]],
    requests: Sequence[PoolRequest],
    max_priority: SubgroupPriority,
    pair_products: Mapping[Role, Sequence[str | None]],
) -> PlacementPlan:
    if not requests:
        return PlacementPlan()
    excluded: set[str] = set()
    while True:
        cycle, unplaced = _place_pods(
            domains=domains,
            groups=groups,
            requests=requests,
            max_priority=max_priority,
            pair_products=pair_products,
            excluded=excluded,
        )
        half = {
            name
            for name in cycle.pods
            if name not in cycle.existing
            and (cycle.role_pods(name, Role.PREFILL) > 0) != (cycle.role_pods(name, Role.DECODE) > 0)
        }
        if not half or half <= excluded:
            break
        excluded |= half
    placements = []
    by_name = {d.name: d for d in domains}
    for name in sorted(cycle.pods):
        for pool, count in sorted(cycle.pods[name].items()):
            delta = count - groups.get(name, {}).get(pool, 0)
            if delta <= 0:
                continue
            domain = by_name[name]
            new = name not in cycle.existing
            placements.append(
                Placement(
                    pool=pool,
                    domain=name,
                    delta=delta,
                    reason=PLACED_NEW_GROUP if new else PLACED,
                    message=f"{pool} +{delta} in {name} ({domain.priority.name.lower()} priority"
                    + (", new group" if new else "")
                    + f"): the lowest-priority domain up to {max_priority.name.lower()} with room",
                )
            )
    shortfalls = tuple(
        Shortfall(
            pool=pool,
            pods=count,
            reason=Reason(
                NO_DOMAIN_FITS,
                f"{pool} {count} pods unplaced: no domain up to {max_priority.name.lower()} priority with both "
                "roles' GPU types has a free slot",
                pool.role,
            ),
        )
        for pool, count in sorted(unplaced.items())
    )
    return PlacementPlan(placements=tuple(placements), shortfalls=shortfalls)


def _place_pods(
    *,
    domains: Sequence[Domain],
    groups: Mapping[str, Mapping[PoolKey, int]],
    requests: Sequence[PoolRequest],
    max_priority: SubgroupPriority,
    pair_products: Mapping[Role, Sequence[str | None]],
    excluded: set[str],
) -> tuple[_Cycle, dict[PoolKey, int]]:
    cycle = _Cycle(domains=domains, groups=groups)
    by_pool = {r.pool: r for r in requests}
    initial = {r.pool: r.delta for r in requests}
    remaining = dict(initial)
    unplaced: dict[PoolKey, int] = {}
    while (key := _next_request(remaining, initial)) is not None:
        request = by_pool[key]
        role = request.pool.role
        other_open = [
            by_pool[k] for k, left in remaining.items() if left > 0 and k.role is not role
        ]  # the other role's pools still placing pods this cycle
        best: tuple[tuple[int, bool, bool, int, str], str] | None = None
        for domain in domains:
            if not _eligible(domain, request, max_priority=max_priority, pair_products=pair_products):
                continue
            slots = cycle.slots(domain.name, request)
            if slots < 1:
                continue
            paired = cycle.role_pods(domain.name, _other(role)) > 0
            if not paired and (domain.name in excluded or not any(domain.hosts(o.gpu_product) for o in other_open)):
                continue
            has_group = domain.name in cycle.pods and any(c > 0 for c in cycle.pods[domain.name].values())
            rank = (int(domain.priority), not paired, not has_group, -slots, domain.name)
            if best is None or rank < best[0]:
                best = (rank, domain.name)
        if best is None:
            unplaced[key] = remaining[key]
            remaining[key] = 0
            continue
        cycle.allocate(best[1], request)
        remaining[key] -= 1
    return cycle, unplaced


def _scale_in(
    *, domains: Sequence[Domain], groups: Mapping[str, Mapping[PoolKey, int]], requests: Sequence[PoolRequest]
) -> PlacementPlan:
    if not requests:
        return PlacementPlan()
    by_name = {d.name: d for d in domains}
    cycle = _Cycle(domains=domains, groups=groups)

    def scarcity(name: str) -> tuple[int, int, int, str]:
        domain = by_name.get(name)
        priority = int(domain.priority) if domain else int(SubgroupPriority.LOW)
        free = domain.free_gpus if domain else 0
        return (-priority, free, sum(groups.get(name, {}).values()), name)

    order = sorted((name for name in groups if sum(groups[name].values()) > 0), key=scarcity)
    initial = {r.pool: -r.delta for r in requests}
    remaining = dict(initial)
    kept: dict[PoolKey, int] = {}
    removed: dict[tuple[str, PoolKey], int] = defaultdict(int)
    while (key := _next_request(remaining, initial)) is not None:
        role = key.role
        other_left = sum(left for k, left in remaining.items() if k.role is not role)
        chosen = None
        for name in order:
            if cycle.pods.get(name, {}).get(key, 0) < 1:
                continue
            last_of_role = cycle.role_pods(name, role) == 1
            others_here = cycle.role_pods(name, _other(role))
            if last_of_role and others_here > 0 and other_left < others_here:
                continue  # it would leave the other role alone in the group
            chosen = name
            break
        if chosen is None:
            kept[key] = remaining[key]
            remaining[key] = 0
            continue
        cycle.pods[chosen][key] -= 1
        removed[(chosen, key)] += 1
        remaining[key] -= 1
    placements = tuple(
        Placement(
            pool=pool,
            domain=name,
            delta=-count,
            reason=REMOVED_SCARCEST_FIRST,
            message=f"{pool} -{count} in {name} ({by_name[name].priority.name.lower() if name in by_name else 'low'} "
            "priority): the scarcest domain's group shrinks first",
        )
        for (name, pool), count in sorted(removed.items(), key=lambda item: (order.index(item[0][0]), item[0][1]))
    )
    shortfalls = tuple(
        Shortfall(
            pool=pool,
            pods=count,
            reason=Reason(
                SCALE_IN_KEEPS_PAIR,
                f"{pool} {count} pods kept: removing them would leave a group with one role only",
                pool.role,
            ),
        )
        for pool, count in sorted(kept.items())
    )
    return PlacementPlan(placements=placements, shortfalls=shortfalls)
