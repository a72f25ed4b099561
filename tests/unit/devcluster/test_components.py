"""Component command lines: every listener and every URL on 127.0.0.1, pod and service ranges in 127.0.0.0/8."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tokenscale.devcluster import components, layout, pki, podranges
from tokenscale.devcluster.binaries import Binaries

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_PORTS = components.Ports(etcd_client=1, etcd_peer=2, apiserver=3, controller_manager=4, scheduler=5, kwok=6)
_POD_CIDR = "127.16.0.0/16"  # a range other than the default, as a cluster gets when another holds the default
# An IPv4 literal anywhere in a flag value: inside a URL, host:port or a CIDR.
_IPV4 = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def _argvs(tmp_path: Path, *, extra_args: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    return components.component_argvs(
        binaries=Binaries(tmp_path / "bin"),
        layout=layout.ClusterLayout(tmp_path / "home"),
        certs=pki.Pki.at(tmp_path / "pki"),
        ports=_PORTS,
        pod_cidr=_POD_CIDR,
        extra_args=extra_args,
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


def test_kwok_hands_out_pod_ips_from_the_clusters_range(tmp_path: Path) -> None:
    assert _flag(_argvs(tmp_path)["kwok"], "cidr") == _POD_CIDR


def test_service_range_is_loopback_and_no_pod_range(tmp_path: Path) -> None:
    services = ipaddress.ip_network(_flag(_argvs(tmp_path)["kube-apiserver"], "service-cluster-ip-range"))

    assert services.subnet_of(_LOOPBACK)
    assert not any(services.overlaps(ipaddress.ip_network(pods)) for pods in podranges.CANDIDATE_POD_CIDRS)


def test_apiserver_authorizes_with_rbac_and_writes_no_loopback_endpoints(tmp_path: Path) -> None:
    apiserver = _argvs(tmp_path)["kube-apiserver"]

    assert _flag(apiserver, "authorization-mode") == "RBAC"
    assert _flag(apiserver, "endpoint-reconciler-type") == "none"
    assert _flag(apiserver, "advertise-address") == "127.0.0.1"


def test_etcd_peer_url_is_explicit_so_clusters_side_by_side_do_not_collide(tmp_path: Path) -> None:
    etcd = _argvs(tmp_path)["etcd"]
    assert _flag(etcd, "listen-peer-urls") == f"http://127.0.0.1:{_PORTS.etcd_peer}"


@pytest.mark.parametrize("component", [pytest.param(name, id=name) for name in components.COMPONENTS])
def test_extra_args_end_the_named_components_command_line_only(tmp_path: Path, component: str) -> None:
    plain = _argvs(tmp_path)
    extra = ("--v=4", "--another=flag")

    argvs = _argvs(tmp_path, extra_args={component: extra})

    assert argvs[component] == [*plain[component], *extra]
    assert {name: argv for name, argv in argvs.items() if name != component} == {
        name: argv for name, argv in plain.items() if name != component
    }


def test_extra_args_for_an_unknown_component_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kube-proxy"):
        _argvs(tmp_path, extra_args={"kube-proxy": ("--v=4",)})
