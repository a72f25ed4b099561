"""What `KubeCluster` serves from memory: /scale is reused while the workload is at rest and read every tick while
it converges or after a write; HPAs are listed once per namespace for every service in it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.kube.fake_apiserver import FakeApiServer, serve
from tests.unit.kube.test_scale import APPS_V1, REF, SCALE_PATH

from tokenscale.kube.cluster import KubeCluster
from tokenscale.kube.scale import ScaleRef

AUTOSCALING_V2 = {
    "kind": "APIResourceList",
    "groupVersion": "autoscaling/v2",
    "resources": [{"name": "horizontalpodautoscalers", "kind": "HorizontalPodAutoscaler", "namespaced": True}],
}
HPA_PATH = "/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers"


def _scale(*, spec: int, status: int) -> dict[str, Any]:
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "decode", "namespace": "ns", "resourceVersion": "7"},
        "spec": {"replicas": spec},
        "status": {"replicas": status, "selector": "app=llama"},
    }


@pytest.fixture
def server() -> FakeApiServer:
    fake = FakeApiServer()
    fake.on("GET", "/apis/apps/v1", (200, APPS_V1))
    fake.on("GET", "/apis/autoscaling/v2", (200, AUTOSCALING_V2))
    fake.on("GET", "/apis/keda.sh/v1alpha1", (404, {"kind": "Status", "message": "not served"}))
    return fake


@pytest.fixture
def kube(server: FakeApiServer, tmp_path: Path) -> Iterator[KubeCluster]:
    with serve(server, tmp_path) as api:
        found = KubeCluster(api, scale_ttl_seconds=60.0, owners_ttl_seconds=60.0)
        try:
            yield found
        finally:
            found.close()


def _requests(server: FakeApiServer, method: str, path: str) -> int:
    return sum(1 for r in server.requests if (r.method, r.path) == (method, path))


@pytest.mark.parametrize(
    ("spec", "status", "reads"),
    [
        pytest.param(2, 2, 1, id="at-rest-read-once"),
        pytest.param(3, 2, 3, id="converging-read-every-time"),
    ],
)
def test_scale_is_reused_only_at_rest(
    server: FakeApiServer, kube: KubeCluster, spec: int, status: int, reads: int
) -> None:
    server.on("GET", SCALE_PATH, (200, _scale(spec=spec, status=status)))
    for _ in range(3):
        assert asyncio.run(kube.read_scale(namespace="ns", ref=REF)).spec_replicas == spec
    assert _requests(server, "GET", SCALE_PATH) == reads


def test_write_makes_the_next_read_fresh(server: FakeApiServer, kube: KubeCluster) -> None:
    server.on("GET", SCALE_PATH, (200, _scale(spec=2, status=2)))
    server.on("PUT", SCALE_PATH, (200, _scale(spec=4, status=2)))
    asyncio.run(kube.read_scale(namespace="ns", ref=REF))
    asyncio.run(kube.write_scale(namespace="ns", ref=REF, replicas=4))
    server.on("GET", SCALE_PATH, (200, _scale(spec=4, status=3)))
    assert asyncio.run(kube.read_scale(namespace="ns", ref=REF)).status_replicas == 3


def test_autoscalers_are_listed_once_per_namespace_for_every_service(server: FakeApiServer, kube: KubeCluster) -> None:
    hpa = {"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "decode"}}}
    server.on("GET", HPA_PATH, (200, {"items": [hpa]}))
    other = ScaleRef(api_version="apps/v1", kind="Deployment", name="prefill")
    first = asyncio.run(kube.find_scale_owners(namespace="ns", refs=(REF,)))
    second = asyncio.run(kube.find_scale_owners(namespace="ns", refs=(other,)))
    assert (first, second) == ({REF: ["HorizontalPodAutoscaler/h"]}, {other: []})
    assert _requests(server, "GET", HPA_PATH) == 1
