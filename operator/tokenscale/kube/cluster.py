"""The asynchronous face of the kube layer: what the controller's reconcile calls.

The Kubernetes client is synchronous; each call runs in a worker thread (`asyncio.to_thread`) so that a
slow API server never blocks the event loop that runs every service's tick.

What a tick reads every second is served from memory, so that the API server sees requests in proportion to
what changes, not to services times ticks (measured in docs/benchmarks.md, issue 6):

- **pods**: one watched cache per namespace (`tokenscale.kube.podcache`), started by the first read of the
  namespace; the operator's own pod patches are applied to it from their answers;
- **/scale** (it cannot be watched for an arbitrary kind): reused for ``scale_ttl_seconds`` while the
  workload is at rest (spec = status replicas); read every tick while it converges and after every write
  (which itself reads afresh before it writes, `tokenscale.kube.scale.write_scale`). At rest, a change by
  someone else (``kubectl scale``) is seen up to ``scale_ttl_seconds`` late; no write is ever made from the
  cached value alone;
- **other autoscalers**: each namespace's HPAs and ScaledObjects listed once per ``owners_ttl_seconds`` for
  every service in it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client

from tokenscale.core.placement import NodeResources, PendingPod
from tokenscale.kube import deployments, discovery, owners, podcache, pods, scale, status, topology

__all__ = ["KubeCluster"]


class KubeCluster:
    """One cluster, through one API client. Implements the controller's ``Cluster`` protocol and its placement
    protocol (``tokenscale.controller.pools.PlacementCluster``)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        field_manager: str = "tokenscale",
        owners_ttl_seconds: float = 10.0,
        scale_ttl_seconds: float = 5.0,
        watch_timeout_seconds: int = 300,
        sync_timeout_seconds: float = 5.0,
    ) -> None:
        """``owners_ttl_seconds``: how long a namespace's list of HPAs/ScaledObjects is reused. A new HPA is
        noticed within this time (an HPA first acts after its own sync period, 15 s by default).
        ``scale_ttl_seconds``: how long a target's /scale is reused (see the module docstring).
        ``watch_timeout_seconds``: how long one pod watch request lasts before it is resumed.
        ``sync_timeout_seconds``: how long a pod read waits for its namespace's first list."""
        self._api_client = api_client
        self._discovery = discovery.Discovery(api_client)
        self._field_manager = field_manager
        self._owners_ttl_seconds = owners_ttl_seconds
        self._owners_cache: dict[str, tuple[float, list[owners.Autoscaler]]] = {}
        self._scale_ttl_seconds = scale_ttl_seconds
        self._scales: dict[tuple[str, scale.ScaleRef], tuple[float, scale.Scale]] = {}
        self._watch_timeout_seconds = watch_timeout_seconds
        self._sync_timeout_seconds = sync_timeout_seconds
        self._pod_caches: dict[str, tuple[podcache.PodCache, client.ApiClient]] = {}
        self._pod_caches_lock = threading.Lock()

    def close(self) -> None:
        """Stop the pod watches (the API client given is the caller's to close)."""
        with self._pod_caches_lock:
            caches, self._pod_caches = list(self._pod_caches.values()), {}
        for cache, watch_client in caches:
            cache.stop()
            watch_client.close()  # type: ignore[no-untyped-call]

    def pod_cache(self, namespace: str) -> podcache.PodCache:
        """The watched pods of ``namespace``, started on first use."""
        with self._pod_caches_lock:
            found = self._pod_caches.get(namespace)
            if found is None:
                # Its own client: a watch holds its connection, which must not be taken from the pool of the
                # requests of every tick.
                watch_client = client.ApiClient(configuration=self._api_client.configuration)
                cache = podcache.PodCache(
                    watch_client, namespace=namespace, watch_timeout_seconds=self._watch_timeout_seconds
                )
                cache.start()
                found = self._pod_caches[namespace] = (cache, watch_client)
        return found[0]

    async def read_scale(self, *, namespace: str, ref: scale.ScaleRef) -> scale.Scale:
        key = (namespace, ref)
        cached = self._scales.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._scale_ttl_seconds:
            return cached[1]
        found = await asyncio.to_thread(
            scale.read_scale, self._api_client, self._discovery, namespace=namespace, ref=ref
        )
        if found.spec_replicas == found.status_replicas:
            self._scales[key] = (now, found)
        else:
            # Converging (a write pending on the workload's side): read every tick, so the replicas reported
            # (status, metrics, alerts) follow the workload, not a value up to the TTL old.
            self._scales.pop(key, None)
        return found

    async def write_scale(self, *, namespace: str, ref: scale.ScaleRef, replicas: int) -> scale.Scale:
        # The next read is fresh: the workload is converging to what is written (or the write failed).
        self._scales.pop((namespace, ref), None)
        return await asyncio.to_thread(
            scale.write_scale,
            self._api_client,
            self._discovery,
            namespace=namespace,
            ref=ref,
            replicas=replicas,
            field_manager=self._field_manager,
        )

    async def list_pods(self, *, namespace: str, selector: str) -> list[pods.PodInfo]:
        """The pods of ``selector`` from the namespace's watched cache. Raises `errors.CacheNotSyncedError`
        (an `errors.ApiError`) while the cache cannot be trusted; a selector that does not parse is listed by
        the API server instead."""
        cache = self.pod_cache(namespace)
        deadline = time.monotonic() + self._sync_timeout_seconds
        # The namespace's first list, polled: a worker thread waiting for each service would starve the others.
        while not cache.tried and time.monotonic() < deadline:  # noqa: ASYNC110 (the cache signals from a thread)
            await asyncio.sleep(0.02)
        try:
            return cache.pods(selector)
        except ValueError:
            return await asyncio.to_thread(pods.list_pods, self._api_client, namespace=namespace, selector=selector)

    async def patch_pod(
        self,
        *,
        namespace: str,
        name: str,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> None:
        patched = await asyncio.to_thread(
            pods.patch_pod_metadata,
            self._api_client,
            namespace=namespace,
            name=name,
            labels=labels,
            annotations=annotations,
        )
        if patched is not None:
            self.pod_cache(namespace).apply(patched)  # the next tick sees the write, whatever the watch's delay

    async def find_scale_owners(
        self, *, namespace: str, refs: tuple[scale.ScaleRef, ...]
    ) -> Mapping[scale.ScaleRef, list[str]]:
        cached = self._owners_cache.get(namespace)
        now = time.monotonic()
        if cached is None or now - cached[0] >= self._owners_ttl_seconds:
            found = await asyncio.to_thread(
                owners.list_autoscalers, self._api_client, self._discovery, namespace=namespace
            )
            cached = self._owners_cache[namespace] = (now, found)
        return owners.scale_owners(cached[1], refs=refs)

    async def patch_status(self, *, namespace: str, name: str, status_: Mapping[str, Any]) -> None:
        await asyncio.to_thread(status.patch_status, self._api_client, namespace=namespace, name=name, status=status_)

    # -- placement: templates, deployment groups and the GPUs free per node ---------------------------------------

    async def read_deployment(self, *, namespace: str, name: str) -> dict[str, Any]:
        return await asyncio.to_thread(deployments.read_deployment, self._api_client, namespace=namespace, name=name)

    async def list_group_deployments(self, *, namespace: str, service: str) -> list[deployments.GroupDeployment]:
        return await asyncio.to_thread(
            deployments.list_group_deployments, self._api_client, namespace=namespace, service=service
        )

    async def create_deployment(self, *, namespace: str, body: Mapping[str, Any]) -> bool:
        return await asyncio.to_thread(deployments.create_deployment, self._api_client, namespace=namespace, body=body)

    async def delete_deployment(self, *, namespace: str, name: str) -> bool:
        return await asyncio.to_thread(deployments.delete_deployment, self._api_client, namespace=namespace, name=name)

    async def read_topology(
        self, *, labels: topology.TopologyLabels, tolerations: Sequence[Mapping[str, Any]] = ()
    ) -> tuple[list[NodeResources], list[PendingPod]]:
        return await asyncio.to_thread(topology.read_topology, self._api_client, labels=labels, tolerations=tolerations)
