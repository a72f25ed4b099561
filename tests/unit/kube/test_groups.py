"""Deployment groups' objects and the GPU accounting of nodes: pure functions of the kube layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.unit.kube.fake_apiserver import FakeApiServer, serve

from tokenscale.api import labels
from tokenscale.core.placement import PendingPod, SubgroupPriority
from tokenscale.kube import deployments, topology

OWNER = deployments.OwnerRef(
    api_version="tokenscale.io/v1alpha1", kind="DisaggregatedInferenceService", name="llama", uid="u-1"
)


def _template() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "llama-prefill",
            "labels": {"app": "llama"},
            "annotations": {"deployment.kubernetes.io/revision": "3", "team": "serving"},
            "resourceVersion": "42",
        },
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "llama"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            "template": {
                "metadata": {"labels": {"app": "llama", "tier": "gpu"}},
                "spec": {"nodeSelector": {"pool": "serving"}, "containers": [{"name": "engine"}]},
            },
        },
        "status": {"replicas": 5},
    }


def test_group_is_the_template_pinned_to_a_domain_owned_by_the_service() -> None:
    body = deployments.group_deployment(
        template=_template(),
        name="llama-prefill-s2-0",
        owner=OWNER,
        role="prefill",
        variant="h100",
        domain_label="topology.tokenscale.io/s2-switch",
        domain="s2-0",
        gpu_product_label=labels.GPU_PRODUCT_LABEL,
        gpu_product="NVIDIA-H100-80GB-HBM3",
    )

    spec = body["spec"]
    pinned = {labels.DOMAIN_LABEL: "s2-0", labels.VARIANT_LABEL: "h100"}
    assert spec["replicas"] == 0
    assert spec["selector"]["matchLabels"] == {"app": "llama", **pinned}
    assert spec["selector"]["matchExpressions"] == [{"key": "tier", "operator": "Exists"}]
    assert spec["template"]["metadata"]["labels"] == {"app": "llama", "tier": "gpu", **pinned}
    assert spec["template"]["spec"]["nodeSelector"] == {
        "pool": "serving",
        "topology.tokenscale.io/s2-switch": "s2-0",
        labels.GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3",
    }
    meta = body["metadata"]
    assert meta["labels"][labels.SERVICE_LABEL] == "llama"
    assert meta["labels"][labels.GROUP_ROLE_LABEL] == "prefill"
    assert meta["annotations"] == {"team": "serving"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "tokenscale.io/v1alpha1",
            "kind": "DisaggregatedInferenceService",
            "name": "llama",
            "uid": "u-1",
            "controller": True,
        }
    ]
    assert "status" not in body
    assert "resourceVersion" not in meta
    assert _template()["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "serving"}  # the template untouched


@pytest.mark.parametrize(
    ("template", "domain", "expected"),
    [
        pytest.param("llama-prefill", "s2-0", "llama-prefill-s2-0", id="plain"),
        pytest.param("p", "Rack_7.Zone", "p-rack-7-zone", id="lower-cased-and-dashed"),
    ],
)
def test_group_names_are_dns_labels(template: str, domain: str, expected: str) -> None:
    assert deployments.group_name(template=template, domain=domain) == expected


def test_long_group_names_are_cut_and_stay_unique() -> None:
    first = deployments.group_name(template="a" * 60, domain="domain-one")
    second = deployments.group_name(template="a" * 60, domain="domain-two")

    assert len(first) <= 63
    assert len(second) <= 63
    assert first != second


@pytest.mark.parametrize(
    ("pod_spec", "gpus"),
    [
        pytest.param({"containers": [{"resources": {"limits": {"nvidia.com/gpu": "4"}}}]}, 4, id="limits"),
        pytest.param({"containers": [{"resources": {"requests": {"nvidia.com/gpu": "2"}}}]}, 2, id="requests"),
        pytest.param(
            {
                "containers": [
                    {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
                    {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
                ]
            },
            2,
            id="containers-add-up",
        ),
        pytest.param(
            {
                "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                "initContainers": [{"resources": {"limits": {"nvidia.com/gpu": "3"}}}],
            },
            3,
            id="a-larger-init-container",
        ),
        pytest.param({"containers": [{"name": "cpu-only"}]}, 0, id="none"),
    ],
)
def test_pod_gpus(pod_spec: dict[str, Any], gpus: int) -> None:
    assert topology.pod_gpus(pod_spec, resource="nvidia.com/gpu") == gpus


TAINT = {"key": "dedicated", "value": "llm", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("tolerations", "tolerated"),
    [
        pytest.param([], False, id="none"),
        pytest.param([{"key": "dedicated", "operator": "Equal", "value": "llm"}], True, id="equal-any-effect"),
        pytest.param([{"key": "dedicated", "value": "other"}], False, id="other-value"),
        pytest.param([{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}], True, id="exists"),
        pytest.param([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}], False, id="other-effect"),
        pytest.param([{"operator": "Exists"}], True, id="tolerates-everything"),
    ],
)
def test_tolerations_match_as_the_scheduler_does(tolerations: list[dict[str, str]], tolerated: bool) -> None:
    assert topology.tolerates(tolerations, TAINT) is tolerated


def _node(name: str, *, domain: str | None, gpus: str, **spec: Any) -> dict[str, Any]:
    node_labels = {labels.GPU_PRODUCT_LABEL: "H100", labels.RDMA_SUBGROUP_PRIORITY_LABEL: "medium"}
    if domain is not None:
        node_labels["d"] = domain
    return {
        "metadata": {"name": name, "labels": node_labels},
        "spec": spec,
        "status": {"allocatable": {"nvidia.com/gpu": gpus}},
    }


def _pod(*, node: str | None, gpus: int, selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "spec": {
            **({"nodeName": node} if node else {}),
            "nodeSelector": selector or {},
            "containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        }
    }


def test_read_topology_counts_requests_per_node_and_pending_pods_per_domain(tmp_path: Path) -> None:
    server = FakeApiServer()
    server.on(
        "GET",
        "/api/v1/nodes",
        (
            200,
            {
                "items": [
                    _node("n1", domain="s2-a", gpus="8"),
                    _node("n2", domain="s2-a", gpus="8", taints=[TAINT]),
                    _node("n3", domain="s2-b", gpus="8", unschedulable=True),
                ]
            },
        ),
    )
    server.on(
        "GET",
        "/api/v1/pods",
        (
            200,
            {
                "items": [
                    _pod(node="n1", gpus=3),
                    _pod(node="n1", gpus=1),
                    _pod(node=None, gpus=2, selector={"d": "s2-a", labels.GPU_PRODUCT_LABEL: "H100"}),
                    _pod(node=None, gpus=1),  # no domain in its selector: nowhere yet
                ]
            },
        ),
    )
    keys = topology.TopologyLabels(
        domain_label="d",
        gpu_product_label=labels.GPU_PRODUCT_LABEL,
        priority_label=labels.RDMA_SUBGROUP_PRIORITY_LABEL,
        gpu_resource="nvidia.com/gpu",
    )

    with serve(server, tmp_path) as api:
        nodes, pending = topology.read_topology(api, labels=keys, tolerations=[])

    by_name = {n.name: n for n in nodes}
    assert by_name["n1"].requested_gpus == 4
    assert (by_name["n1"].schedulable, by_name["n2"].schedulable, by_name["n3"].schedulable) == (True, False, False)
    assert by_name["n1"].priority is SubgroupPriority.MEDIUM
    assert pending == [PendingPod(domain="s2-a", gpu_product="H100", gpus=2)]
    (query,) = [r.query for r in server.requests if r.path == "/api/v1/pods"]
    assert query["fieldSelector"] == ["status.phase!=Succeeded,status.phase!=Failed"]


def test_group_deployments_are_listed_by_service_and_foreign_ones_skipped(tmp_path: Path) -> None:
    group = deployments.group_deployment(
        template=_template(),
        name="llama-prefill-s2-0",
        owner=OWNER,
        role="prefill",
        variant="h100",
        domain_label="d",
        domain="s2-0",
        gpu_product_label=labels.GPU_PRODUCT_LABEL,
        gpu_product=None,
    )
    group["spec"]["replicas"] = 3
    group["status"] = {"readyReplicas": 2}
    foreign = {"metadata": {"name": "hand-made", "labels": {labels.SERVICE_LABEL: "llama"}}, "spec": {"replicas": 1}}
    server = FakeApiServer()
    server.on("GET", "/apis/apps/v1/namespaces/ns/deployments", (200, {"items": [foreign, group]}))

    with serve(server, tmp_path) as api:
        found = deployments.list_group_deployments(api, namespace="ns", service="llama")

    assert found == [
        deployments.GroupDeployment(
            name="llama-prefill-s2-0", role="prefill", variant="h100", domain="s2-0", replicas=3, ready_replicas=2
        )
    ]
    assert server.requests[0].query["labelSelector"] == [f"{labels.SERVICE_LABEL}=llama"]
