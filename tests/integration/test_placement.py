"""Topology-aware placement end to end: the operator (`tokenscale run`) places deployment groups on KWOK nodes
labelled by GPU type, network domain and RDMA-subgroup priority, some domains nearly full.

Each test gets nodes of its own: tainted so that no other test's pod lands there (the templates tolerate the
taint), and labelled with a domain label key of its own (spec.placement.domainLabel), so the session's nodes are
in no domain it sees. The replicas are driven through the roles' bounds: no pod serves metrics, so every tick is
a hold that moves the counts into the bounds, and placement decides where they go.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration import operator_process as op
from tests.integration.waiting import wait_until

from tokenscale.api import labels, v1alpha1
from tokenscale.devcluster import cluster, nodes
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

H100, A100 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"
SERVICE = "llama"
_TAINT_KEY = "tokenscale.io/placement-test"


class Topology:
    """The test's nodes: per domain, its priority and nodes of (GPU type, GPUs)."""

    def __init__(self, kubectl: Kubectl, namespace: str, first_ip: int) -> None:
        self.kubectl = kubectl
        self.namespace = namespace
        self.domain_key = f"test.tokenscale.io/s2-{uuid.uuid4().hex[:8]}"
        self.taint = {"key": _TAINT_KEY, "value": namespace, "effect": "NoSchedule"}
        self.node_domains: dict[str, str] = {}
        self._next_ip = first_ip

    def add(self, domain: str, priority: str, *members: tuple[str, int]) -> None:
        manifests = []
        for product, gpus in members:
            name = f"{domain}-{len(self.node_domains)}-{self.namespace}"[:63].rstrip("-")
            node = nodes.FakeNode(
                name=name,
                internal_ip=f"127.0.{self._next_ip}.1",
                gpu_product=product,
                gpu_count=gpus,
                rdma_subgroup_priority=priority,
            )
            self._next_ip += 1
            manifest = nodes.node_manifest(node)
            manifest["metadata"]["labels"][self.domain_key] = domain
            manifest["spec"]["taints"] = [self.taint]
            manifests.append(manifest)
            self.node_domains[name] = domain
        self.kubectl.create_objects(manifests)

    def wait_ready(self) -> None:
        def ready() -> bool:
            for name in self.node_domains:
                node = self.kubectl.get_json("node", name)
                if not any(
                    c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", [])
                ):
                    return False
            return True

        wait_until(ready, what="the test's nodes Ready")

    def delete(self) -> None:
        for name in self.node_domains:
            self.kubectl.run("delete", "node", name, "--wait=false", check=False)

    def template(self, name: str, role: str, *, cold_start: str | None = None) -> dict[str, Any]:
        body = op.deployment(name, replicas=0, role=role)
        pod_template = body["spec"]["template"]
        pod_template["spec"]["tolerations"] = [{**self.taint, "operator": "Equal"}]
        if cold_start is not None:
            pod_template["metadata"]["annotations"] = {nodes.COLD_START_DELAY_ANNOTATION: cold_start}
        return body


@pytest.fixture
def topology(kubectl: Kubectl, namespace: str, request: pytest.FixtureRequest) -> Iterator[Topology]:
    # Node IPs of their own: the session's are 127.0.1-4.1, test_scale's 127.0.251.1.
    first_ip = 200 + 10 * (sum(map(ord, request.node.name)) % 4)
    made = Topology(kubectl, namespace, first_ip)
    try:
        yield made
    finally:
        made.delete()


def _groups(kubectl: Kubectl, namespace: str) -> dict[str, dict[str, Any]]:
    """The service's group Deployments by name."""
    items = kubectl.get_json("deployments", f"--namespace={namespace}", f"--selector={labels.SERVICE_LABEL}={SERVICE}")
    return {d["metadata"]["name"]: d for d in items["items"]}


def _replicas_by_domain(kubectl: Kubectl, namespace: str) -> dict[tuple[str, str], int]:
    """(role, domain) -> replicas of the service's groups."""
    found: dict[tuple[str, str], int] = {}
    for group in _groups(kubectl, namespace).values():
        meta = group["metadata"]["labels"]
        key = (meta[labels.GROUP_ROLE_LABEL], meta[labels.DOMAIN_LABEL])
        found[key] = found.get(key, 0) + int(group["spec"]["replicas"])
    return found


def _running_pods(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    items = kubectl.get_json("pods", f"--namespace={namespace}")["items"]
    return [p for p in items if "deletionTimestamp" not in p["metadata"] and p["spec"].get("nodeName")]


def _assert_every_pod_in_its_groups_domain(kubectl: Kubectl, topology: Topology) -> None:
    """The affinity rule's invariant: each group pod runs on a node of the group's domain, never elsewhere."""
    for pod in _running_pods(kubectl, topology.namespace):
        domain = pod["metadata"]["labels"].get(labels.DOMAIN_LABEL)
        assert domain is not None, f"pod {pod['metadata']['name']} is outside every group"
        assert topology.node_domains.get(pod["spec"]["nodeName"]) == domain, pod["metadata"]["name"]


def _set_bounds(kubectl: Kubectl, namespace: str, *, prefill: tuple[int, int], decode: tuple[int, int]) -> None:
    bounds = {
        role: {"minReplicas": low, "maxReplicas": high}
        for role, (low, high) in (("prefill", prefill), ("decode", decode))
    }
    patch = json.dumps({"spec": bounds})
    kubectl.run("patch", v1alpha1.PLURAL, SERVICE, f"--namespace={namespace}", "--type=merge", "-p", patch)


def _wait_placed(kubectl: Kubectl, topology: Topology, expected: dict[tuple[str, str], int]) -> None:
    wait_until(
        lambda: {k: v for k, v in _replicas_by_domain(kubectl, topology.namespace).items() if v} == expected,
        what=f"groups {expected}",
        timeout_seconds=60,
    )
    total = sum(expected.values())
    wait_until(
        lambda: len(_running_pods(kubectl, topology.namespace)) == total,
        what=f"{total} pods scheduled",
        timeout_seconds=60,
    )
    _assert_every_pod_in_its_groups_domain(kubectl, topology)


def test_groups_fill_low_domains_first_then_a_scarce_one_and_scale_in_empties_the_scarce_one_first(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, topology: Topology, tmp_path: Path
) -> None:
    # Low s2-b (4 free H100), low s2-a nearly full (2 free), medium s2-m (mixed, 4 H100 + 4 A100).
    topology.add("s2-a", "low", (H100, 2))
    topology.add("s2-b", "low", (H100, 4))
    topology.add("s2-m", "medium", (H100, 4), (A100, 4))
    topology.wait_ready()
    op.apply(kubectl, namespace, topology.template("p", "prefill"), topology.template("d", "decode"))
    with op.running_operator(kubeconfig=dev_cluster.kubeconfig, namespace=namespace, log_path=tmp_path / "op.log"):
        op.apply(
            kubectl,
            namespace,
            op.service(SERVICE, prefill_target="p", decode_target="d", placement={"domainLabel": topology.domain_key}),
        )
        # One pair, in the low domain with the most room.
        _wait_placed(kubectl, topology, {("prefill", "s2-b"): 1, ("decode", "s2-b"): 1})
        assert op.spec_replicas(kubectl, namespace, "p") == 0

        # Three of each: s2-b's group grows to its 4 GPUs, then a new group in the other low domain.
        _set_bounds(kubectl, namespace, prefill=(3, 8), decode=(3, 8))
        _wait_placed(
            kubectl,
            topology,
            {("prefill", "s2-b"): 2, ("decode", "s2-b"): 2, ("prefill", "s2-a"): 1, ("decode", "s2-a"): 1},
        )

        # Four of each: the low domains are full, so the scarce mixed domain gets a group.
        _set_bounds(kubectl, namespace, prefill=(4, 8), decode=(4, 8))
        _wait_placed(
            kubectl,
            topology,
            {
                ("prefill", "s2-b"): 2,
                ("decode", "s2-b"): 2,
                ("prefill", "s2-a"): 1,
                ("decode", "s2-a"): 1,
                ("prefill", "s2-m"): 1,
                ("decode", "s2-m"): 1,
            },
        )
        # The status reports groups as read at the start of a tick: the new one shows a tick later.
        wait_until(
            lambda: (
                {g["domain"]: g["priority"] for g in op.status_of(kubectl, namespace, SERVICE)["groups"]}
                == {"s2-a": "low", "s2-b": "low", "s2-m": "medium"}
            ),
            what="three groups in status",
        )
        placements = op.status_of(kubectl, namespace, SERVICE)["lastPlacements"]
        assert all(p["reason"] in {"Placed", "PlacedNewGroup"} for p in placements)

        # Back to three: the scarce domain's group goes first, and is deleted.
        _set_bounds(kubectl, namespace, prefill=(1, 3), decode=(1, 3))
        _wait_placed(
            kubectl,
            topology,
            {("prefill", "s2-b"): 2, ("decode", "s2-b"): 2, ("prefill", "s2-a"): 1, ("decode", "s2-a"): 1},
        )
        wait_until(
            lambda: not [name for name in _groups(kubectl, namespace) if name.endswith("s2-m")],
            what="the s2-m group deleted",
        )
        reasons = op.event_reasons(kubectl, namespace, SERVICE)
        assert {"GroupCreated", "PlacedNewGroup", "Placed", "RemovedScarcestFirst", "GroupDeleted"} <= set(reasons)


def test_heterogeneous_pair_waits_for_the_affinity_rule_then_lands_in_the_mixed_domain(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, topology: Topology, tmp_path: Path
) -> None:
    topology.add("s2-a", "low", (H100, 4))
    topology.add("s2-c", "low", (A100, 4))
    topology.add("s2-m", "medium", (H100, 2), (A100, 4))
    topology.wait_ready()
    op.apply(kubectl, namespace, topology.template("p", "prefill"), topology.template("d", "decode"))
    spec: dict[str, Any] = {
        "prefill": {
            "variants": [{"name": "h100", "scaleTargetRef": {"name": "p"}, "gpuProduct": H100, "costPerGpuHour": 3.0}]
        },
        "decode": {
            "variants": [
                {
                    "name": "a100",
                    "scaleTargetRef": {"name": "d"},
                    "gpuProduct": A100,
                    "profile": "llama-3.1-8b-a100-80",
                    "costPerGpuHour": 1.3,
                }
            ]
        },
        "placement": {"domainLabel": topology.domain_key, "maxSubgroupPriority": "low"},
    }
    with op.running_operator(kubeconfig=dev_cluster.kubeconfig, namespace=namespace, log_path=tmp_path / "op.log"):
        op.apply(kubectl, namespace, op.service(SERVICE, prefill_target="p", decode_target="d", **spec))
        # H100 prefill and A100 decode share no homogeneous domain; the rule allows only low ones: nothing runs.
        wait_until(lambda: "CapacityShort" in op.event_reasons(kubectl, namespace, SERVICE), what="CapacityShort event")
        op.sleep_seconds(3)
        assert _groups(kubectl, namespace) == {}
        assert _running_pods(kubectl, namespace) == []

        spec["placement"]["maxSubgroupPriority"] = "medium"
        op.apply(kubectl, namespace, op.service(SERVICE, prefill_target="p", decode_target="d", **spec))
        # One prefill instance of the H100 profile and decode capacity of one H100 decoder, which takes two A100s
        # (their velocity is below the H100's): all in the mixed domain.
        _wait_placed(kubectl, topology, {("prefill", "s2-m"): 1, ("decode", "s2-m"): 2})
        wait_until(
            lambda: (
                {v["name"]: v["replicas"] for v in op.status_of(kubectl, namespace, SERVICE)["variants"]}
                == {"h100": 1, "a100": 2}
            ),
            what="both variants in status",
        )
        for pod in _running_pods(kubectl, namespace):
            node = kubectl.get_json("node", pod["spec"]["nodeName"])
            wanted = H100 if pod["metadata"]["labels"][labels.VARIANT_LABEL] == "h100" else A100
            assert node["metadata"]["labels"][labels.GPU_PRODUCT_LABEL] == wanted


def test_ratio_guard_withdraws_prefill_until_slow_decoders_are_ready(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, topology: Topology, tmp_path: Path
) -> None:
    topology.add("s2-a", "low", (H100, 8))
    topology.wait_ready()
    op.apply(
        kubectl,
        namespace,
        topology.template("p", "prefill"),
        # Decoders start slower than prefillers (KWOK's simulated cold start).
        topology.template("d", "decode", cold_start="8s"),
    )
    with op.running_operator(kubeconfig=dev_cluster.kubeconfig, namespace=namespace, log_path=tmp_path / "op.log"):
        op.apply(
            kubectl,
            namespace,
            op.service(SERVICE, prefill_target="p", decode_target="d", placement={"domainLabel": topology.domain_key}),
        )
        wait_until(
            lambda: op.ready_pods(kubectl, namespace, "d") == 1, what="the first decoder Ready", timeout_seconds=40
        )

        _set_bounds(kubectl, namespace, prefill=(2, 8), decode=(2, 8))

        def withdrawn() -> list[str]:
            return [
                p["metadata"]["name"]
                for p in op.pods(kubectl, namespace, "p")
                if p["metadata"]["labels"].get(labels.RATIO_WITHDRAWN_LABEL) == "true"
            ]

        # The new prefiller is Ready at once, the new decoder 8 s later: 2:1 Ready against the decided 2:2 is past
        # the 50% tolerance, so the newest prefiller leaves routing until the decoder is Ready.
        (name,) = wait_until(withdrawn, what="a withdrawn prefiller", timeout_seconds=20)
        assert op.ready_pods(kubectl, namespace, "d") == 1
        wait_until(
            lambda: op.ready_pods(kubectl, namespace, "d") == 2, what="the second decoder Ready", timeout_seconds=30
        )
        wait_until(lambda: withdrawn() == [], what="the prefiller rejoins", timeout_seconds=10)
        reasons = op.event_reasons(kubectl, namespace, SERVICE)
        assert {"RatioWithdraw", "RatioRejoin"} <= set(reasons)
        assert name in {p["metadata"]["name"] for p in op.pods(kubectl, namespace, "p")}
