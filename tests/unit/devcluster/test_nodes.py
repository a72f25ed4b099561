"""Fake GPU nodes: a regular switch tree, loopback addresses outside the pod range, the GPU capacity in status."""

from __future__ import annotations

import ipaddress

import pytest

from tokenscale.devcluster import nodes

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_PODS = ipaddress.ip_network(nodes.POD_CIDR)


def test_pod_cidr_is_loopback() -> None:
    assert _PODS.subnet_of(_LOOPBACK)


@pytest.mark.parametrize("count", [pytest.param(1, id="one"), pytest.param(9, id="nine"), pytest.param(250, id="max")])
def test_generated_nodes_have_distinct_loopback_ips_outside_the_pod_range(count: int) -> None:
    generated = nodes.fake_gpu_nodes(count)
    ips = [ipaddress.ip_address(node.internal_ip) for node in generated]

    assert len({node.name for node in generated}) == count
    assert len(set(ips)) == count
    assert all(ip in _LOOPBACK and ip not in _PODS for ip in ips)


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
        pytest.param("127.1.0.9", id="inside-the-pod-range"),
        pytest.param("::1", id="ipv6"),
    ],
)
def test_node_ip_outside_loopback_or_inside_pod_range_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        nodes.FakeNode(name="n", internal_ip=address)


def test_manifest_carries_gpu_capacity_labels_addresses_and_the_kwok_annotation() -> None:
    node = nodes.FakeNode(name="gpu-a", internal_ip="127.0.9.1", gpu_count=4, gpu_product="NVIDIA-A100-SXM4-80GB")

    manifest = nodes.node_manifest(node)

    assert manifest["metadata"]["annotations"] == {nodes.KWOK_NODE_ANNOTATION[0]: nodes.KWOK_NODE_ANNOTATION[1]}
    assert manifest["metadata"]["labels"][nodes.GPU_PRODUCT_LABEL] == "NVIDIA-A100-SXM4-80GB"
    assert manifest["status"]["capacity"][nodes.GPU_RESOURCE] == "4"
    assert manifest["status"]["allocatable"] == manifest["status"]["capacity"]
    assert {"type": "InternalIP", "address": "127.0.9.1"} in manifest["status"]["addresses"]
    assert "podCIDR" not in manifest["spec"]
