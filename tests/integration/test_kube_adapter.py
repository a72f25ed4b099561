"""The kube layer against a real API server: /scale of a Deployment and of a custom kind, pods by selector,
label flips that keep the pod in its workload, pod-deletion-cost choosing the scale-in victim, HPA and KEDA
owners."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from tests.integration import operator_process as op
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl
from tokenscale.kube import client as kube_client
from tokenscale.kube import discovery, errors, rest
from tokenscale.kube import pods as kube_pods
from tokenscale.kube import scale as kube_scale
from tokenscale.kube.cluster import KubeCluster
from tokenscale.kube.scale import Scale, ScaleRef

pytestmark = pytest.mark.integration

DEPLOYMENT = ScaleRef(api_version="apps/v1", kind="Deployment", name="engine")


@pytest.fixture
def kube(dev_cluster: cluster.DevCluster) -> Iterator[KubeCluster]:
    api = kube_client.build_api_client(kubeconfig=dev_cluster.kubeconfig)
    found = KubeCluster(api, owners_ttl_seconds=0.0, scale_ttl_seconds=0.0)
    try:
        yield found
    finally:
        found.close()
        api.close()


def test_deployment_scale_round_trip_and_pods_by_selector(
    dev_cluster: cluster.DevCluster, kube: KubeCluster, kubectl: Kubectl, namespace: str
) -> None:
    op.apply(kubectl, namespace, op.deployment("engine", replicas=1, role="decode"))
    scale = asyncio.run(kube.read_scale(namespace=namespace, ref=DEPLOYMENT))
    assert (scale.spec_replicas, scale.selector) == (1, "app=engine")
    written = asyncio.run(kube.write_scale(namespace=namespace, ref=DEPLOYMENT, replicas=3))
    assert written.spec_replicas == 3
    assert op.spec_replicas(kubectl, namespace, "engine") == 3

    def ready() -> list[kube_pods.PodInfo]:
        found = asyncio.run(kube.list_pods(namespace=namespace, selector=scale.selector))
        return found if len(found) == 3 and all(p.ready for p in found) else []

    found = wait_until(ready, what="3 Ready pods listed")
    network = ipaddress.ip_network(dev_cluster.pod_cidr)
    assert all(p.pod_ip and ipaddress.ip_address(p.pod_ip) in network for p in found)
    assert len({p.pod_ip for p in found}) == 3
    assert all(p.ready_since_seconds is not None and p.labels["tokenscale.io/role"] == "decode" for p in found)


def test_label_flip_keeps_the_pod_in_its_workload(kube: KubeCluster, kubectl: Kubectl, namespace: str) -> None:
    op.apply(kubectl, namespace, op.deployment("engine", replicas=2, role="decode"))
    pods = wait_until(
        lambda: op.pods(kubectl, namespace, "engine") if op.ready_pods(kubectl, namespace, "engine") == 2 else [],
        what="2 pods",
    )
    name = pods[0]["metadata"]["name"]
    asyncio.run(
        kube.patch_pod(
            namespace=namespace,
            name=name,
            labels={"tokenscale.io/role": "converted"},
            annotations={kube_pods.CONVERTED_AT_ANNOTATION: kube_pods.format_time(1_700_000_000.0)},
        )
    )
    pod = op.get(kubectl, namespace, "pod", name)
    assert pod["metadata"]["labels"]["tokenscale.io/role"] == "converted"
    assert pod["metadata"]["annotations"][kube_pods.CONVERTED_AT_ANNOTATION] == "2023-11-14T22:13:20Z"
    op.sleep_seconds(2)
    # Still selected by its ReplicaSet: not replaced, still owned.
    assert sorted(p["metadata"]["name"] for p in op.pods(kubectl, namespace, "engine")) == sorted(
        p["metadata"]["name"] for p in pods
    )
    asyncio.run(
        kube.patch_pod(
            namespace=namespace,
            name=name,
            labels={"tokenscale.io/role": "decode"},
            annotations={kube_pods.CONVERTED_AT_ANNOTATION: None},
        )
    )
    pod = op.get(kubectl, namespace, "pod", name)
    assert pod["metadata"]["labels"]["tokenscale.io/role"] == "decode"
    assert kube_pods.CONVERTED_AT_ANNOTATION not in pod["metadata"].get("annotations", {})


def test_deletion_cost_chooses_the_scale_in_victim(kube: KubeCluster, kubectl: Kubectl, namespace: str) -> None:
    op.apply(kubectl, namespace, op.deployment("engine", replicas=3, role="decode"))
    wait_until(lambda: op.ready_pods(kubectl, namespace, "engine") == 3, what="3 Ready pods")
    names = sorted(p["metadata"]["name"] for p in op.pods(kubectl, namespace, "engine"))
    victim = names[1]  # neither the oldest nor the newest name: only the cost can single it out
    asyncio.run(
        kube.patch_pod(namespace=namespace, name=victim, annotations={kube_pods.DELETION_COST_ANNOTATION: "-1000"})
    )
    asyncio.run(kube.write_scale(namespace=namespace, ref=DEPLOYMENT, replicas=2))
    remaining = wait_until(
        lambda: (
            sorted(p["metadata"]["name"] for p in op.pods(kubectl, namespace, "engine"))
            if len(op.pods(kubectl, namespace, "engine")) == 2
            else None
        ),
        what="scale-in to 2",
    )
    assert victim not in remaining


SCALABLE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "enginepools.example.tokenscale.io"},
    "spec": {
        "group": "example.tokenscale.io",
        "scope": "Namespaced",
        "names": {"kind": "EnginePool", "plural": "enginepools", "singular": "enginepool"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                            "status": {
                                "type": "object",
                                "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}},
                            },
                        },
                    }
                },
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
            }
        ],
    },
}


def test_any_kind_with_a_scale_subresource_is_a_target(kube: KubeCluster, kubectl: Kubectl, namespace: str) -> None:
    op.apply(kubectl, namespace, SCALABLE_CRD)
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "crd/enginepools.example.tokenscale.io")
    op.apply(
        kubectl,
        namespace,
        {
            "apiVersion": "example.tokenscale.io/v1",
            "kind": "EnginePool",
            "metadata": {"name": "pool"},
            "spec": {"replicas": 2},
        },
    )
    kubectl.run(
        "patch", "enginepool", "pool", f"--namespace={namespace}", "--subresource=status", "--type=merge",
        "-p", '{"status": {"replicas": 2, "selector": "pool=yes"}}',
    )  # fmt: skip
    ref = ScaleRef(api_version="example.tokenscale.io/v1", kind="EnginePool", name="pool")

    def with_selector() -> Scale | None:
        read = asyncio.run(kube.read_scale(namespace=namespace, ref=ref))
        return read if read.selector else None

    scale = wait_until(with_selector, what="the pool's /scale with its selector")
    assert (scale.spec_replicas, scale.status_replicas, scale.selector) == (2, 2, "pool=yes")
    asyncio.run(kube.write_scale(namespace=namespace, ref=ref, replicas=5))
    assert op.get(kubectl, namespace, "enginepool", "pool")["spec"]["replicas"] == 5
    with pytest.raises(errors.NotScalableError):
        asyncio.run(kube.read_scale(namespace=namespace, ref=ScaleRef("v1", "ConfigMap", "x")))
    with pytest.raises(errors.NotFoundError):
        asyncio.run(kube.read_scale(namespace=namespace, ref=ScaleRef("apps/v1", "Deployment", "missing")))


SCALED_OBJECT_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {
        "group": "keda.sh",
        "scope": "Namespaced",
        "names": {"kind": "ScaledObject", "plural": "scaledobjects", "singular": "scaledobject"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}


def test_hpa_and_keda_scaled_object_are_found_as_owners(kube: KubeCluster, kubectl: Kubectl, namespace: str) -> None:
    op.apply(kubectl, namespace, op.deployment("engine", replicas=1, role="decode"))
    other = ScaleRef(api_version="apps/v1", kind="Deployment", name="other")
    assert asyncio.run(kube.find_scale_owners(namespace=namespace, refs=(DEPLOYMENT, other))) == {
        DEPLOYMENT: [],
        other: [],
    }
    op.apply(
        kubectl,
        namespace,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "engine-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "engine"},
                "minReplicas": 1,
                "maxReplicas": 3,
            },
        },
        SCALED_OBJECT_CRD,
    )
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "crd/scaledobjects.keda.sh")
    op.apply(
        kubectl,
        namespace,
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "engine-so"},
            "spec": {"scaleTargetRef": {"name": "engine"}, "triggers": []},  # kind defaults to Deployment
        },
    )

    def both_found() -> Mapping[ScaleRef, Sequence[str]] | None:
        found = asyncio.run(kube.find_scale_owners(namespace=namespace, refs=(DEPLOYMENT, other)))
        return found if len(found[DEPLOYMENT]) == 2 else None

    owners = wait_until(both_found, what="both owners found")
    assert sorted(owners[DEPLOYMENT]) == ["HorizontalPodAutoscaler/engine-hpa", "ScaledObject/engine-so"]
    assert owners[other] == []


def test_conflict_from_a_concurrent_writer_is_retried_on_a_fresh_read(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    op.apply(kubectl, namespace, op.deployment("engine", replicas=1, role="decode"))
    api = kube_client.build_api_client(kubeconfig=dev_cluster.kubeconfig)
    send = rest.request_json
    seen: list[tuple[str, int, int | None]] = []  # (method, status, spec.replicas answered)

    def with_a_writer_in_between(api_client: Any, *, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if method == "PUT" and not any(m == "PUT" for m, _, _ in seen):
            # Someone else scales the Deployment after the operator read /scale and before it writes.
            kubectl.run("scale", "deployment", "engine", "--replicas=4", f"--namespace={namespace}")
        try:
            answer = send(api_client, method=method, path=path, **kwargs)
        except errors.ConflictError:
            seen.append((method, 409, None))
            raise
        if path.endswith("/scale"):
            seen.append((method, 200, int(answer["spec"]["replicas"])))
        return answer

    monkeypatch.setattr(rest, "request_json", with_a_writer_in_between)
    try:
        written = kube_scale.write_scale(
            api, discovery.Discovery(api), namespace=namespace, ref=DEPLOYMENT, replicas=3, field_manager="tokenscale"
        )
    finally:
        api.close()
    # The API server refused the write carrying the stale resourceVersion; the retry read the other writer's 4
    # and wrote 3 over it. (The Deployment controller, updating the object's status after the scale, may make
    # one more retry meet a 409 too: a second real concurrent writer.)
    assert seen[:3] == [("GET", 200, 1), ("PUT", 409, None), ("GET", 200, 4)]
    assert seen[-1] == ("PUT", 200, 3)
    assert [status for method, status, _ in seen if method == "PUT"].count(409) <= kube_scale.DEFAULT_CONFLICT_RETRIES
    assert written.spec_replicas == 3
    assert op.spec_replicas(kubectl, namespace, "engine") == 3
