"""Reading DisaggregatedInferenceServices and the pods of their targets, synchronously, for the twin and the demo.

The operator reads these through kopf and `tokenscale.kube.cluster.KubeCluster`; the twin (a simulator of the
engines, not a controller) polls them from a thread. Pods are found as the operator finds them: the target's
/scale gives the pod selector, and pods are listed by it (never through Services).
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tokenscale.api import v1alpha1
from tokenscale.kube import discovery, errors, pods, rest, scale

__all__ = ["ServiceReader"]


class ServiceReader:
    """One API client's view of services and their pods."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api_client = api_client
        self._discovery = discovery.Discovery(api_client)

    def _collection(self, namespace: str) -> str:
        return f"/apis/{v1alpha1.API_VERSION}/namespaces/{namespace}/{v1alpha1.PLURAL}"

    def list_services(self, *, namespace: str) -> list[dict[str, Any]]:
        """Every DisaggregatedInferenceService of ``namespace`` as the API server returns it (sorted by name)."""
        document = rest.request_json(self._api_client, method="GET", path=self._collection(namespace))
        items: list[dict[str, Any]] = list(document.get("items") or ())
        return sorted(items, key=lambda item: str(item.get("metadata", {}).get("name", "")))

    def read_service(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        """One DisaggregatedInferenceService, or None when it does not exist."""
        try:
            return rest.request_json(self._api_client, method="GET", path=f"{self._collection(namespace)}/{name}")
        except errors.NotFoundError:
            return None

    def target_pods(self, *, namespace: str, ref: scale.ScaleRef) -> list[pods.PodInfo]:
        """The pods of a scale target, by the selector its /scale reports; none while the target is missing
        or reports no selector."""
        try:
            found = scale.read_scale(self._api_client, self._discovery, namespace=namespace, ref=ref)
        except (errors.NotFoundError, errors.NotScalableError):
            return []
        return pods.list_pods(self._api_client, namespace=namespace, selector=found.selector)

    def close(self) -> None:
        self._api_client.close()  # type: ignore[no-untyped-call]
