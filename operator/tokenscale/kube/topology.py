"""The cluster's GPUs as placement sees them: per node its domain, GPU type, priority and GPUs free.

Free GPUs are what the scheduler's NodeResourcesFit would find: a node's allocatable ``nvidia.com/gpu`` (the
resource is configurable) minus what the pods bound to it request. A pod not yet bound whose node selector names
a domain already holds its GPUs there (`tokenscale.core.placement.PendingPod`), so a scale-out placed last tick is
not placed twice. Nodes whose taints the service's pods do not tolerate, and cordoned nodes, have no free GPUs
for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tokenscale.core.placement import NodeResources, PendingPod, SubgroupPriority
from tokenscale.kube import rest

__all__ = ["TopologyLabels", "pod_gpus", "read_topology", "tolerates"]

_ACTIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True, slots=True)
class TopologyLabels:
    """Which node labels and which resource describe the topology (``spec.placement``)."""

    domain_label: str
    gpu_product_label: str
    priority_label: str
    gpu_resource: str


def _quantity(value: Any) -> int:
    """A whole-number resource quantity ("8"); anything else counts as 0 (GPUs are not fractional)."""
    try:
        return int(str(value).strip())
    except ValueError:
        return 0


def pod_gpus(pod_spec: Mapping[str, Any], *, resource: str) -> int:
    """GPUs a pod spec asks for: the sum over its containers (requests, else limits, as the API server defaults
    an extended resource's request to its limit), or the largest init container's if that is more."""

    def of(container: Mapping[str, Any]) -> int:
        resources = container.get("resources") or {}
        requests = resources.get("requests") or {}
        limits = resources.get("limits") or {}
        return _quantity(requests.get(resource, limits.get(resource, 0)))

    main = sum(of(c) for c in pod_spec.get("containers") or ())
    init = max((of(c) for c in pod_spec.get("initContainers") or ()), default=0)
    return max(main, init)


def tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Whether ``tolerations`` tolerate ``taint`` (Kubernetes' rule: an empty key with Exists tolerates every
    taint; otherwise keys match, Equal compares values, and an empty effect matches every effect)."""
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        operator = toleration.get("operator") or "Equal"
        key = toleration.get("key") or ""
        if not key and operator == "Exists":
            return True
        if key != taint.get("key"):
            continue
        if operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def read_topology(
    api_client: client.ApiClient, *, labels: TopologyLabels, tolerations: Sequence[Mapping[str, Any]] = ()
) -> tuple[list[NodeResources], list[PendingPod]]:
    """Every node with its GPUs (requested by the active pods bound to it), and the pending pods committed to a
    domain by their node selector. Lists all nodes and all active pods of the cluster (two requests)."""
    nodes_document = rest.request_json(api_client, method="GET", path="/api/v1/nodes")
    pods_document = rest.request_json(
        api_client, method="GET", path="/api/v1/pods", query={"fieldSelector": _ACTIVE_PODS}
    )
    requested: dict[str, int] = {}
    pending: list[PendingPod] = []
    for pod in pods_document.get("items") or ():
        spec = pod.get("spec") or {}
        gpus = pod_gpus(spec, resource=labels.gpu_resource)
        if gpus <= 0:
            continue
        node_name = spec.get("nodeName")
        if node_name:
            requested[node_name] = requested.get(node_name, 0) + gpus
            continue
        selector = spec.get("nodeSelector") or {}
        if labels.domain_label in selector:
            pending.append(
                PendingPod(
                    domain=str(selector[labels.domain_label]),
                    gpu_product=selector.get(labels.gpu_product_label),
                    gpus=gpus,
                )
            )
    found = []
    for node in nodes_document.get("items") or ():
        metadata = node.get("metadata") or {}
        node_labels = metadata.get("labels") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        blocked = any(
            taint.get("effect") in _BLOCKING_EFFECTS and not tolerates(tolerations, taint)
            for taint in spec.get("taints") or ()
        )
        name = str(metadata.get("name", ""))
        found.append(
            NodeResources(
                name=name,
                domain=node_labels.get(labels.domain_label),
                gpu_product=node_labels.get(labels.gpu_product_label),
                allocatable_gpus=_quantity((status.get("allocatable") or {}).get(labels.gpu_resource, 0)),
                requested_gpus=requested.get(name, 0),
                priority=SubgroupPriority.parse(node_labels.get(labels.priority_label)),
                schedulable=not spec.get("unschedulable") and not blocked,
            )
        )
    return found, pending
