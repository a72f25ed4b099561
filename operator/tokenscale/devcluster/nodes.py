"""Fake GPU nodes that KWOK plays the kubelet for, and the addresses they and their pods get.

Each node is a plain v1 Node created with its status (capacity, allocatable, addresses): the scheduler's
NodeResourcesFit places ``nvidia.com/gpu`` requests against the capacity, with no device plugin. Labels give
the GPU product and the network topology (zone, S1/S2 switches and RDMA-subgroup priority, after
HeteroScale's topology tree; reference/algorithms.md §2.4) that placement reads.

Addresses stay in 127.0.0.0/8 (docs/testcluster.md): node ``i`` (from 0) has InternalIP ``127.0.<i+1>.1`` and pods
get IPs from the cluster's pod range (`POD_CIDR` unless another cluster holds it; `podranges`), so that a test
process can bind every pod IP on ``lo`` and nothing is ever dialled outside loopback.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenscale.api import labels
from tokenscale.core.placement import SubgroupPriority

__all__ = [
    "COLD_START_DELAY_ANNOTATION",
    "GPU_PRODUCT_LABEL",
    "GPU_RESOURCE",
    "KWOK_NODE_ANNOTATION",
    "POD_CIDR",
    "RDMA_SUBGROUP_PRIORITY_LABEL",
    "S1_SWITCH_LABEL",
    "S2_SWITCH_LABEL",
    "ZONE_LABEL",
    "FakeNode",
    "check_outside_pod_range",
    "fake_gpu_nodes",
    "node_manifest",
]

# The first pod range a cluster claims (podranges.CANDIDATE_POD_CIDRS); a cluster's own is `DevCluster.pod_cidr`.
POD_CIDR = "127.1.0.0/16"
# The canonical keys live in tokenscale.api.labels (the operator reads them too); re-exported for the tests.
GPU_RESOURCE = labels.GPU_RESOURCE
GPU_PRODUCT_LABEL = labels.GPU_PRODUCT_LABEL
ZONE_LABEL = labels.ZONE_LABEL
S1_SWITCH_LABEL = labels.S1_SWITCH_LABEL
S2_SWITCH_LABEL = labels.S2_SWITCH_LABEL
RDMA_SUBGROUP_PRIORITY_LABEL = labels.RDMA_SUBGROUP_PRIORITY_LABEL
# kwok manages exactly the nodes with this annotation (--manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# Read by the pod-ready stage (stages/pod-ready.yaml): a Go duration a pod waits, Running, before it is Ready.
COLD_START_DELAY_ANNOTATION = "sim.tokenscale.io/cold-start-delay"

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_MAX_NODES = 250
_RDMA_PRIORITIES = tuple(priority.name.lower() for priority in SubgroupPriority)


@dataclass(frozen=True)
class FakeNode:
    """One fake GPU node. The defaults describe an 8×H100 server (DGX H100: 2×56 cores, 2 TiB)."""

    name: str
    internal_ip: str
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"
    gpu_count: int = 8
    zone: str = "zone-a"
    s1_switch: str = "s1-0"
    s2_switch: str = "s2-0"
    rdma_subgroup_priority: str = "low"
    cpu_cores: int = 112
    memory_gibibytes: int = 2048
    max_pods: int = 110

    def __post_init__(self) -> None:
        # Outside the pod range too, but that range is the cluster's: `check_outside_pod_range` at start.
        address = ipaddress.ip_address(self.internal_ip)
        if address not in _LOOPBACK:
            raise ValueError(f"node {self.name}: InternalIP {address} must be in 127.0.0.0/8")
        if self.gpu_count < 0:
            raise ValueError(f"node {self.name}: gpu_count must be >= 0, not {self.gpu_count}")
        if self.rdma_subgroup_priority not in _RDMA_PRIORITIES:
            raise ValueError(f"node {self.name}: rdma_subgroup_priority must be one of {', '.join(_RDMA_PRIORITIES)}")


def check_outside_pod_range(fake_nodes: Sequence[FakeNode], *, pod_cidr: str) -> None:
    """Raise ValueError naming the first node whose InternalIP is inside ``pod_cidr``, the cluster's pod range
    (kwok could give that address to a pod). 127.0.0.0/16, where `fake_gpu_nodes` puts them, is in no pod range."""
    pods = ipaddress.ip_network(pod_cidr)
    for node in fake_nodes:
        if ipaddress.ip_address(node.internal_ip) in pods:
            raise ValueError(f"node {node.name}: InternalIP {node.internal_ip} is inside the pod range {pod_cidr}")


def fake_gpu_nodes(
    count: int,
    *,
    gpu_product: str = "NVIDIA-H100-80GB-HBM3",
    gpus_per_node: int = 8,
    nodes_per_s1_switch: int = 2,
    s1_switches_per_s2_switch: int = 2,
) -> list[FakeNode]:
    """``count`` identical GPU nodes ``gpu-node-<i>`` in a regular two-level switch tree.

    Node ``i`` hangs off S1 switch ``i // nodes_per_s1_switch`` and S2 switch
    ``i // (nodes_per_s1_switch · s1_switches_per_s2_switch)``; each S2 domain is its own zone
    (``zone-a``, ``zone-b``, …). Every node is in a homogeneous S2, so its RDMA-subgroup priority is low.
    """
    if not 1 <= count <= _MAX_NODES:
        raise ValueError(f"node count must be within 1..{_MAX_NODES}, not {count}")
    if nodes_per_s1_switch < 1 or s1_switches_per_s2_switch < 1:
        raise ValueError("switch fan-outs must be at least 1")
    per_s2 = nodes_per_s1_switch * s1_switches_per_s2_switch
    return [
        FakeNode(
            name=f"gpu-node-{i}",
            internal_ip=f"127.0.{i + 1}.1",
            gpu_product=gpu_product,
            gpu_count=gpus_per_node,
            zone=f"zone-{chr(ord('a') + (i // per_s2) % 26)}",
            s1_switch=f"s1-{i // nodes_per_s1_switch}",
            s2_switch=f"s2-{i // per_s2}",
        )
        for i in range(count)
    ]


def node_manifest(node: FakeNode) -> dict[str, Any]:
    """The v1 Node object, status included (the node strategy accepts status on create)."""
    resources = {
        "cpu": str(node.cpu_cores),
        "memory": f"{node.memory_gibibytes}Gi",
        "pods": str(node.max_pods),
        GPU_RESOURCE: str(node.gpu_count),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "annotations": {KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1]},
            "labels": {
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": node.name,
                "type": "kwok",
                GPU_PRODUCT_LABEL: node.gpu_product,
                ZONE_LABEL: node.zone,
                S1_SWITCH_LABEL: node.s1_switch,
                S2_SWITCH_LABEL: node.s2_switch,
                RDMA_SUBGROUP_PRIORITY_LABEL: node.rdma_subgroup_priority,
            },
        },
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": node.internal_ip},
                {"type": "Hostname", "address": node.name},
            ],
        },
    }
