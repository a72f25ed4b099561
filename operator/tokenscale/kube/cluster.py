"""The asynchronous face of the kube layer: what the controller's reconcile calls.

The Kubernetes client is synchronous; each call runs in a worker thread (`asyncio.to_thread`) so that a
slow API server never blocks the event loop that runs every service's tick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from tokenscale.kube import discovery, owners, pods, scale, status

__all__ = ["KubeCluster"]


class KubeCluster:
    """One cluster, through one API client. Implements the controller's ``Cluster`` protocol."""

    def __init__(
        self, api_client: client.ApiClient, *, field_manager: str = "tokenscale", owners_ttl_seconds: float = 10.0
    ) -> None:
        """``owners_ttl_seconds``: how long a namespace's list of HPAs/ScaledObjects is reused. A new HPA is
        noticed within this time; listing them every tick of every service would cost more than it gains."""
        self._api_client = api_client
        self._discovery = discovery.Discovery(api_client)
        self._field_manager = field_manager
        self._owners_ttl_seconds = owners_ttl_seconds
        self._owners_cache: dict[tuple[str, tuple[scale.ScaleRef, ...]], tuple[float, dict[scale.ScaleRef, list[str]]]]
        self._owners_cache = {}

    async def read_scale(self, *, namespace: str, ref: scale.ScaleRef) -> scale.Scale:
        return await asyncio.to_thread(
            scale.read_scale, self._api_client, self._discovery, namespace=namespace, ref=ref
        )

    async def write_scale(self, *, namespace: str, ref: scale.ScaleRef, replicas: int) -> scale.Scale:
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
        return await asyncio.to_thread(pods.list_pods, self._api_client, namespace=namespace, selector=selector)

    async def patch_pod(
        self,
        *,
        namespace: str,
        name: str,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> None:
        await asyncio.to_thread(
            pods.patch_pod_metadata,
            self._api_client,
            namespace=namespace,
            name=name,
            labels=labels,
            annotations=annotations,
        )

    async def find_scale_owners(
        self, *, namespace: str, refs: tuple[scale.ScaleRef, ...]
    ) -> Mapping[scale.ScaleRef, list[str]]:
        key = (namespace, refs)
        cached = self._owners_cache.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self._owners_ttl_seconds:
            return cached[1]
        found = await asyncio.to_thread(
            owners.find_scale_owners, self._api_client, self._discovery, namespace=namespace, refs=refs
        )
        self._owners_cache[key] = (now, found)
        return found

    async def patch_status(self, *, namespace: str, name: str, status_: Mapping[str, Any]) -> None:
        await asyncio.to_thread(status.patch_status, self._api_client, namespace=namespace, name=name, status=status_)
