"""Fake GPU nodes: a regular switch tree, loopback addresses outside every pod range, the GPU capacity in status."""

from __future__ import annotations

import ipaddress
import re

import pytest

from tokenscale.devcluster import nodes, podranges

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_POD_RANGES = [ipaddress.ip_network(cidr) for cidr in podranges.CANDIDATE_POD_CIDRS]


def test_default_pod_cidr_is_loopback_and_the_first_candidate() -> None:
    assert ipaddress.ip_network(nodes.POD_CIDR).subnet_of(_LOOPBACK)
    assert podranges.CANDIDATE_POD_CIDRS[0] == nodes.POD_CIDR


@pytest.mark.parametrize("count", [pytest.param(1, id="one"), pytest.param(9, id="nine"), pytest.param(250, id="max")])
def test_generated_nodes_have_distinct_loopback_ips_outside_every_pod_range(count: int) -> None:
    generated = nodes.fake_gpu_nodes(count)
    ips = [ipaddress.ip_address(node.internal_ip) for node in generated]

    assert len({node.name for node in generated}) == count
    assert len(set(ips)) == count
    assert all(ip in _LOOPBACK and not any(ip in pods for pods in _POD_RANGES) for ip in ips)
    for pod_cidr in podranges.CANDIDATE_POD_CIDRS:
        nodes.check_outside_pod_range(generated, pod_cidr=pod_cidr)


def test_switch_tree_groups_nodes_under_s1_and_s2_switches() -> None:
    generated = nodes.fake_gpu_nodes(8, nodes_per_s1_switch=2, s1_switches_per_s2_switch=2)

    per_s1 = {s1: [n.name for n in generated if n.s1_switch == s1] for s1 in {n.s1_switch for n in generated}}
    per_s2 = {s2: {n.s1_switch for n in generated if n.s2_switch == s2} for s2 in {n.s2_switch for n in generated}}
    assert sorted(map(len, per_s1.values())) == [2, 2, 2, 2]
    assert sorted(map(len, per_s2.values())) == [2, 2]
    assert len({n.zone for n in generated}) == len(per_s2)


@pytest.mark.parametrize("count", [pytest.param(0, id="none"), pytest.param(251, id="more-than-the-ip-plan-allows")])
def test_node_count_out_of_range_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="node count"):
        nodes.fake_gpu_nodes(count)


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("192.0.2.10", id="outside-loopback"),  # TEST-NET-1
        pytest.param("::1", id="ipv6"),
    ],
)
def test_node_ip_outside_loopback_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        nodes.FakeNode(name="n", internal_ip=address)


@pytest.mark.parametrize(
    ("address", "pod_cidr", "refused"),
    [
        pytest.param("127.1.0.9", "127.1.0.0/16", True, id="inside-the-default-range"),
        pytest.param("127.16.3.4", "127.16.0.0/16", True, id="inside-another-claimed-range"),
        pytest.param("127.1.0.9", "127.16.0.0/16", False, id="in-the-default-range-while-the-cluster-has-another"),
        pytest.param("127.0.251.1", "127.1.0.0/16", False, id="in-the-node-range"),
    ],
)
def test_node_ip_is_checked_against_the_clusters_pod_range(address: str, pod_cidr: str, refused: bool) -> None:
    fake_nodes = [*nodes.fake_gpu_nodes(2), nodes.FakeNode(name="odd", internal_ip=address)]

    if refused:
        with pytest.raises(
            ValueError, match=re.escape(f"node odd: InternalIP {address} is inside the pod range {pod_cidr}")
        ):
            nodes.check_outside_pod_range(fake_nodes, pod_cidr=pod_cidr)
    else:
        nodes.check_outside_pod_range(fake_nodes, pod_cidr=pod_cidr)


def test_manifest_carries_gpu_capacity_labels_addresses_and_the_kwok_annotation() -> None:
    node = nodes.FakeNode(name="gpu-a", internal_ip="127.0.9.1", gpu_count=4, gpu_product="NVIDIA-A100-SXM4-80GB")

    manifest = nodes.node_manifest(node)

    assert manifest["metadata"]["annotations"] == {nodes.KWOK_NODE_ANNOTATION[0]: nodes.KWOK_NODE_ANNOTATION[1]}
    assert manifest["metadata"]["labels"][nodes.GPU_PRODUCT_LABEL] == "NVIDIA-A100-SXM4-80GB"
    assert manifest["status"]["capacity"][nodes.GPU_RESOURCE] == "4"
    assert manifest["status"]["allocatable"] == manifest["status"]["capacity"]
    assert {"type": "InternalIP", "address": "127.0.9.1"} in manifest["status"]["addresses"]
    assert "podCIDR" not in manifest["spec"]
