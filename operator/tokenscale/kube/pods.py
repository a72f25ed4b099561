"""The serving pods of a workload: listing them, flipping their role label, and their deletion cost.

Pods are found by the scale target's selector (the operator reads them from a watched cache,
`tokenscale.kube.podcache`; `list_pods` is the one-off list) and read for ``status.podIP`` (never through
Services: their endpoints are not the engines', and in the test cluster loopback endpoints are refused).
A conversion is recorded on the pod itself (role label and an annotation with its start time), so a
restarted operator reads its state back from the cluster.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tokenscale.kube import rest

__all__ = [
    "CONVERTED_AT_ANNOTATION",
    "DELETION_COST_ANNOTATION",
    "WITHDRAWN_AT_ANNOTATION",
    "PodInfo",
    "format_time",
    "list_pods",
    "parse_time",
    "patch_pod_metadata",
    "pod_info",
]

CONVERTED_AT_ANNOTATION = "tokenscale.io/converted-at"
"""RFC 3339 time at which the operator converted this decode pod; absent when not converted."""
WITHDRAWN_AT_ANNOTATION = "tokenscale.io/withdrawn-at"
"""RFC 3339 time at which a soft scale-in withdrew this pod; it is removed first when its workload shrinks."""
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
"""ReplicaSets delete the pods of lowest cost first (Kubernetes >= 1.22)."""


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the operator reads of one pod."""

    name: str
    pod_ip: str | None
    ready: bool
    ready_since_seconds: float | None
    """Unix time of the Ready condition's last transition (to True when ``ready``)."""
    deleting: bool
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


def format_time(unix_seconds: float) -> str:
    """RFC 3339 in UTC with microseconds, as written in annotations."""
    return datetime.datetime.fromtimestamp(unix_seconds, tz=datetime.UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> float | None:
    """Unix seconds of an RFC 3339 time; None when ``text`` is not one."""
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def pod_info(item: Mapping[str, Any]) -> PodInfo:
    """What the operator reads of a pod as the API server returns it."""
    metadata = item.get("metadata") or {}
    status = item.get("status") or {}
    ready = False
    ready_since: float | None = None
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
            transition = condition.get("lastTransitionTime")
            ready_since = parse_time(transition) if transition else None
    return PodInfo(
        name=str(metadata.get("name", "")),
        pod_ip=status.get("podIP") or None,
        ready=ready,
        ready_since_seconds=ready_since,
        deleting=metadata.get("deletionTimestamp") is not None,
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
    )


def list_pods(api_client: client.ApiClient, *, namespace: str, selector: str) -> list[PodInfo]:
    """The pods in ``namespace`` matching the label ``selector``, sorted by name.

    An empty selector would match every pod of the namespace, so it lists nothing instead.
    """
    if not selector:
        return []
    document = rest.request_json(
        api_client, method="GET", path=f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": selector}
    )
    return sorted((pod_info(item) for item in document.get("items") or ()), key=lambda pod: pod.name)


def patch_pod_metadata(
    api_client: client.ApiClient,
    *,
    namespace: str,
    name: str,
    labels: Mapping[str, str | None] | None = None,
    annotations: Mapping[str, str | None] | None = None,
) -> dict[str, Any] | None:
    """Set (or, for None values, remove) labels and annotations of one pod with a JSON merge patch.

    Returns the pod as patched (None when there was nothing to patch)."""
    metadata: dict[str, Any] = {}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    if not metadata:
        return None
    return rest.request_json(
        api_client,
        method="PATCH",
        path=f"/api/v1/namespaces/{namespace}/pods/{name}",
        body={"metadata": metadata},
        content_type=rest.JSON_MERGE_PATCH,
    )
