"""A pod watch that the API server expires (410 Gone) makes the pod cache list again, once, and the cache serves
the right pods throughout: the changes made before the expiry, every read while it lists again, and the changes
made after, on the watch that follows the new list.

The 410 is the real API server's: etcd is compacted past the resourceVersion the cache resumes from (the last
change in its namespace), and the cache's next resume is answered with an ``ERROR`` event, code 410, reason
``Expired``. The module's own cluster serves pod watches from etcd, not from the watch cache
(``--watch-cache-sizes=pods#0``): the watch cache answers a resume from memory for at least 75 s of history
(``DefaultEventFreshDuration`` in k8s.io/apiserver) whatever etcd has compacted, and it answers a resume older
than its window with the same 410 event (cacher.go: "To match the uncached watch implementation"), so the cache's
side of the protocol is the same either way. The API server's own compaction is off
(``--etcd-compaction-interval=0``): only the test compacts, when it chooses.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration import apiserver_metrics, etcd_compaction
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster, nodes
from tokenscale.devcluster.kubectl import Kubectl
from tokenscale.kube import client as kube_client
from tokenscale.kube import errors as kube_errors
from tokenscale.kube import pods as kube_pods
from tokenscale.kube.podcache import PodCache

pytestmark = pytest.mark.integration

NAMESPACE = "expiring"
APP_SELECTOR = "app=engine"
ROLE_KEY = "tokenscale.io/role"
CONVERTED_SELECTOR = f"{ROLE_KEY}=converted"
POD_LISTS = ("LIST", "pods", "")
POD_WATCHES = ("WATCH", "pods", "")
WATCH_TIMEOUT_SECONDS = 2
"""The server ends each watch after two seconds: the cache resumes soon after the compaction."""
EXPIRING_CLUSTER_ARGS = {"kube-apiserver": ("--watch-cache-sizes=pods#0", "--etcd-compaction-interval=0")}


@pytest.fixture(scope="module")
def expiring_cluster(
    dev_cluster: cluster.DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster.DevCluster]:
    """A cluster of this module's own, with pod watches served from etcd (module docstring)."""
    started = cluster.start_cluster(
        home=tmp_path_factory.mktemp("pod-watch-expiry-cluster"),
        fake_nodes=nodes.fake_gpu_nodes(1),
        binaries=dev_cluster.binaries,
        die_with_parent=True,
        extra_args=EXPIRING_CLUSTER_ARGS,
    )
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def cache(expiring_cluster: cluster.DevCluster) -> Iterator[PodCache]:
    kubectl = expiring_cluster.kubectl
    kubectl.run("create", "namespace", NAMESPACE)
    wait_until(
        lambda: kubectl.run("get", "serviceaccount", "default", "-n", NAMESPACE, check=False).returncode == 0,
        what=f"ServiceAccount {NAMESPACE}/default",
    )
    api = kube_client.build_api_client(kubeconfig=expiring_cluster.kubeconfig)
    started = PodCache(api, namespace=NAMESPACE, watch_timeout_seconds=WATCH_TIMEOUT_SECONDS)
    started.start()
    try:
        yield started
    finally:
        started.stop()
        api.close()


def _pod(name: str, *, role: str) -> dict[str, Any]:
    """A bare pod (no controller writes to it after kwok has made it Ready)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "engine", ROLE_KEY: role}},
        "spec": {"containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.11.0"}]},
    }


def _create(kubectl: Kubectl, *documents: dict[str, Any]) -> None:
    for document in documents:
        kubectl.run("create", f"--namespace={NAMESPACE}", "-f", "-", input_text=json.dumps(document))


def _relabel(kubectl: Kubectl, name: str, role: str) -> None:
    kubectl.run("label", "pod", name, f"{ROLE_KEY}={role}", "--overwrite", f"--namespace={NAMESPACE}")


def _delete(kubectl: Kubectl, name: str) -> None:
    kubectl.run("delete", "pod", name, "--wait=false", f"--namespace={NAMESPACE}")


def _roles(cache: PodCache) -> dict[str, str]:
    """Pod name -> role of the Ready pods with an IP that the cache reads for the app's selector."""
    return {p.name: p.labels[ROLE_KEY] for p in cache.pods(APP_SELECTOR) if p.pod_ip and p.ready}


def _names(pods: list[kube_pods.PodInfo]) -> list[str]:
    return [pod.name for pod in pods]


class _Reader:
    """Reads both selectors every few milliseconds in a thread of its own and keeps every read that differs from
    ``expected`` (a not-synced cache's error included), while the cache lists again."""

    def __init__(self, cache: PodCache, expected: dict[str, list[kube_pods.PodInfo]]) -> None:
        self.reads = 0
        self.wrong: list[object] = []
        self._cache, self._expected = cache, expected
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-cache-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for selector, expected in self._expected.items():
                try:
                    found = self._cache.pods(selector)
                except kube_errors.CacheNotSyncedError as error:
                    self.wrong.append(error)
                    continue
                self.reads += 1
                if found != expected:
                    self.wrong.append((selector, _names(found)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_expired_watch_lists_once_and_serves_the_right_pods_throughout(
    expiring_cluster: cluster.DevCluster, cache: PodCache, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tokenscale.kube.podcache")
    kubectl = expiring_cluster.kubectl
    wait_until(lambda: cache.synced, what="the cache's first list")
    assert cache.lists == 1
    before = apiserver_metrics.request_counts(kubectl, scope="namespace")

    # Before the expiry, on the first watch: three pods come, one is relabelled, one deleted.
    _create(kubectl, _pod("engine-a", role="decode"), _pod("engine-b", role="decode"), _pod("engine-c", role="decode"))
    wait_until(lambda: len(_roles(cache)) == 3, what="three Ready pods in the cache")
    _relabel(kubectl, "engine-b", "converted")
    _delete(kubectl, "engine-c")
    wait_until(
        lambda: (
            _names(cache.pods(APP_SELECTOR)) == ["engine-a", "engine-b"]
            and _roles(cache) == {"engine-a": "decode", "engine-b": "converted"}
        ),
        what="the relabel and the deletion in the cache",
    )
    expected = {selector: cache.pods(selector) for selector in (APP_SELECTOR, CONVERTED_SELECTOR)}
    assert _names(expected[CONVERTED_SELECTOR]) == ["engine-b"]

    # The namespace's pods are quiet now, so the cache resumes from the resourceVersion of their last change.
    # Two writes elsewhere move etcd past it, and a compaction at the newest revision expires it: the resume
    # after the current watch ends is answered 410.
    kubectl.run("create", "configmap", "expiry-marker", f"--namespace={NAMESPACE}")
    kubectl.run("label", "configmap", "expiry-marker", "step=two", f"--namespace={NAMESPACE}")
    reader = _Reader(cache, expected)
    try:
        etcd_compaction.compact(expiring_cluster, revision=etcd_compaction.current_revision(expiring_cluster))
        wait_until(lambda: cache.lists >= 2, what="the list after the expired watch", timeout_seconds=30)
        watches = cache.watches
        wait_until(lambda: cache.watches >= watches + 1, what="a watch after the new list", timeout_seconds=15)
    finally:
        reader.stop()
    expired = [r for r in caplog.records if "410 Gone" in r.getMessage()]
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(expired) == 1, [r.getMessage() for r in caplog.records]
    assert failures == []  # a 410, not a failure: no backoff, never unsynced
    assert reader.reads > 0
    assert reader.wrong == []

    # After the expiry, on the watch from the new list: a pod comes, one is relabelled, one deleted.
    _create(kubectl, _pod("engine-d", role="decode"))
    _relabel(kubectl, "engine-a", "converted")
    _delete(kubectl, "engine-b")
    wait_until(
        lambda: (
            _names(cache.pods(APP_SELECTOR)) == ["engine-a", "engine-d"]
            and _roles(cache) == {"engine-a": "converted", "engine-d": "decode"}
        ),
        what="the changes after the expiry in the cache",
    )
    assert _names(cache.pods(CONVERTED_SELECTOR)) == ["engine-a"]
    # The watch from the new list is resumed as before, without another list.
    watches = cache.watches
    wait_until(lambda: cache.watches >= watches + 2, what="two resumed watches", timeout_seconds=15)

    requests = apiserver_metrics.difference(before, apiserver_metrics.request_counts(kubectl, scope="namespace"))
    assert cache.lists == 2
    assert requests.get(POD_LISTS, 0.0) == 1.0, requests
    assert requests.get(POD_WATCHES, 0.0) >= 4, requests
