"""The local control plane is what it claims: fake GPU nodes on loopback, every address inside 127.0.0.0/8."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest
from tests.integration.conftest import SESSION_NODES

from tokenscale.devcluster import cluster, components, nodes
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def test_admin_kubeconfig_dials_a_loopback_ip_literal(dev_cluster: cluster.DevCluster, kubectl: Kubectl) -> None:
    server = kubectl.run("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout
    host = urlsplit(server).hostname
    assert server == dev_cluster.server_url
    assert host is not None
    assert ipaddress.ip_address(host) in _LOOPBACK


@pytest.mark.parametrize("node", [pytest.param(node, id=node.name) for node in SESSION_NODES])
def test_fake_gpu_node_is_ready_with_its_gpus_labels_and_loopback_ip(kubectl: Kubectl, node: nodes.FakeNode) -> None:
    stored = kubectl.get_json("node", node.name)
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    addresses = {a["type"]: a["address"] for a in stored["status"]["addresses"]}
    labels = stored["metadata"]["labels"]

    assert conditions["Ready"] == "True"
    assert stored["status"]["allocatable"][nodes.GPU_RESOURCE] == str(node.gpu_count)
    assert stored["status"]["capacity"][nodes.GPU_RESOURCE] == str(node.gpu_count)
    assert labels[nodes.GPU_PRODUCT_LABEL] == node.gpu_product
    assert labels[nodes.ZONE_LABEL] == node.zone
    assert labels[nodes.S1_SWITCH_LABEL] == node.s1_switch
    assert labels[nodes.S2_SWITCH_LABEL] == node.s2_switch
    assert addresses["InternalIP"] == node.internal_ip
    assert "podCIDR" not in stored["spec"]  # kwok would allocate pod IPs from it instead of 127.1.0.0/16


def test_service_cluster_ips_come_from_the_loopback_service_range(kubectl: Kubectl) -> None:
    service = kubectl.get_json("service", "kubernetes", "--namespace=default")
    assert ipaddress.ip_address(service["spec"]["clusterIP"]) in ipaddress.ip_network(components.SERVICE_CIDR)


def test_second_start_in_the_same_home_is_refused_and_leaves_the_cluster_running(
    dev_cluster: cluster.DevCluster,
) -> None:
    with pytest.raises(cluster.ClusterRunningError, match="already runs") as refused:
        cluster.start_cluster(home=dev_cluster.state.home, fake_nodes=SESSION_NODES, binaries=dev_cluster.binaries)
    assert "tokenscale dev-cluster down" in str(refused.value)
    assert dev_cluster.not_running() == []
