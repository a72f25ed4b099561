"""A tick of a service with pools (variants, deployment groups) against in-memory adapters: where capacity goes,
which groups are created, shrunk or deleted, and which pods the ratio guard withdraws."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from tests.unit.controller.fakes import EngineModel, EventList, FakeCluster, FakeScraper

from tokenscale.api import labels
from tokenscale.controller import reconcile, telemetry
from tokenscale.controller.service import InvalidSpecError, ServiceMemory, parse_service
from tokenscale.core.placement import NodeResources, PendingPod, SubgroupPriority
from tokenscale.kube import deployments
from tokenscale.kube import topology as kube_topology
from tokenscale.kube.pods import PodInfo
from tokenscale.kube.scale import Scale

T0 = 1_700_000_000.0
H100, A100 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"
DOMAIN_KEY = "topology.tokenscale.io/s2-switch"
IDLE_PREFILL = EngineModel(prompt_tokens_per_second=100.0, requests_per_second=0.1)
IDLE_DECODE = EngineModel(generation_tokens_per_second=50.0, requests_per_second=0.1, requests_running=1)


def _template(name: str, role: str, *, gpus: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, "tokenscale.io/role": role}},
                "spec": {"containers": [{"name": "engine", "resources": {"limits": {labels.GPU_RESOURCE: str(gpus)}}}]},
            },
        },
    }


@dataclass
class FakePlacement:
    """Templates, group Deployments (their replicas live in the FakeCluster's /scale) and nodes in memory."""

    cluster: FakeCluster
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: list[NodeResources] = field(default_factory=list)
    pending: list[PendingPod] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    topology_reads: int = 0
    unlisted: set[str] = field(default_factory=set)
    """Groups that exist but a list does not show yet (a list that raced a create)."""

    async def read_deployment(self, *, namespace: str, name: str) -> Mapping[str, Any]:
        del namespace
        return self.templates[name]

    async def list_group_deployments(self, *, namespace: str, service: str) -> Sequence[deployments.GroupDeployment]:
        del namespace
        found = []
        for name, body in sorted(self.groups.items()):
            if name in self.unlisted:
                continue
            meta = body["metadata"]["labels"]
            if meta[labels.SERVICE_LABEL] != service:
                continue
            found.append(
                deployments.GroupDeployment(
                    name=name,
                    role=meta[labels.GROUP_ROLE_LABEL],
                    variant=meta[labels.VARIANT_LABEL],
                    domain=meta[labels.DOMAIN_LABEL],
                    replicas=self.cluster.scales[name].spec_replicas,
                    ready_replicas=0,
                )
            )
        return found

    async def create_deployment(self, *, namespace: str, body: Mapping[str, Any]) -> bool:
        del namespace
        name = body["metadata"]["name"]
        if name in self.groups:
            return False
        self.groups[name] = dict(body)
        self.created.append(name)
        self.cluster.scales[name] = Scale(
            spec_replicas=0, status_replicas=0, selector=f"group={name}", resource_version="1"
        )
        return True

    async def delete_deployment(self, *, namespace: str, name: str) -> bool:
        del namespace
        self.deleted.append(name)
        self.groups.pop(name, None)
        return True

    async def read_topology(
        self, *, labels: kube_topology.TopologyLabels, tolerations: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[list[NodeResources], list[PendingPod]]:
        del labels, tolerations
        self.topology_reads += 1
        return list(self.nodes), list(self.pending)


def _node(
    name: str, domain: str, product: str, *, free: int = 8, priority: SubgroupPriority | None = None
) -> NodeResources:
    return NodeResources(
        name=name, domain=domain, gpu_product=product, allocatable_gpus=8, requested_gpus=8 - free, priority=priority
    )


@dataclass
class PooledService:
    """A service whose pools live in a FakeCluster plus a FakePlacement, ticking on a fake clock."""

    spec: dict[str, Any]
    cluster: FakeCluster = field(default_factory=FakeCluster)
    scraper: FakeScraper = field(default_factory=FakeScraper)
    events: EventList = field(default_factory=EventList)
    memory: ServiceMemory = field(default_factory=ServiceMemory)
    now: float = T0
    placement: FakePlacement = field(init=False)

    def __post_init__(self) -> None:
        self.placement = FakePlacement(cluster=self.cluster)

    def template(self, name: str, role: str, *, replicas: int = 0) -> None:
        self.placement.templates[name] = _template(name, role)
        self.cluster.add_target(name, replicas=replicas, selector=f"app={name}", pods=[])

    def pod(
        self, template: str, name: str, *, role: str, domain: str | None = None, ready: bool = True, since: float = 0.0
    ) -> PodInfo:
        pod_labels = {"app": template, "tokenscale.io/role": role}
        if domain is not None:
            pod_labels[labels.DOMAIN_LABEL] = domain
        pod = PodInfo(
            name=name,
            pod_ip=f"127.1.0.{len(self.scraper.engines) + 1}",
            ready=ready,
            ready_since_seconds=T0 - 600 + since if ready else None,
            deleting=False,
            labels=pod_labels,
            annotations={},
        )
        self.cluster.pods.setdefault(f"app={template}", []).append(pod)
        self.scraper.engines[name] = copy.deepcopy(IDLE_PREFILL if role == "prefill" else IDLE_DECODE)
        return pod

    def group(self, template: str, role: str, domain: str, *, replicas: int, variant: str = "default") -> str:
        body = deployments.group_deployment(
            template=self.placement.templates[template],
            name=deployments.group_name(template=template, domain=domain),
            owner=deployments.OwnerRef(api_version="tokenscale.io/v1alpha1", kind="X", name="svc", uid="u"),
            role=role,
            variant=variant,
            domain_label=DOMAIN_KEY,
            domain=domain,
            gpu_product_label=labels.GPU_PRODUCT_LABEL,
            gpu_product=None,
        )
        name = str(body["metadata"]["name"])
        self.placement.groups[name] = body
        self.cluster.scales[name] = Scale(
            spec_replicas=replicas, status_replicas=replicas, selector=f"group={name}", resource_version="1"
        )
        return name

    @property
    def status(self) -> Mapping[str, Any]:
        return self.cluster.statuses[-1] if self.cluster.statuses else {}

    async def tick(self, count: int = 1) -> None:
        config = parse_service(spec=self.spec, generation=1)
        ports = reconcile.TickPorts(
            cluster=self.cluster,
            scraper=self.scraper,
            events=self.events,
            metrics=telemetry.OperatorMetrics(CollectorRegistry()),
            placement=self.placement,
        )
        for _ in range(count):
            self.now += 1.0
            self.scraper.now_seconds = self.now
            await reconcile.run_tick(
                namespace="ns",
                name="svc",
                config=config,
                memory=self.memory,
                ports=ports,
                now_seconds=self.now,
                previous_status=self.status,
                uid="uid-1",
            )


def _static(prefill: int, decode: int) -> dict[str, Any]:
    return {"name": "static", "static": {"prefillReplicas": prefill, "decodeReplicas": decode}}


def _variants_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "profile": {"name": "llama-3.1-8b-h100"},
        "prefill": {
            "variants": [
                {
                    "name": "h100",
                    "scaleTargetRef": {"name": "p-h100"},
                    "gpuProduct": H100,
                    "costPerGpuHour": 3.0,
                },
                {
                    "name": "a100",
                    "scaleTargetRef": {"name": "p-a100"},
                    "profile": "llama-3.1-8b-a100-80",
                    "gpuProduct": A100,
                    "costPerGpuHour": 1.3,
                },
            ],
            "maxReplicas": 16,
        },
        "decode": {"scaleTargetRef": {"name": "d"}, "maxReplicas": 8},
        "metrics": {"windowSeconds": 4},
        "behavior": {"scaleInStabilizationSeconds": 0},
    }
    spec.update(overrides)
    return spec


def _variant_service(h100_free: int) -> PooledService:
    service = PooledService(_variants_spec(policy=_static(3, 1)))
    for name, role in (("p-h100", "prefill"), ("p-a100", "prefill"), ("d", "decode")):
        service.template(name, role, replicas=1 if name != "p-a100" else 0)
    service.pod("p-h100", "p-h100-0", role="prefill")
    service.pod("d", "d-0", role="decode")
    service.placement.nodes = [_node("h", "x", H100, free=h100_free), _node("a", "x", A100, free=8)]
    return service


async def test_variants_grow_the_cheapest_capacity_first() -> None:
    service = _variant_service(h100_free=8)

    # Static 3 prefillers of the H100 profile: 3 x 31k tokens/s. One H100 runs; two more H100 (3.0 per GPU-hour for
    # 31k tokens/s) cost less per token than A100s (1.3 for 10.4k).
    await service.tick(2)

    assert ("p-h100", 3) in service.cluster.scale_writes()
    assert not [w for w in service.cluster.scale_writes() if w[0] == "p-a100"]
    variants = {v["name"]: v for v in service.status["variants"]}
    assert variants["h100"]["desiredReplicas"] == 3
    assert "VariantScaleOut" in service.events.reasons()


async def test_variants_spill_to_the_next_gpu_type_when_the_cheapest_has_no_free_gpus() -> None:
    service = _variant_service(h100_free=1)

    # Room for one more H100 (62k); the other 31k go on A100s: two whole (20.8k), then one for the last 10.2k.
    await service.tick(2)

    writes = dict(service.cluster.scale_writes())
    assert writes == {"p-h100": 2, "p-a100": 3}
    assert service.placement.topology_reads >= 1


def _placed_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "prefill": {"scaleTargetRef": {"name": "p"}, "minReplicas": 1, "maxReplicas": 8},
        "decode": {"scaleTargetRef": {"name": "d"}, "minReplicas": 1, "maxReplicas": 8},
        "metrics": {"windowSeconds": 4},
        "behavior": {"scaleInStabilizationSeconds": 0},
        "placement": {"domainLabel": DOMAIN_KEY},
    }
    spec.update(overrides)
    return spec


def _placed_service(**overrides: Any) -> PooledService:
    service = PooledService(_placed_spec(**overrides))
    service.template("p", "prefill")
    service.template("d", "decode")
    service.placement.nodes = [
        _node("m1", "s2-m", H100),
        _node("m2", "s2-m", A100),
        _node("a1", "s2-a", H100),
        _node("a2", "s2-a", H100, free=2),
    ]
    return service


async def test_first_tick_creates_a_group_pair_in_the_lowest_priority_domain() -> None:
    service = _placed_service()

    # No pod yet: the policy holds at the minimum, one of each role, both in the low domain s2-a.
    await service.tick()

    assert service.placement.created == ["d-s2-a", "p-s2-a"]
    assert sorted(service.cluster.scale_writes()) == [("d-s2-a", 1), ("p-s2-a", 1)]
    created = service.placement.groups["p-s2-a"]
    pod_spec = created["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {DOMAIN_KEY: "s2-a"}
    assert created["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert {"GroupCreated", "PlacedNewGroup"} <= set(service.events.reasons())
    placements = service.status["lastPlacements"]
    assert {(p["role"], p["domain"], p["delta"], p["reason"]) for p in placements} == {
        ("prefill", "s2-a", 1, "PlacedNewGroup"),
        ("decode", "s2-a", 1, "PlacedNewGroup"),
    }


async def test_groups_are_read_back_and_not_created_twice() -> None:
    service = _placed_service()
    await service.tick()
    service.pod("p", "p-a-0", role="prefill", domain="s2-a")
    service.pod("d", "d-a-0", role="decode", domain="s2-a")

    await service.tick(2)

    assert service.placement.created == ["d-s2-a", "p-s2-a"]
    groups = service.status["groups"]
    assert [(g["domain"], g["prefillReplicas"], g["decodeReplicas"], g["readyPrefill"]) for g in groups] == [
        ("s2-a", 1, 1, 1)
    ]


async def test_template_replicas_move_into_groups() -> None:
    service = _placed_service()
    service.cluster.scales["p"] = Scale(spec_replicas=2, status_replicas=2, selector="app=p", resource_version="1")

    await service.tick()

    assert ("p", 0) in service.cluster.scale_writes()


async def test_scale_in_empties_the_scarce_domains_group_and_deletes_it() -> None:
    service = _placed_service(policy=_static(1, 1))
    for template, role in (("p", "prefill"), ("d", "decode")):
        service.group(template, role, "s2-a", replicas=1)
        service.group(template, role, "s2-m", replicas=1)
        service.pod(template, f"{template}-a-0", role=role, domain="s2-a")
        service.pod(template, f"{template}-m-0", role=role, domain="s2-m")

    await service.tick(2)

    assert sorted(service.placement.deleted) == ["d-s2-m", "p-s2-m"]
    assert not [w for w in service.cluster.scale_writes() if w[0].endswith("s2-a")]
    assert "GroupDeleted" in service.events.reasons()
    assert {p["reason"] for p in service.status["lastPlacements"]} == {"RemovedScarcestFirst"}


async def test_a_heterogeneous_pair_forbidden_by_the_affinity_rule_is_not_placed() -> None:
    spec = _placed_spec(
        decode={
            "variants": [
                {"name": "a100", "scaleTargetRef": {"name": "d"}, "gpuProduct": A100, "profile": "llama-3.1-8b-a100-80"}
            ],
            "minReplicas": 1,
        },
        prefill={"variants": [{"name": "h100", "scaleTargetRef": {"name": "p"}, "gpuProduct": H100}]},
        placement={"domainLabel": DOMAIN_KEY, "maxSubgroupPriority": "low"},
    )
    service = PooledService(spec)
    service.template("p", "prefill")
    service.template("d", "decode")
    service.placement.nodes = [_node("m1", "s2-m", H100), _node("m2", "s2-m", A100), _node("a1", "s2-a", H100)]

    await service.tick()

    # H100 prefill with A100 decode needs the mixed (medium) domain, which the affinity rule forbids: no pool
    # has room where it may run.
    assert service.placement.created == []
    assert service.cluster.scale_writes() == []
    short = [message for _, reason, message in service.events.events if reason == "CapacityShort"]
    assert [message.split(":")[0] for message in short] == ["prefill", "decode"]


async def test_ratio_guard_withdraws_the_newest_pods_of_the_larger_role() -> None:
    service = _placed_service(policy=_static(3, 1))
    service.group("p", "prefill", "s2-a", replicas=3)
    service.group("d", "decode", "s2-a", replicas=1)
    for i in range(3):
        service.pod("p", f"p-a-{i}", role="prefill", domain="s2-a", since=float(i))
    service.pod("d", "d-a-0", role="decode", domain="s2-a", ready=False)

    await service.tick()

    # Decode is not Ready yet: only the oldest prefiller serves; the two newer ones leave routing by label.
    withdrawn = [name for name, labels_, _ in service.cluster.pod_writes() if labels_.get(labels.RATIO_WITHDRAWN_LABEL)]
    assert withdrawn == ["p-a-1", "p-a-2"]
    assert "RatioWithdraw" in service.events.reasons()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            _placed_spec(decode={"scaleTargetRef": {"name": "d", "kind": "StatefulSet"}}),
            "apps/v1 Deployment",
            id="placement-needs-deployments",
        ),
        pytest.param(
            _variants_spec(decode={"scaleTargetRef": {"name": "p-h100"}}),
            "different target",
            id="two-pools-one-target",
        ),
        pytest.param(
            _variants_spec(prefill={"variants": [{"name": "x", "scaleTargetRef": {"name": "p"}, "profile": "gpt-9"}]}),
            "unknown profile",
            id="unknown-variant-profile",
        ),
    ],
)
def test_pools_a_tick_cannot_serve_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSpecError, match=message):
        parse_service(spec=spec, generation=1)


def test_one_target_per_role_without_placement_has_no_pools() -> None:
    plain = parse_service(spec={k: v for k, v in _placed_spec().items() if k != "placement"}, generation=1)
    placed = parse_service(spec=_placed_spec(), generation=1)

    assert plain.pools is None
    assert placed.pools is not None
    assert [(p.name, p.min_replicas, p.max_replicas) for p in placed.pools.all] == [("default", 1, 8)] * 2


async def test_a_pair_that_fits_nowhere_is_reported_once_and_not_placed_half() -> None:
    service = PooledService(_placed_spec())
    service.template("p", "prefill")
    service.template("d", "decode")
    # One free GPU: room for either role alone, never for the pair.
    service.placement.nodes = [_node("x1", "s2-x", H100, free=1)]

    await service.tick(3)

    assert service.placement.created == []
    records = service.status["lastPlacements"]
    assert sorted((r["role"], r["reason"], r["delta"]) for r in records) == [
        ("decode", "NoDomainFits", 0),
        ("prefill", "NoDomainFits", 0),
    ]


async def test_a_group_an_earlier_tick_created_but_not_yet_listed_is_scaled_not_created_again() -> None:
    service = _placed_service()
    for template, role in (("p", "prefill"), ("d", "decode")):
        service.placement.unlisted.add(service.group(template, role, "s2-a", replicas=0))

    await service.tick()

    assert service.placement.created == []
    assert sorted(service.cluster.scale_writes()) == [("d-s2-a", 1), ("p-s2-a", 1)]
    assert "GroupCreated" not in service.events.reasons()
