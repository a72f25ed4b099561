"""Start, find and stop a local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
KWOK with fake GPU nodes, every listener on 127.0.0.1 on a free port (docs/testcluster.md).

A cluster lives in one directory, its *home* (`default_home` for ``tokenscale dev-cluster``, a temporary one for
the test session): ``state.json`` (ports, PIDs, paths), ``kubeconfig`` (admin), ``pki/``, ``etcd/``, ``logs/`` (one
file per component), the kwok stage config and kubectl's discovery cache. A lock file serialises ``up`` and
``down`` on one home, and `start_cluster` refuses a home whose cluster still runs.

Start-up, polled tightly so that a warm start takes a few seconds: PKI (openssl, ECDSA) → etcd and the
apiserver together (the apiserver retries etcd) → apiserver ``/readyz`` → controller-manager, scheduler and kwok
together, while the fake nodes are created → nodes Ready, ServiceAccount ``default/default`` present (the
controller-manager made it) and the controller-manager and scheduler ``/healthz`` OK. Teardown stops the
processes by PID in reverse order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tokenscale.devcluster import kubeconfig, nodes, pki, processes
from tokenscale.devcluster.apiclient import ApiClient
from tokenscale.devcluster.binaries import Binaries, locate_binaries
from tokenscale.devcluster.kubectl import Kubectl
from tokenscale.devcluster.processes import ComponentProcess

__all__ = [
    "COMPONENTS",
    "SERVICE_CIDR",
    "STAGE_FILES",
    "ClusterBusyError",
    "ClusterLayout",
    "ClusterRunningError",
    "ClusterStartError",
    "ClusterState",
    "DevCluster",
    "Ports",
    "attach_cluster",
    "component_argvs",
    "default_home",
    "start_cluster",
    "stop_cluster",
]

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# Service ClusterIPs are inert data here (no kube-proxy, no DNS) and are never dialled; a loopback range keeps
# every address of the cluster inside 127.0.0.0/8. The apiserver accepts it (only Endpoints and EndpointSlices
# refuse loopback addresses). It sits beside the pod range (127.1.0.0/16) and the node IPs (127.0.<n>.1).
SERVICE_CIDR = "127.2.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
NODE_LEASE_SECONDS = 40
_POLL_SECONDS = 0.05
_PROXY_VARIABLES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})
STAGE_FILES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-start.yaml",
    "pod-ready.yaml",
    "pod-delete.yaml",
)


class ClusterRunningError(RuntimeError):
    """A cluster already runs in this home."""


class ClusterBusyError(RuntimeError):
    """Another ``up`` or ``down`` holds this home's lock."""


class ClusterStartError(RuntimeError):
    """The cluster did not become Ready; the message holds the failing component's log tail."""


def default_home() -> Path:
    """``<cache>/dev-cluster``; the cache is ``$TOKENSCALE_CACHE_DIR``, ``$XDG_CACHE_HOME/tokenscale`` or
    ``~/.cache/tokenscale``, as for the binaries."""
    cache = os.environ.get("TOKENSCALE_CACHE_DIR")
    if not cache:
        cache = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenscale")
    return Path(cache).expanduser() / "dev-cluster"


@dataclass(frozen=True)
class ClusterLayout:
    """Where each file of a cluster lives under its home."""

    home: Path

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.home / "lock"

    @property
    def pki_dir(self) -> Path:
        return self.home / "pki"

    @property
    def etcd_dir(self) -> Path:
        return self.home / "etcd"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.home / "kwok" / "stages.yaml"

    @property
    def kwok_home(self) -> Path:
        # kwok also loads ~/.kwok/kwok.yaml when it exists; its own HOME keeps a user's file out of the cluster.
        return self.home / "kwok" / "home"

    @property
    def kubectl_cache(self) -> Path:
        return self.home / "kubectl-cache"

    @property
    def service_accounts_dir(self) -> Path:
        return self.home / "serviceaccounts"

    def log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"


@dataclass(frozen=True)
class Ports:
    """The TCP ports of one cluster, all on 127.0.0.1."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


def _free_ports() -> Ports:
    # Hold every socket open until all are bound, so the ports are distinct; the kernel does not hand a port
    # just released by bind-to-0 out again at once, which keeps the race with other processes small.
    count = len(dataclasses.fields(Ports))
    with contextlib.ExitStack() as stack:
        found = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            found.append(int(sock.getsockname()[1]))
    return Ports(*found)


@dataclass(frozen=True)
class ClusterState:
    """What ``state.json`` holds: enough to use, inspect and stop a running cluster from another process."""

    home: Path
    server_url: str
    kubeconfig: Path
    ports: Ports
    processes: tuple[ComponentProcess, ...]
    nodes: tuple[str, ...]
    started_at_unix: float
    timings_seconds: Mapping[str, float]

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "home": str(self.home),
            "serverURL": self.server_url,
            "kubeconfig": str(self.kubeconfig),
            "ports": dataclasses.asdict(self.ports),
            "processes": [
                {"name": p.name, "pid": p.pid, "binary": str(p.binary), "log": str(p.log)} for p in self.processes
            ],
            "nodes": list(self.nodes),
            "startedAtUnix": self.started_at_unix,
            "timingsSeconds": dict(self.timings_seconds),
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        document = json.loads(text)
        return cls(
            home=Path(document["home"]),
            server_url=document["serverURL"],
            kubeconfig=Path(document["kubeconfig"]),
            ports=Ports(**document["ports"]),
            processes=tuple(
                ComponentProcess(name=p["name"], pid=p["pid"], binary=Path(p["binary"]), log=Path(p["log"]))
                for p in document["processes"]
            ),
            nodes=tuple(document["nodes"]),
            started_at_unix=document["startedAtUnix"],
            timings_seconds=document["timingsSeconds"],
        )

    def process(self, name: str) -> ComponentProcess | None:
        return next((p for p in self.processes if p.name == name), None)


def component_argvs(*, binaries: Binaries, layout: ClusterLayout, certs: pki.Pki, ports: Ports) -> dict[str, list[str]]:
    """The command line of every component, keyed by name in start order. Every address is on 127.0.0.1."""
    serving = [f"--tls-cert-file={certs.serving_cert}", f"--tls-private-key-file={certs.serving_key}"]
    etcd_client = f"http://127.0.0.1:{ports.etcd_client}"
    etcd_peer = f"http://127.0.0.1:{ports.etcd_peer}"
    kubeconfig_flag = f"--kubeconfig={layout.kubeconfig}"
    return {
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
            f"--cidr={nodes.POD_CIDR}",
            "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{ports.kwok}",
            *serving,
        ],
    }


def _component_env(layout: ClusterLayout, component: str) -> dict[str, str]:
    # Go's HTTP client and gRPC honour proxy variables; loopback traffic must never be sent to a proxy.
    env = {key: value for key, value in os.environ.items() if key.lower() not in _PROXY_VARIABLES}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.0/8"
    if component == "kwok":
        env["HOME"] = str(layout.kwok_home)
    return env


def _write_kwok_config(layout: ClusterLayout) -> None:
    stages = resources.files("tokenscale.devcluster").joinpath("stages")
    documents = [stages.joinpath(name).read_text() for name in STAGE_FILES]
    layout.kwok_config.parent.mkdir(parents=True, exist_ok=True)
    layout.kwok_home.mkdir(parents=True, exist_ok=True)
    layout.kwok_config.write_text("\n---\n".join(documents))


@contextlib.contextmanager
def _locked(layout: ClusterLayout) -> Iterator[None]:
    layout.home.mkdir(parents=True, exist_ok=True)
    with layout.lock_file.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ClusterBusyError(
                f"another `tokenscale dev-cluster up` or `down` is working on {layout.home}; wait for it"
            ) from None
        yield


def _read_state(layout: ClusterLayout) -> ClusterState | None:
    try:
        return ClusterState.from_json(layout.state_file.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_up(state: ClusterState) -> bool:
    apiserver = state.process("kube-apiserver")
    return apiserver is not None and processes.is_running(apiserver)


class DevCluster:
    """A running local control plane, as started by `start_cluster` or found by `attach_cluster`."""

    def __init__(
        self,
        *,
        state: ClusterState,
        binaries: Binaries,
        popens: Mapping[int, Any] | None = None,
    ) -> None:
        self.state = state
        self.binaries = binaries
        self.layout = ClusterLayout(state.home)
        self._popens = dict(popens or {})
        self.kubectl = Kubectl(
            binary=binaries.path("kubectl"),
            kubeconfig=state.kubeconfig,
            cache_dir=self.layout.kubectl_cache,
            env=_component_env(self.layout, "kubectl"),
        )

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    @property
    def server_url(self) -> str:
        return self.state.server_url

    def logs(self) -> dict[str, Path]:
        """Log file of each component."""
        return {p.name: p.log for p in self.state.processes}

    def log_tails(self, *, lines: int = 30) -> str:
        """The last ``lines`` lines of every component's log, each under a header."""
        return "\n".join(
            f"----- {name} ({path}) -----\n{processes.tail(path, lines=lines)}" for name, path in self.logs().items()
        )

    def not_running(self) -> list[str]:
        """Names of components whose process is gone."""
        return [p.name for p in self.state.processes if not processes.is_running(p)]

    def stop(self) -> list[str]:
        """Stop every component in reverse start order and forget the state; returns the ones that had to be
        killed. Logs stay in ``logs/`` until the next start in this home."""
        with _locked(self.layout):
            killed = processes.stop_all(self.state.processes, popens=self._popens)
            self.layout.state_file.unlink(missing_ok=True)
            shutil.rmtree(self.layout.etcd_dir, ignore_errors=True)
        return killed


class _Startup:
    """One start attempt: spawns components, polls readiness, fails fast with the log of a process that died."""

    def __init__(
        self, *, layout: ClusterLayout, binaries: Binaries, die_with_parent: bool, timeout_seconds: float
    ) -> None:
        self.layout = layout
        self.binaries = binaries
        self.die_with_parent = die_with_parent
        self.started = time.monotonic()
        self.deadline = self.started + timeout_seconds
        self.started_processes: list[ComponentProcess] = []
        self.popens: dict[int, Any] = {}
        self.timings: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        self.timings[phase] = round(time.monotonic() - self.started, 3)

    def spawn(self, name: str, argv: Sequence[str]) -> None:
        process, popen = processes.spawn(
            name,
            argv,
            log=self.layout.log(name),
            env=_component_env(self.layout, name),
            die_with_parent=self.die_with_parent,
        )
        self.started_processes.append(process)
        self.popens[process.pid] = popen

    def wait_for(self, what: str, condition: Callable[[], bool]) -> None:
        while not condition():
            dead = [p for p in self.started_processes if self.popens[p.pid].poll() is not None]
            if dead:
                process = dead[0]
                raise ClusterStartError(
                    f"{process.name} exited ({self.popens[process.pid].returncode}) while waiting for {what}; "
                    f"its log {process.log} ends:\n{processes.tail(process.log, lines=40)}"
                )
            if time.monotonic() > self.deadline:
                raise ClusterStartError(
                    f"timed out waiting for {what}; logs in {self.layout.logs_dir}:\n"
                    + "\n".join(
                        f"----- {p.name} -----\n{processes.tail(p.log, lines=15)}" for p in self.started_processes
                    )
                )
            time.sleep(_POLL_SECONDS)
        self.mark(what)

    def abort(self) -> None:
        processes.stop_all(self.started_processes, popens=self.popens, grace_seconds=2.0)


def _admin_client(base_url: str, certs: pki.Pki) -> ApiClient:
    return ApiClient(base_url=base_url, ca_cert=certs.ca_cert, client_cert=certs.admin_cert, client_key=certs.admin_key)


def _nodes_ready(api: ApiClient, names: Sequence[str]) -> bool:
    listing = api.get_json("/api/v1/nodes")
    if listing is None:
        return False
    ready = {
        item["metadata"]["name"]
        for item in listing.get("items", [])
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in item["status"].get("conditions", []))
    }
    return set(names) <= ready


def start_cluster(
    *,
    home: Path,
    fake_nodes: Sequence[nodes.FakeNode],
    binaries: Binaries | None = None,
    die_with_parent: bool = False,
    timeout_seconds: float = 180.0,
) -> DevCluster:
    """Start a cluster in ``home`` with ``fake_nodes`` and return once it is Ready.

    Raises `ClusterRunningError` if a cluster already runs there, `ClusterBusyError` if another start or stop
    holds the home, `BinariesMissingError` (from `locate_binaries`) if the binaries are not built, and
    `ClusterStartError` with the failing component's log if it does not become Ready in ``timeout_seconds``.
    With ``die_with_parent`` the processes end with the calling thread (test sessions).
    """
    if not fake_nodes:
        raise ValueError("a cluster needs at least one fake node")
    layout = ClusterLayout(home.expanduser().resolve())
    found = binaries or locate_binaries()
    with _locked(layout):
        previous = _read_state(layout)
        if previous is not None and _is_up(previous):
            apiserver = previous.process("kube-apiserver")
            raise ClusterRunningError(
                f"a dev cluster already runs in {layout.home} (kube-apiserver pid {apiserver.pid if apiserver else '?'}"
                f" on {previous.server_url}). Use it: export KUBECONFIG={previous.kubeconfig}; "
                "or stop it first: tokenscale dev-cluster down"
            )
        if previous is not None:
            processes.stop_all(previous.processes, grace_seconds=2.0)  # leftovers of a half-dead cluster
        for stale in (layout.state_file, layout.kubeconfig):
            stale.unlink(missing_ok=True)
        for stale_dir in (layout.pki_dir, layout.etcd_dir, layout.logs_dir, layout.service_accounts_dir):
            shutil.rmtree(stale_dir, ignore_errors=True)
        startup = _Startup(
            layout=layout, binaries=found, die_with_parent=die_with_parent, timeout_seconds=timeout_seconds
        )
        try:
            state = _start(startup, fake_nodes=fake_nodes)
        except BaseException:
            startup.abort()
            raise
        layout.state_file.with_suffix(".tmp").write_text(state.to_json())
        layout.state_file.with_suffix(".tmp").replace(layout.state_file)
    return DevCluster(state=state, binaries=found, popens=startup.popens)


def _start(startup: _Startup, *, fake_nodes: Sequence[nodes.FakeNode]) -> ClusterState:
    layout = startup.layout
    started_at_unix = time.time()
    certs = pki.create_pki(layout.pki_dir)
    ports = _free_ports()
    server_url = f"https://127.0.0.1:{ports.apiserver}"
    kubeconfig.write_kubeconfig(
        layout.kubeconfig,
        kubeconfig.kubeconfig_document(
            server_url=server_url,
            ca_cert=certs.ca_cert,
            user=pki.ADMIN_USER,
            client_cert=certs.admin_cert,
            client_key=certs.admin_key,
        ),
    )
    _write_kwok_config(layout)
    argvs = component_argvs(binaries=startup.binaries, layout=layout, certs=certs, ports=ports)
    startup.mark("pki")

    api = _admin_client(f"https://127.0.0.1:{ports.apiserver}", certs)
    startup.spawn("etcd", argvs["etcd"])
    startup.spawn("kube-apiserver", argvs["kube-apiserver"])
    startup.wait_for("kube-apiserver /readyz", lambda: api.get("/readyz")[0] == 200)

    for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
        startup.spawn(name, argvs[name])
    cluster_kubectl = Kubectl(
        binary=startup.binaries.path("kubectl"),
        kubeconfig=layout.kubeconfig,
        cache_dir=layout.kubectl_cache,
        env=_component_env(layout, "kubectl"),
    )
    cluster_kubectl.create_objects([nodes.node_manifest(node) for node in fake_nodes])
    startup.mark("nodes created")

    controller_manager = _admin_client(f"https://127.0.0.1:{ports.controller_manager}", certs)
    scheduler = _admin_client(f"https://127.0.0.1:{ports.scheduler}", certs)
    names = [node.name for node in fake_nodes]
    startup.wait_for("kube-scheduler /healthz", lambda: scheduler.get("/healthz")[0] == 200)
    startup.wait_for("kube-controller-manager /healthz", lambda: controller_manager.get("/healthz")[0] == 200)
    startup.wait_for("fake nodes Ready", lambda: _nodes_ready(api, names))
    startup.wait_for(
        "ServiceAccount default/default",
        lambda: api.get("/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
    )
    startup.mark("ready")
    return ClusterState(
        home=layout.home,
        server_url=server_url,
        kubeconfig=layout.kubeconfig,
        ports=ports,
        processes=tuple(startup.started_processes),
        nodes=tuple(names),
        started_at_unix=started_at_unix,
        timings_seconds=startup.timings,
    )


def attach_cluster(home: Path, *, binaries: Binaries | None = None) -> DevCluster | None:
    """The cluster running in ``home``, or None if none runs there."""
    state = _read_state(ClusterLayout(home.expanduser().resolve()))
    if state is None or not _is_up(state):
        return None
    return DevCluster(state=state, binaries=binaries or locate_binaries())


def stop_cluster(home: Path) -> bool:
    """Stop the cluster in ``home`` (also a half-dead one); False if there was none."""
    layout = ClusterLayout(home.expanduser().resolve())
    with _locked(layout):
        state = _read_state(layout)
        if state is None:
            return False
        processes.stop_all(state.processes)
        layout.state_file.unlink(missing_ok=True)
        shutil.rmtree(layout.etcd_dir, ignore_errors=True)
    return True
