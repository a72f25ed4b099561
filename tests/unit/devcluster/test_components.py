"""Component command lines: every listener and every URL on 127.0.0.1, pod and service ranges in 127.0.0.0/8."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from tokenscale.devcluster import components, layout, nodes, pki
from tokenscale.devcluster.binaries import Binaries

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_PORTS = components.Ports(etcd_client=1, etcd_peer=2, apiserver=3, controller_manager=4, scheduler=5, kwok=6)
# An IPv4 literal anywhere in a flag value: inside a URL, host:port or a CIDR.
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def _argvs(tmp_path: Path) -> dict[str, list[str]]:
    return components.component_argvs(
        binaries=Binaries(tmp_path / "bin"),
        layout=layout.ClusterLayout(tmp_path / "home"),
        certs=pki.Pki.at(tmp_path / "pki"),
        ports=_PORTS,
    )


def _flag(argv: list[str], name: str) -> str:
    return next(arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}="))


def test_components_are_the_five_in_start_order(tmp_path: Path) -> None:
    assert tuple(_argvs(tmp_path)) == components.COMPONENTS


@pytest.mark.parametrize("component", [pytest.param(name, id=name) for name in components.COMPONENTS])
def test_every_address_in_a_command_line_is_loopback(tmp_path: Path, component: str) -> None:
    argv = _argvs(tmp_path)[component]
    addresses = [ipaddress.ip_address(found) for arg in argv for found in _IPV4.findall(arg)]

    assert addresses, "each component is told where to listen or what to dial"
    assert all(address in _LOOPBACK for address in addresses)
    assert not any("localhost" in arg or "0.0.0.0" in arg for arg in argv)


def test_pod_and_service_ranges_are_loopback_and_disjoint(tmp_path: Path) -> None:
    argvs = _argvs(tmp_path)
    pods = ipaddress.ip_network(_flag(argvs["kwok"], "cidr"))
    services = ipaddress.ip_network(_flag(argvs["kube-apiserver"], "service-cluster-ip-range"))

    assert pods == ipaddress.ip_network(nodes.POD_CIDR)
    assert pods.subnet_of(_LOOPBACK)
    assert services.subnet_of(_LOOPBACK)
    assert not pods.overlaps(services)


def test_apiserver_authorizes_with_rbac_and_writes_no_loopback_endpoints(tmp_path: Path) -> None:
    apiserver = _argvs(tmp_path)["kube-apiserver"]

    assert _flag(apiserver, "authorization-mode") == "RBAC"
    assert _flag(apiserver, "endpoint-reconciler-type") == "none"
    assert _flag(apiserver, "advertise-address") == "127.0.0.1"


def test_etcd_peer_url_is_explicit_so_clusters_side_by_side_do_not_collide(tmp_path: Path) -> None:
    etcd = _argvs(tmp_path)["etcd"]
    assert _flag(etcd, "listen-peer-urls") == f"http://127.0.0.1:{_PORTS.etcd_peer}"
