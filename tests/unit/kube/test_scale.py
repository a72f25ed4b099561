"""/scale of any kind: discovery maps a kind to its resource; writes carry the resourceVersion and retry on 409."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.kube.fake_apiserver import FakeApiServer, Request, serve

from tokenscale.kube import discovery, errors, scale

APPS_V1 = {
    "kind": "APIResourceList",
    "groupVersion": "apps/v1",
    "resources": [
        {"name": "deployments", "kind": "Deployment", "namespaced": True},
        {"name": "deployments/scale", "kind": "Scale", "namespaced": True},
        {"name": "deployments/status", "kind": "Deployment", "namespaced": True},
        {"name": "controllerrevisions", "kind": "ControllerRevision", "namespaced": True},
    ],
}
SCALE_PATH = "/apis/apps/v1/namespaces/ns/deployments/decode/scale"
REF = scale.ScaleRef(api_version="apps/v1", kind="Deployment", name="decode")


def _scale_document(*, replicas: int, resource_version: str) -> dict[str, Any]:
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "decode", "namespace": "ns", "resourceVersion": resource_version},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "selector": "app=llama,role=decode"},
    }


@pytest.fixture
def server() -> FakeApiServer:
    fake = FakeApiServer()
    fake.on("GET", "/apis/apps/v1", (200, APPS_V1))
    return fake


@pytest.fixture
def api(server: FakeApiServer, tmp_path: Path) -> Iterator[Any]:
    with serve(server, tmp_path) as client:
        yield client


class _Versions:
    """A /scale whose resourceVersion moves on by itself ``conflicts`` times (another writer), then settles."""

    def __init__(self, *, conflicts: int) -> None:
        self.version = 1
        self.replicas = 2
        self.conflicts = conflicts

    def get(self, _request: Request) -> tuple[int, Any]:
        return 200, _scale_document(replicas=self.replicas, resource_version=str(self.version))

    def put(self, request: Request) -> tuple[int, Any]:
        if self.conflicts > 0 or request.body["metadata"]["resourceVersion"] != str(self.version):
            self.conflicts -= 1
            self.version += 1
            return 409, {"kind": "Status", "reason": "Conflict", "message": "the object has been modified"}
        self.replicas = request.body["spec"]["replicas"]
        self.version += 1
        return 200, _scale_document(replicas=self.replicas, resource_version=str(self.version))


def test_read_scale_reports_replicas_and_selector(server: FakeApiServer, api: Any) -> None:
    server.on("GET", SCALE_PATH, (200, _scale_document(replicas=3, resource_version="7")))
    read = scale.read_scale(api, discovery.Discovery(api), namespace="ns", ref=REF)
    assert read == scale.Scale(
        spec_replicas=3, status_replicas=3, selector="app=llama,role=decode", resource_version="7"
    )


@pytest.mark.parametrize("conflicts", [pytest.param(0, id="no-conflict"), pytest.param(2, id="two-conflicts")])
def test_write_scale_retries_conflicts_on_a_fresh_read(server: FakeApiServer, api: Any, conflicts: int) -> None:
    versions = _Versions(conflicts=conflicts)
    server.on("GET", SCALE_PATH, versions.get)
    server.on("PUT", SCALE_PATH, versions.put)
    written = scale.write_scale(api, discovery.Discovery(api), namespace="ns", ref=REF, replicas=5, field_manager="t")
    puts = [r for r in server.requests if r.method == "PUT"]
    assert written.spec_replicas == 5
    assert len(puts) == conflicts + 1
    # Each attempt carries the resourceVersion of the read just before it.
    gets_before = [r for r in server.requests if r.method == "GET" and r.path == SCALE_PATH]
    assert len(gets_before) == conflicts + 1
    assert [p.body["metadata"]["resourceVersion"] for p in puts] == [str(1 + i) for i in range(conflicts + 1)]
    assert puts[-1].query["fieldManager"] == ["t"]


def test_write_scale_gives_up_after_the_retries(server: FakeApiServer, api: Any) -> None:
    versions = _Versions(conflicts=10)
    server.on("GET", SCALE_PATH, versions.get)
    server.on("PUT", SCALE_PATH, versions.put)
    with pytest.raises(errors.ConflictError):
        scale.write_scale(
            api, discovery.Discovery(api), namespace="ns", ref=REF, replicas=5, field_manager="t", conflict_retries=2
        )
    assert len([r for r in server.requests if r.method == "PUT"]) == 3


def test_write_scale_writes_nothing_when_replicas_already_match(server: FakeApiServer, api: Any) -> None:
    server.on("GET", SCALE_PATH, (200, _scale_document(replicas=5, resource_version="3")))
    scale.write_scale(api, discovery.Discovery(api), namespace="ns", ref=REF, replicas=5, field_manager="t")
    assert [r.method for r in server.requests if r.path == SCALE_PATH] == ["GET"]


@pytest.mark.parametrize(
    ("ref", "error"),
    [
        pytest.param(
            scale.ScaleRef(api_version="apps/v1", kind="ControllerRevision", name="x"),
            errors.NotScalableError,
            id="kind-without-scale-subresource",
        ),
        pytest.param(
            scale.ScaleRef(api_version="apps/v1", kind="Rollout", name="x"), errors.NotFoundError, id="unknown-kind"
        ),
        pytest.param(
            scale.ScaleRef(api_version="example.com/v1", kind="Thing", name="x"),
            errors.NotFoundError,
            id="unknown-group",
        ),
        pytest.param(
            scale.ScaleRef(api_version="apps/v1", kind="Deployment", name="missing"),
            errors.NotFoundError,
            id="missing-object",
        ),
    ],
)
def test_read_scale_of_unscalable_or_missing_target_raises(
    api: Any, ref: scale.ScaleRef, error: type[Exception]
) -> None:
    with pytest.raises(error):
        scale.read_scale(api, discovery.Discovery(api), namespace="ns", ref=ref)


def test_discovery_finds_a_custom_kind_with_scale(server: FakeApiServer, api: Any) -> None:
    server.on(
        "GET",
        "/apis/leaderworkerset.x-k8s.io/v1",
        (
            200,
            {
                "resources": [
                    {"name": "leaderworkersets", "kind": "LeaderWorkerSet", "namespaced": True},
                    {"name": "leaderworkersets/scale", "kind": "Scale", "namespaced": True},
                ]
            },
        ),
    )
    info = discovery.Discovery(api).resource(api_version="leaderworkerset.x-k8s.io/v1", kind="LeaderWorkerSet")
    assert (info.plural, info.scalable) == ("leaderworkersets", True)
    assert (
        info.object_path(namespace="ns", name="w")
        == "/apis/leaderworkerset.x-k8s.io/v1/namespaces/ns/leaderworkersets/w"
    )
