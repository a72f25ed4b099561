"""The five components of a local cluster: their ports, command lines and environment, and kwok's stage config.

Every listener binds 127.0.0.1 and every address handed to a component is in 127.0.0.0/8
(docs/testcluster.md §0): pods get IPs from the cluster's pod range (`podranges`), Services from `SERVICE_CIDR`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

from tokenscale.devcluster import nodes, pki
from tokenscale.devcluster.binaries import Binaries
from tokenscale.devcluster.layout import ClusterLayout

__all__ = [
    "COMPONENTS",
    "NODE_LEASE_SECONDS",
    "SERVICE_ACCOUNT_ISSUER",
    "SERVICE_CIDR",
    "STAGE_FILES",
    "Ports",
    "component_argvs",
    "component_env",
    "free_ports",
    "write_kwok_config",
]

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# Service ClusterIPs are inert data here (no kube-proxy, no DNS) and are never dialled; a loopback range keeps
# every address of the cluster inside 127.0.0.0/8. The apiserver accepts it (only Endpoints and EndpointSlices
# refuse loopback addresses). It sits beside the node IPs (127.0.<n>.1) and is never a pod range (podranges).
SERVICE_CIDR = "127.2.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_LEASE_SECONDS = 40
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})
STAGE_FILES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-start.yaml",
    "pod-ready.yaml",
    "pod-delete.yaml",
)


@dataclass(frozen=True)
class Ports:
    """The TCP ports of one cluster, all on 127.0.0.1."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


def free_ports() -> Ports:
    """Distinct free ports on 127.0.0.1, one per field of `Ports`.

    Every socket stays open until all are bound, so the ports differ. Another process could take a port in the
    milliseconds between closing it here and the component binding it; that start then fails with the
    component's log, and a retry picks new ports.
    """
    count = len(dataclasses.fields(Ports))
    with contextlib.ExitStack() as stack:
        found = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            found.append(int(sock.getsockname()[1]))
    return Ports(*found)


def component_argvs(
    *,
    binaries: Binaries,
    layout: ClusterLayout,
    certs: pki.Pki,
    ports: Ports,
    pod_cidr: str,
    extra_args: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, list[str]]:
    """The command line of every component, keyed by name in start order. Every listener is on 127.0.0.1; kwok
    hands out pod IPs from ``pod_cidr``. ``extra_args`` are appended to the command line of the component they
    are keyed by (a later flag overrides an earlier one in every component); an unknown name is a ValueError."""
    unknown = sorted(set(extra_args or {}) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"extra arguments for unknown components {unknown}; the components are {COMPONENTS}")
    serving = [f"--tls-cert-file={certs.serving_cert}", f"--tls-private-key-file={certs.serving_key}"]
    etcd_client = f"http://127.0.0.1:{ports.etcd_client}"
    etcd_peer = f"http://127.0.0.1:{ports.etcd_peer}"
    kubeconfig_flag = f"--kubeconfig={layout.kubeconfig}"
    argvs = {
        "etcd": [
            str(binaries.path("etcd")),
            "--name=node0",
            f"--data-dir={layout.etcd_dir}",
            f"--listen-client-urls={etcd_client}",
            f"--advertise-client-urls={etcd_client}",
            # Always set the peer URLs: the default :2380 would collide between clusters side by side.
            f"--listen-peer-urls={etcd_peer}",
            f"--initial-advertise-peer-urls={etcd_peer}",
            f"--initial-cluster=node0={etcd_peer}",
            "--unsafe-no-fsync=true",
            "--auto-compaction-retention=1",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(binaries.path("kube-apiserver")),
            f"--etcd-servers={etcd_client}",
            "--bind-address=127.0.0.1",
            # Without an advertise address the apiserver picks the default-route interface.
            "--advertise-address=127.0.0.1",
            f"--secure-port={ports.apiserver}",
            f"--cert-dir={layout.pki_dir}",
            *serving,
            f"--client-ca-file={certs.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={certs.service_account_public_key}",
            f"--service-account-signing-key-file={certs.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # The `kubernetes` Endpoints would hold 127.0.0.1, which Endpoints validation refuses; nothing needs it.
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
        ],
        "kube-controller-manager": [
            str(binaries.path("kube-controller-manager")),
            kubeconfig_flag,
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.controller_manager}",
            *serving,
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            f"--service-account-private-key-file={certs.service_account_key}",
            f"--root-ca-file={certs.ca_cert}",
            f"--cluster-signing-cert-file={certs.ca_cert}",
            f"--cluster-signing-key-file={certs.ca_key}",
            # Pod IPs come from kwok's --cidr only: no node podCIDRs (kwok would allocate from those instead).
            "--allocate-node-cidrs=false",
            "--profiling=false",
        ],
        "kube-scheduler": [
            str(binaries.path("kube-scheduler")),
            kubeconfig_flag,
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.scheduler}",
            *serving,
            "--profiling=false",
        ],
        "kwok": [
            str(binaries.path("kwok")),
            kubeconfig_flag,
            f"--config={layout.kwok_config}",
            "--manage-nodes-with-annotation-selector={}={}".format(*nodes.KWOK_NODE_ANNOTATION),
            f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
            # kwok's default pod CIDR is outside loopback; pod IPs must be bindable on lo.
            f"--cidr={pod_cidr}",
            "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{ports.kwok}",
            *serving,
        ],
    }
    for name, args in (extra_args or {}).items():
        argvs[name].extend(args)
    return argvs


def component_env(layout: ClusterLayout, component: str) -> dict[str, str]:
    # Go's HTTP client and gRPC honour proxy variables; loopback traffic must never be sent to a proxy.
    env = {key: value for key, value in os.environ.items() if key.lower() not in _PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.0/8"
    if component == "kwok":
        env["HOME"] = str(layout.kwok_home)
    return env


def write_kwok_config(layout: ClusterLayout) -> None:
    stages = resources.files("tokenscale.devcluster").joinpath("stages")
    documents = [stages.joinpath(name).read_text() for name in STAGE_FILES]
    layout.kwok_config.parent.mkdir(parents=True, exist_ok=True)
    layout.kwok_home.mkdir(parents=True, exist_ok=True)
    layout.kwok_config.write_text("\n---\n".join(documents))
