"""The local control plane is what it claims: fake GPU nodes on loopback, every address inside 127.0.0.0/8, a pod
range no other cluster on the machine shares."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from tests.integration.conftest import ROOT, SESSION_NODES
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster, components, nodes, podranges
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
    assert "podCIDR" not in stored["spec"]  # kwok would allocate pod IPs from it instead of its --cidr


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


def test_the_cluster_claims_its_pod_range_kept_alive_by_this_process_and_kwok(dev_cluster: cluster.DevCluster) -> None:
    assert dev_cluster.state.pod_range_claim is not None
    claim = podranges.read_claim(dev_cluster.state.pod_range_claim)
    kwok = dev_cluster.state.process("kwok")

    assert dev_cluster.pod_cidr in podranges.CANDIDATE_POD_CIDRS
    assert claim is not None
    assert kwok is not None
    assert claim.pod_cidr == dev_cluster.pod_cidr
    assert claim.home == dev_cluster.state.home
    assert claim.pids == (os.getpid(), kwok.pid)


def test_a_second_cluster_started_beside_gets_a_disjoint_pod_range_and_releases_it_on_stop(
    dev_cluster: cluster.DevCluster, tmp_path: Path
) -> None:
    second = cluster.start_cluster(
        home=tmp_path / "second",
        fake_nodes=nodes.fake_gpu_nodes(1),
        binaries=dev_cluster.binaries,
        die_with_parent=True,
    )
    try:
        claim_file = second.state.pod_range_claim
        held = podranges.read_claim(claim_file) if claim_file is not None else None
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe"},
            "spec": {"containers": [{"name": "engine", "image": "vllm/vllm-openai:v0.11.0"}]},
        }
        second.kubectl.create_objects([probe], namespace="default")
        pod_ip = wait_until(
            lambda: second.kubectl.get_json("pod", "probe", "--namespace=default")["status"].get("podIP"),
            what="the second cluster's pod IP",
        )
    finally:
        second.stop()
    after_stop = podranges.read_claim(claim_file) if claim_file is not None else None

    assert not ipaddress.ip_network(second.pod_cidr).overlaps(ipaddress.ip_network(dev_cluster.pod_cidr))
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(second.pod_cidr)
    assert held is not None
    assert held.home == second.state.home
    assert after_stop is None or after_stop.home != second.state.home  # another cluster may claim it at once
    assert dev_cluster.not_running() == []


def _pinned(module_dir: str, module: str) -> str:
    go_mod = (ROOT / "tools" / module_dir / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod, re.MULTILINE)
    assert found is not None, f"{module} is not pinned in tools/{module_dir}/go.mod"
    return found.group(1)


def test_binaries_report_their_pinned_versions_and_helm_reaches_the_cluster(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl
) -> None:
    # Unstamped builds report v0.0.0-master (kubectl, apiserver) or v3.21 (helm), which breaks kubeVersion checks.
    versions = json.loads(kubectl.run("version", "--output=json").stdout)

    def helm(*args: str) -> str:
        argv = [str(dev_cluster.binaries.path("helm")), *args, f"--kubeconfig={dev_cluster.kubeconfig}"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    kubernetes = _pinned("k8s", "k8s.io/kubernetes")
    assert versions["serverVersion"]["gitVersion"] == kubernetes
    assert versions["clientVersion"]["gitVersion"] == kubernetes
    assert helm("version", "--short") == _pinned("helm", "helm.sh/helm/v3")
    assert json.loads(helm("list", "--all-namespaces", "--output=json")) == []
