"""API discovery: which resource serves a kind, and whether it has a /scale subresource.

A scale target is named by ``apiVersion`` and ``kind`` (``apps/v1 Deployment``, ``leaderworkerset.x-k8s.io/v1
LeaderWorkerSet``, a Dynamo ``DynamoGraphDeploymentScalingAdapter``...). The API server's discovery document
of that group version lists its resources and subresources (``deployments``, ``deployments/scale``), so any
kind with a /scale subresource works without code for it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kubernetes import client

from tokenscale.kube import errors, rest

__all__ = ["Discovery", "ResourceInfo", "api_prefix"]


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """A served resource: where its objects live and whether it can be scaled through /scale."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool
    scalable: bool

    def object_path(self, *, namespace: str, name: str) -> str:
        """Path of one object (namespaced resources only)."""
        return f"{api_prefix(self.api_version)}/namespaces/{namespace}/{self.plural}/{name}"

    def collection_path(self, *, namespace: str) -> str:
        """Path of the resource's objects in ``namespace``."""
        return f"{api_prefix(self.api_version)}/namespaces/{namespace}/{self.plural}"


def api_prefix(api_version: str) -> str:
    """``/api/v1`` for the core group (``v1``), ``/apis/<group>/<version>`` for the others."""
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


class Discovery:
    """Looks up kinds in the discovery documents of their group versions, caching what it finds.

    A kind that is missing is looked up again on the next call (its CRD may be installed later); a found
    kind is cached for the life of the process, as kubectl does between cache refreshes.
    """

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api_client = api_client
        self._found: dict[tuple[str, str], ResourceInfo] = {}
        self._lock = threading.Lock()

    def resource(self, *, api_version: str, kind: str) -> ResourceInfo:
        """The resource serving ``kind`` in ``api_version``; raises `errors.NotFoundError` if none does."""
        key = (api_version, kind)
        with self._lock:
            cached = self._found.get(key)
        if cached is not None:
            return cached
        document = rest.request_json(self._api_client, method="GET", path=api_prefix(api_version))
        names = {entry["name"] for entry in document.get("resources", [])}
        for entry in document.get("resources", []):
            if entry.get("kind") == kind and "/" not in entry["name"]:
                info = ResourceInfo(
                    api_version=api_version,
                    kind=kind,
                    plural=entry["name"],
                    namespaced=bool(entry.get("namespaced")),
                    scalable=f"{entry['name']}/scale" in names,
                )
                with self._lock:
                    self._found[key] = info
                return info
        raise errors.NotFoundError(f"no resource serves kind {kind} in {api_version}", status=404, reason="NotFound")

    def serves(self, *, api_version: str, kind: str) -> bool:
        """Whether the cluster serves ``kind`` in ``api_version`` now (e.g. whether KEDA's CRD is installed)."""
        try:
            self.resource(api_version=api_version, kind=kind)
        except errors.NotFoundError:
            return False
        return True
