"""Pods come from a watched cache: after one list, a pod added, relabelled or deleted is read without another list
request (counted by the API server itself), and a watch the server ends is resumed, not listed again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration import apiserver_metrics
from tests.integration import operator_process as op
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster, nodes
from tokenscale.devcluster.kubectl import Kubectl
from tokenscale.kube import client as kube_client
from tokenscale.kube import pods as kube_pods
from tokenscale.kube.cluster import KubeCluster

pytestmark = pytest.mark.integration

SELECTOR = "app=engine"
POD_LISTS = ("LIST", "pods", "")
POD_WATCHES = ("WATCH", "pods", "")
WATCH_TIMEOUT_SECONDS = 1
"""The server ends each watch after a second, so the test sees several resumes."""


@pytest.fixture(scope="module")
def own_cluster(
    dev_cluster: cluster.DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster.DevCluster]:
    """A cluster of this module's own: the API server counts requests cluster-wide, and on the session's cluster the
    namespace controller lists pods while it deletes earlier tests' namespaces."""
    started = cluster.start_cluster(
        home=tmp_path_factory.mktemp("pod-watch-cluster"),
        fake_nodes=nodes.fake_gpu_nodes(1),
        binaries=dev_cluster.binaries,
        die_with_parent=True,
    )
    try:
        yield started
    finally:
        started.stop()


def _kube(kubeconfig: Path) -> Iterator[KubeCluster]:
    api = kube_client.build_api_client(kubeconfig=kubeconfig)
    found = KubeCluster(api, watch_timeout_seconds=WATCH_TIMEOUT_SECONDS)
    try:
        yield found
    finally:
        found.close()
        api.close()


@pytest.fixture
def kube(dev_cluster: cluster.DevCluster) -> Iterator[KubeCluster]:
    yield from _kube(dev_cluster.kubeconfig)


@pytest.fixture
def own_kube(own_cluster: cluster.DevCluster) -> Iterator[KubeCluster]:
    yield from _kube(own_cluster.kubeconfig)


def _read(kube: KubeCluster, namespace: str) -> list[kube_pods.PodInfo]:
    return asyncio.run(kube.list_pods(namespace=namespace, selector=SELECTOR))


def test_pod_changes_are_read_from_the_watch_without_a_list(
    own_cluster: cluster.DevCluster, own_kube: KubeCluster
) -> None:
    kube, kubectl, namespace = own_kube, own_cluster.kubectl, "watched"
    kubectl.run("create", "namespace", namespace)
    wait_until(
        lambda: kubectl.run("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
        what=f"ServiceAccount {namespace}/default",
    )
    op.apply(kubectl, namespace, op.deployment("engine", replicas=2, role="decode"))
    wait_until(lambda: len(_read(kube, namespace)) == 2, what="2 pods in the cache")
    cache = kube.pod_cache(namespace)
    assert cache.lists == 1
    before = apiserver_metrics.request_counts(kubectl)

    first = _read(kube, namespace)[0].name
    kubectl.run("label", "pod", first, "tokenscale.io/role=converted", "--overwrite", f"--namespace={namespace}")
    kubectl.run("scale", "deployment", "engine", "--replicas=3", f"--namespace={namespace}")

    def ready_roles() -> dict[str, str] | None:
        ready = {p.name: p.labels["tokenscale.io/role"] for p in _read(kube, namespace) if p.pod_ip and p.ready}
        return ready if len(ready) == 3 else None

    relabelled = wait_until(ready_roles, what="the relabel and the third Ready pod in the cache")
    assert relabelled[first] == "converted"
    assert sorted(relabelled.values()) == ["converted", "decode", "decode"]

    kubectl.run("delete", "pod", first, "--wait=false", f"--namespace={namespace}")
    wait_until(lambda: all(p.name != first or p.deleting for p in _read(kube, namespace)), what="the deletion seen")
    # Several server-side watch timeouts: each is a resume from the last resourceVersion, never a list.
    watches = cache.watches
    wait_until(lambda: cache.watches >= watches + 3, what="three resumed watches", timeout_seconds=15)
    assert len(_read(kube, namespace)) >= 3  # the ReplicaSet's replacement, and the others, still read

    requests = apiserver_metrics.difference(before, apiserver_metrics.request_counts(kubectl))
    assert cache.lists == 1
    assert requests.get(POD_LISTS, 0.0) == 0.0, requests
    assert requests.get(POD_WATCHES, 0.0) >= 3


def test_own_patch_is_read_back_at_once(kube: KubeCluster, kubectl: Kubectl, namespace: str) -> None:
    op.apply(kubectl, namespace, op.deployment("engine", replicas=1, role="decode"))
    pod = wait_until(lambda: _read(kube, namespace), what="the pod in the cache")[0]
    asyncio.run(kube.patch_pod(namespace=namespace, name=pod.name, labels={"tokenscale.io/role": "converted"}))
    # No wait: the patch's answer is in the cache before the watch delivers the same change.
    assert _read(kube, namespace)[0].labels["tokenscale.io/role"] == "converted"
