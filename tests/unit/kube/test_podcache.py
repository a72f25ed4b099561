"""The pod cache's protocol against a scripted API server: resume from the last resourceVersion after a watch
ends, list again on 410 Gone, hold reads (raise) after a failure until a list succeeds, keep the newer of two
versions of a pod."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.kube.fake_apiserver import FakeApiServer, Request, serve

from tokenscale.kube import errors, podcache

PODS_PATH = "/api/v1/namespaces/ns/pods"


def _pod(name: str, *, role: str, resource_version: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "resourceVersion": resource_version, "labels": {"app": "llama", "role": role}},
        "status": {"podIP": "127.1.0.9"},
    }


def _pod_list(*pods: dict[str, Any], resource_version: str) -> dict[str, Any]:
    return {"kind": "PodList", "metadata": {"resourceVersion": resource_version}, "items": list(pods)}


def _events(*events: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


def _wait(condition: Any, *, what: str, timeout_seconds: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class _Script:
    """Answers the pod list and watch requests from queues; an empty watch queue answers an empty watch after a
    pause (as a server whose watch timed out with nothing to say)."""

    def __init__(self) -> None:
        self.lists: list[tuple[int, Any]] = []
        self.watches: list[tuple[int, Any]] = []
        self.lock = threading.Lock()

    def answer(self, request: Request) -> tuple[int, Any]:
        queue = self.watches if request.query.get("watch") == ["true"] else self.lists
        with self.lock:
            if queue:
                return queue.pop(0)
        time.sleep(0.2)
        return (200, b"") if queue is self.watches else (503, {"kind": "Status", "message": "unavailable"})


@pytest.fixture
def script() -> _Script:
    return _Script()


@pytest.fixture
def server(script: _Script) -> FakeApiServer:
    fake = FakeApiServer()
    fake.on("GET", PODS_PATH, script.answer)
    return fake


@pytest.fixture
def cache(server: FakeApiServer, tmp_path: Path) -> Iterator[podcache.PodCache]:
    with serve(server, tmp_path) as api:
        found = podcache.PodCache(api, namespace="ns", watch_timeout_seconds=1)
        found.start()
        try:
            yield found
        finally:
            found.stop()


def _watch_versions(server: FakeApiServer) -> list[str]:
    return [r.query["resourceVersion"][0] for r in server.requests if r.query.get("watch") == ["true"]]


def _names_and_roles(cache: podcache.PodCache) -> dict[str, str]:
    return {pod.name: pod.labels["role"] for pod in cache.pods("app=llama")}


def test_resumes_from_the_last_resource_version_without_a_list(
    script: _Script, server: FakeApiServer, cache: podcache.PodCache
) -> None:
    script.lists.append((200, _pod_list(_pod("a", role="decode", resource_version="5"), resource_version="10")))
    script.watches.append(
        (200, _events({"type": "MODIFIED", "object": _pod("a", role="converted", resource_version="15")}))
    )
    script.watches.append((200, _events({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "17"}}})))
    _wait(lambda: len(_watch_versions(server)) >= 3, what="three watches")
    assert _watch_versions(server)[:3] == ["10", "15", "17"]
    assert cache.lists == 1
    assert _names_and_roles(cache) == {"a": "converted"}


def test_watch_expired_with_410_lists_again(script: _Script, cache: podcache.PodCache) -> None:
    script.lists.append((200, _pod_list(_pod("a", role="decode", resource_version="5"), resource_version="10")))
    script.watches.append(
        (200, _events({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}))
    )
    script.lists.append(
        (
            200,
            _pod_list(
                _pod("a", role="decode", resource_version="5"),
                _pod("b", role="decode", resource_version="30"),
                resource_version="40",
            ),
        )
    )
    _wait(lambda: cache.lists == 2, what="a second list")
    assert _names_and_roles(cache) == {"a": "decode", "b": "decode"}


def test_failed_watch_holds_reads_until_a_list_succeeds(script: _Script, cache: podcache.PodCache) -> None:
    script.lists.append((200, _pod_list(_pod("a", role="decode", resource_version="5"), resource_version="10")))
    _wait(lambda: cache.synced, what="the first list")
    script.watches.insert(0, (500, {"kind": "Status", "message": "etcd is down"}))
    _wait(lambda: not cache.synced, what="the failure noticed")
    with pytest.raises(errors.CacheNotSyncedError):
        cache.pods("app=llama")
    # The list queue is empty: lists fail (503) and reads keep holding, until one succeeds.
    time.sleep(0.8)
    with pytest.raises(errors.CacheNotSyncedError):
        cache.pods("app=llama")
    script.lists.append((200, _pod_list(_pod("b", role="decode", resource_version="50"), resource_version="60")))
    _wait(lambda: cache.synced, what="synced again", timeout_seconds=15)
    assert _names_and_roles(cache) == {"b": "decode"}


@pytest.mark.parametrize(
    ("applied_version", "role"),
    [pytest.param("20", "converted", id="newer-replaces"), pytest.param("3", "decode", id="older-is-ignored")],
)
def test_applied_object_replaces_only_an_older_version(
    script: _Script, cache: podcache.PodCache, applied_version: str, role: str
) -> None:
    script.lists.append((200, _pod_list(_pod("a", role="decode", resource_version="5"), resource_version="10")))
    _wait(lambda: cache.synced, what="the first list")
    cache.apply(_pod("a", role="converted", resource_version=applied_version))
    assert _names_and_roles(cache) == {"a": role}
