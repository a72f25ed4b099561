"""Label and resource names shared by the operator, its placement and the local control plane's fake nodes.

Node labels name a node's GPU type and its place in the network (HeteroScale's topology tree: S1 and S2 switches,
RDMA-subgroup priority; reference/algorithms.md §2.4); ``spec.placement`` defaults to these keys, and
`tokenscale.devcluster.nodes` puts them on fake nodes. The operator's own labels mark what it creates and the
pods its ratio guard withdraws.
"""

from __future__ import annotations

__all__ = [
    "DOMAIN_LABEL",
    "GPU_PRODUCT_LABEL",
    "GPU_RESOURCE",
    "GROUP_ROLE_LABEL",
    "RATIO_WITHDRAWN_LABEL",
    "RDMA_SUBGROUP_PRIORITY_LABEL",
    "S1_SWITCH_LABEL",
    "S2_SWITCH_LABEL",
    "SERVICE_LABEL",
    "VARIANT_LABEL",
    "ZONE_LABEL",
]

# -- nodes ----------------------------------------------------------------------------------------------------------

GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource a GPU pod requests (NVIDIA's device plugin)."""
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""GPU type of a node, as NVIDIA's GPU feature discovery labels it (e.g. ``NVIDIA-H100-80GB-HBM3``)."""
ZONE_LABEL = "topology.kubernetes.io/zone"
S1_SWITCH_LABEL = "topology.tokenscale.io/s1-switch"
"""The S1 (mini-pod) switch a node hangs off."""
S2_SWITCH_LABEL = "topology.tokenscale.io/s2-switch"
"""The S2 (big-pod) switch above the node's S1: a network domain where KV moves over RDMA."""
RDMA_SUBGROUP_PRIORITY_LABEL = "topology.tokenscale.io/rdma-subgroup-priority"
"""``low`` (S2 homogeneous), ``medium`` (S2 heterogeneous) or ``high`` (S1 heterogeneous)."""

# -- what the operator creates and marks -------------------------------------------------------------------------

SERVICE_LABEL = "tokenscale.io/service"
"""On a deployment group's Deployments: the DisaggregatedInferenceService they belong to."""
GROUP_ROLE_LABEL = "tokenscale.io/group-role"
"""On a deployment group's Deployments: ``prefill`` or ``decode``."""
VARIANT_LABEL = "tokenscale.io/variant"
"""On a deployment group's Deployments and pods: the role's variant they run."""
DOMAIN_LABEL = "tokenscale.io/domain"
"""On a deployment group's Deployments and pods: the network domain (the domain label's value) they are pinned to."""
RATIO_WITHDRAWN_LABEL = "tokenscale.io/ratio-withdrawn"
"""``true`` on a pod the ratio guard withdrew from routing: routers select pods without it."""
