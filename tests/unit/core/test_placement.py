"""Topology-aware placement (HeteroScale's Algorithm 4): a topology view in, a placement plan out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from tokenscale.core import placement
from tokenscale.core.placement import Domain, NodeResources, PendingPod, PoolKey, PoolRequest, SubgroupPriority
from tokenscale.core.types import Role

H100, A100 = "H100", "A100"
LOW, MEDIUM, HIGH = SubgroupPriority.LOW, SubgroupPriority.MEDIUM, SubgroupPriority.HIGH
P_H100 = PoolKey(Role.PREFILL, "h100")
D_H100 = PoolKey(Role.DECODE, "h100")
D_A100 = PoolKey(Role.DECODE, "a100")
HOMOGENEOUS = {Role.PREFILL: (H100,), Role.DECODE: (H100,)}
"""Both roles on H100."""
HETEROGENEOUS = {Role.PREFILL: (H100,), Role.DECODE: (A100,)}
"""Prefill on H100, decode on A100: a group needs a mixed domain."""


def _domain(name: str, priority: SubgroupPriority, *nodes: tuple[str, int]) -> Domain:
    return Domain(name=name, priority=priority, nodes=nodes)


def _request(pool: PoolKey, delta: int, *, product: str = H100, gpus: int = 1) -> PoolRequest:
    return PoolRequest(pool=pool, gpu_product=product, gpus_per_instance=gpus, delta=delta)


def _deltas(plan: placement.PlacementPlan) -> dict[tuple[PoolKey, str], int]:
    return {(p.pool, p.domain): p.delta for p in plan.placements}


def _plan(
    domains: Sequence[Domain],
    requests: Sequence[PoolRequest],
    *,
    groups: Mapping[str, Mapping[PoolKey, int]] | None = None,
    max_priority: SubgroupPriority = HIGH,
    pair: Mapping[Role, Sequence[str | None]] = HOMOGENEOUS,
) -> placement.PlacementPlan:
    return placement.plan_placement(
        domains=domains, groups=groups or {}, requests=requests, max_priority=max_priority, pair_products=pair
    )


# A roomy low domain, a nearly full low domain (one free H100) and a medium (mixed) domain.
ROOMY = _domain("s2-a", LOW, (H100, 8), (H100, 8))
NEARLY_FULL = _domain("s2-b", LOW, (H100, 1), (H100, 0))
MIXED = _domain("s2-m", MEDIUM, (H100, 8), (A100, 8))


def test_first_scale_out_opens_one_group_in_the_roomiest_low_domain() -> None:
    plan = _plan([MIXED, NEARLY_FULL, ROOMY], [_request(P_H100, 2), _request(D_H100, 2)])

    assert _deltas(plan) == {(P_H100, "s2-a"): 2, (D_H100, "s2-a"): 2}
    assert {p.reason for p in plan.placements} == {placement.PLACED_NEW_GROUP}
    assert not plan.unplaced


def test_existing_group_grows_first_then_a_new_low_group_takes_the_rest() -> None:
    groups = {"s2-b": {P_H100: 1, D_H100: 1}}

    # Decode goes first (pool order); its first pod takes s2-b's one free GPU; the rest opens a group in s2-a.
    plan = _plan([MIXED, NEARLY_FULL, ROOMY], [_request(P_H100, 2), _request(D_H100, 2)], groups=groups)

    assert _deltas(plan) == {(D_H100, "s2-b"): 1, (D_H100, "s2-a"): 1, (P_H100, "s2-a"): 2}
    reasons = {(p.pool, p.domain): p.reason for p in plan.placements}
    assert reasons[(D_H100, "s2-b")] == placement.PLACED
    assert reasons[(P_H100, "s2-a")] == placement.PLACED_NEW_GROUP


def test_lowest_priority_wins_over_an_existing_group_in_a_scarce_domain() -> None:
    groups = {"s2-m": {P_H100: 1, D_H100: 1}}

    plan = _plan([MIXED, ROOMY], [_request(P_H100, 1), _request(D_H100, 1)], groups=groups)

    assert _deltas(plan) == {(P_H100, "s2-a"): 1, (D_H100, "s2-a"): 1}


def test_one_role_alone_never_opens_a_group_and_grows_an_existing_pair_instead() -> None:
    groups = {"s2-m": {P_H100: 1, D_H100: 1}}

    # Only prefill scales out: a new group in s2-a would hold prefill without decode.
    plan = _plan([MIXED, ROOMY], [_request(P_H100, 2)], groups=groups)

    assert _deltas(plan) == {(P_H100, "s2-m"): 2}


def test_a_new_group_whose_pair_does_not_fit_is_rolled_back() -> None:
    tiny = _domain("s2-a", LOW, (H100, 1))
    groups = {"s2-m": {P_H100: 1, D_H100: 1}}

    # Decode's pod would open s2-a (low), but prefill then finds no slot there: s2-a would be a half group.
    plan = _plan([MIXED, tiny], [_request(P_H100, 1), _request(D_H100, 1)], groups=groups)

    assert _deltas(plan) == {(P_H100, "s2-m"): 1, (D_H100, "s2-m"): 1}


@pytest.mark.parametrize(
    ("max_priority", "expected"),
    [
        # Prefill on H100 and decode on A100 share no homogeneous domain: only the mixed one holds the pair.
        pytest.param(LOW, {}, id="low-only-forbids-the-mixed-domain"),
        pytest.param(MEDIUM, {(P_H100, "s2-m"): 1, (D_A100, "s2-m"): 2}, id="medium-allows-it"),
    ],
)
def test_a_heterogeneous_pair_needs_a_mixed_domain_the_affinity_rule_allows(
    max_priority: SubgroupPriority, expected: dict[tuple[PoolKey, str], int]
) -> None:
    requests = [_request(P_H100, 1), _request(D_A100, 2, product=A100)]

    plan = _plan([ROOMY, MIXED], requests, max_priority=max_priority, pair=HETEROGENEOUS)

    assert _deltas(plan) == expected
    assert dict(plan.unplaced) == ({} if expected else {P_H100: 1, D_A100: 2})
    assert (placement.NO_DOMAIN_FITS in {r.code for r in plan.reasons}) == (not expected)


def test_virtual_allocation_is_seen_by_the_next_pool_of_the_cycle() -> None:
    one_slot = _domain("s2-a", LOW, (H100, 2))
    other = _domain("s2-c", LOW, (H100, 2))
    second = PoolKey(Role.PREFILL, "h100-fp8")

    # Two prefill pools and one decode pool compete for s2-a's two GPUs; the third pod goes to s2-c, with a pair.
    plan = _plan([one_slot, other], [_request(P_H100, 1), _request(second, 1), _request(D_H100, 2)])

    placed = _deltas(plan)
    assert sum(placed.values()) == 4
    for name in ("s2-a", "s2-c"):
        roles = {pool.role for (pool, domain) in placed if domain == name}
        assert roles in (set(), {Role.PREFILL, Role.DECODE})
    assert sum(count for (pool, domain), count in placed.items() if domain == "s2-a") == 2


def test_multi_gpu_instances_need_their_gpus_on_one_node() -> None:
    fragmented = _domain("s2-a", LOW, (H100, 3), (H100, 3))
    whole = _domain("s2-c", MEDIUM, (H100, 4), (H100, 4))

    # TP4: six free GPUs in s2-a but no node with four; s2-c (medium) is the only fit.
    plan = _plan([fragmented, whole], [_request(P_H100, 1, gpus=4), _request(D_H100, 1, gpus=4)])

    assert _deltas(plan) == {(P_H100, "s2-c"): 1, (D_H100, "s2-c"): 1}


def test_scale_in_shrinks_the_scarcest_domain_first() -> None:
    groups = {"s2-a": {P_H100: 2, D_H100: 2}, "s2-m": {P_H100: 1, D_H100: 2}}

    plan = _plan([ROOMY, MIXED], [_request(D_H100, -1)], groups=groups)

    assert _deltas(plan) == {(D_H100, "s2-m"): -1}
    assert plan.placements[0].reason == placement.REMOVED_SCARCEST_FIRST


def test_scale_in_empties_a_scarce_group_whole() -> None:
    groups = {"s2-a": {P_H100: 2, D_H100: 2}, "s2-m": {P_H100: 1, D_H100: 2}}

    plan = _plan([ROOMY, MIXED], [_request(P_H100, -1), _request(D_H100, -2)], groups=groups)

    assert _deltas(plan) == {(P_H100, "s2-m"): -1, (D_H100, "s2-m"): -2}
    assert plan.replicas(groups)["s2-m"] == {P_H100: 0, D_H100: 0}


@pytest.mark.parametrize(
    ("free_a", "free_b", "expected_domain"),
    [
        pytest.param(10, 2, "s2-b", id="fewer-free-gpus-is-scarcer"),
        pytest.param(2, 10, "s2-a", id="the-other-way-round"),
    ],
)
def test_scale_in_among_equal_priorities_takes_the_fuller_domain(
    free_a: int, free_b: int, expected_domain: str
) -> None:
    domains = [_domain("s2-a", LOW, (H100, free_a)), _domain("s2-b", LOW, (H100, free_b))]
    groups = {"s2-a": {P_H100: 1, D_H100: 2}, "s2-b": {P_H100: 1, D_H100: 2}}

    plan = _plan(domains, [_request(D_H100, -1)], groups=groups)

    assert _deltas(plan) == {(D_H100, expected_domain): -1}


def test_scale_in_of_one_role_never_leaves_the_other_alone_in_a_group() -> None:
    groups = {"s2-a": {P_H100: 1, D_H100: 1}, "s2-m": {P_H100: 1, D_H100: 1}}

    plan = _plan([ROOMY, MIXED], [_request(D_H100, -1)], groups=groups)

    assert _deltas(plan) == {}
    assert dict(plan.kept) == {D_H100: 1}
    assert [r.code for r in plan.reasons] == [placement.SCALE_IN_KEEPS_PAIR]


def test_scale_in_frees_nothing_for_the_cycles_scale_out() -> None:
    full = _domain("s2-a", LOW, (H100, 0))
    groups = {"s2-a": {P_H100: 2, D_H100: 2}}

    # One decoder leaves s2-a and one prefiller arrives: the freed GPU is not reused within the cycle.
    plan = _plan([full], [_request(D_H100, -1), _request(P_H100, 1)], groups=groups)

    assert _deltas(plan) == {(D_H100, "s2-a"): -1}
    assert dict(plan.unplaced) == {P_H100: 1}


def _node(name: str, domain: str | None, product: str, gpus: int, **fields: object) -> NodeResources:
    return NodeResources(name=name, domain=domain, gpu_product=product, allocatable_gpus=gpus, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        pytest.param([_node("n1", "d", H100, 8), _node("n2", "d", H100, 8)], LOW, id="one-gpu-type-is-low"),
        pytest.param([_node("n1", "d", H100, 8), _node("n2", "d", A100, 8)], MEDIUM, id="mixed-is-medium"),
        pytest.param([_node("n1", "d", H100, 8, priority=HIGH), _node("n2", "d", A100, 8)], HIGH, id="a-label-decides"),
        pytest.param(
            [_node("n1", "d", H100, 8, priority=LOW), _node("n2", "d", H100, 8, priority=MEDIUM)],
            MEDIUM,
            id="the-highest-label-wins",
        ),
    ],
)
def test_domain_priority_from_labels_or_gpu_types(nodes: list[NodeResources], expected: SubgroupPriority) -> None:
    (domain,) = placement.topology_view(nodes=nodes)
    assert domain.priority is expected


def test_free_gpus_subtract_requests_pending_pods_and_skip_unschedulable_and_unlabelled_nodes() -> None:
    nodes = [
        _node("n1", "d", H100, 8, requested_gpus=3),
        _node("n2", "d", H100, 8, requested_gpus=10),  # over-committed: none free, never negative
        _node("n3", "d", H100, 8, schedulable=False),
        _node("n4", None, H100, 8),
        _node("n5", "e", A100, 4),
    ]
    # A pending 2-GPU pod committed to d lands on n1 (the only node with room): 5 - 2 = 3 left.
    pending = [PendingPod(domain="d", gpu_product=H100, gpus=2), PendingPod(domain="e", gpu_product=H100, gpus=1)]

    view = {d.name: d for d in placement.topology_view(nodes=nodes, pending=pending)}

    assert set(view) == {"d", "e"}
    assert view["d"].nodes == ((H100, 3), (H100, 0), (H100, 0))
    assert view["e"].nodes == ((A100, 4),)  # no H100 in e: the pending H100 pod takes nothing there
    assert view["d"].slots(gpu_product=H100, gpus_per_instance=2) == 1
    assert view["e"].slots(gpu_product=None, gpus_per_instance=2) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("low", LOW, id="low"),
        pytest.param(" High ", HIGH, id="case-and-spaces"),
        pytest.param("urgent", None, id="unknown"),
        pytest.param(None, None, id="missing"),
    ],
)
def test_priority_label_values(text: str | None, expected: SubgroupPriority | None) -> None:
    assert SubgroupPriority.parse(text) is expected
