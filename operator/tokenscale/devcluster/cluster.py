"""Start, find and stop a local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
KWOK with fake GPU nodes, every listener on 127.0.0.1 on a free port (docs/testcluster.md).

A cluster lives in one directory, its *home* (`default_home` for ``tokenscale dev-cluster``, a temporary one for
the test session): ``state.json`` (ports, PIDs, paths), ``kubeconfig`` (admin), ``pki/``, ``etcd/``, ``logs/`` (one
file per component), the kwok stage config and kubectl's discovery cache. A lock file serialises ``up`` and
``down`` on one home, and `start_cluster` refuses a home whose cluster still runs. Each cluster claims a pod range
of its own at start (`podranges`, in a claims directory shared by every home) and releases it on stop.

Start-up, polled tightly so that a warm start takes a few seconds: pod range claimed → PKI (openssl, ECDSA) →
etcd and the apiserver together (the apiserver retries etcd) → apiserver ``/readyz`` → the fake nodes created →
the controller-manager, scheduler and kwok together → nodes Ready, ServiceAccount ``default/default`` present (the
controller-manager made it) and the controller-manager and scheduler ``/healthz`` OK. Teardown stops the
processes by PID in reverse order and releases the pod range.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from tokenscale.devcluster import components, kubeconfig, nodes, pki, podranges, processes
from tokenscale.devcluster.apiclient import ApiClient
from tokenscale.devcluster.binaries import Binaries, locate_binaries
from tokenscale.devcluster.kubectl import Kubectl, KubectlError
from tokenscale.devcluster.layout import ClusterLayout, default_pod_range_claims_dir
from tokenscale.devcluster.state import ClusterState

__all__ = [
    "ClusterBusyError",
    "ClusterRunningError",
    "ClusterStartError",
    "DevCluster",
    "attach_cluster",
    "start_cluster",
    "stop_cluster",
]

_POLL_SECONDS = 0.05


class ClusterRunningError(RuntimeError):
    """A cluster already runs in this home."""


class ClusterBusyError(RuntimeError):
    """Another ``up`` or ``down`` holds this home's lock."""


class ClusterStartError(RuntimeError):
    """The cluster did not become Ready; the message holds the failing component's log tail."""


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


def _release_pod_range(state: ClusterState) -> None:
    if state.pod_range_claim is not None:  # None: written before clusters claimed pod ranges
        podranges.release_pod_range(state.pod_range_claim, home=state.home)


def _stop(layout: ClusterLayout, state: ClusterState, *, popens: Mapping[int, subprocess.Popen[bytes]]) -> list[str]:
    # Call with the lock held. Logs stay until the next start in this home; etcd's data goes.
    killed = processes.stop_all(state.processes, popens=popens)
    _release_pod_range(state)
    layout.state_file.unlink(missing_ok=True)
    shutil.rmtree(layout.etcd_dir, ignore_errors=True)
    return killed


class DevCluster:
    """A running local control plane, as started by `start_cluster` or found by `attach_cluster`."""

    def __init__(
        self,
        *,
        state: ClusterState,
        binaries: Binaries,
        popens: Mapping[int, subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self.state = state
        self.binaries = binaries
        self.layout = ClusterLayout(state.home)
        self._popens = dict(popens or {})
        self.kubectl = Kubectl(
            binary=binaries.path("kubectl"),
            kubeconfig=state.kubeconfig,
            cache_dir=self.layout.kubectl_cache,
            env=components.component_env(self.layout, "kubectl"),
        )

    @property
    def kubeconfig(self) -> Path:
        return self.state.kubeconfig

    @property
    def server_url(self) -> str:
        return self.state.server_url

    @property
    def pod_cidr(self) -> str:
        """The pod range this cluster claimed: every pod IP it hands out is in it, and no other cluster's is."""
        return self.state.pod_cidr

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
            return _stop(self.layout, self.state, popens=self._popens)


class _Startup:
    """One start attempt: spawns components, polls readiness, fails fast with the log of a process that died."""

    def __init__(
        self,
        *,
        layout: ClusterLayout,
        binaries: Binaries,
        pod_range: podranges.PodRangeClaim,
        die_with_parent: bool,
        timeout_seconds: float,
        extra_args: Mapping[str, Sequence[str]],
    ) -> None:
        self.layout = layout
        self.binaries = binaries
        self.pod_range = pod_range
        self.extra_args = extra_args
        self.die_with_parent = die_with_parent
        self.started = time.monotonic()
        self.deadline = self.started + timeout_seconds
        self.started_processes: list[processes.ComponentProcess] = []
        self.popens: dict[int, subprocess.Popen[bytes]] = {}
        self.timings: dict[str, float] = {}

    def mark(self, phase: str) -> None:
        self.timings[phase] = round(time.monotonic() - self.started, 3)

    def spawn(self, name: str, argv: Sequence[str]) -> None:
        process, popen = processes.spawn(
            name,
            argv,
            log=self.layout.log(name),
            env=components.component_env(self.layout, name),
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
    pod_range_claims_dir: Path | None = None,
    extra_args: Mapping[str, Sequence[str]] | None = None,
) -> DevCluster:
    """Start a cluster in ``home`` with ``fake_nodes`` and return once it is Ready.

    The cluster claims a pod range in ``pod_range_claims_dir`` (default `default_pod_range_claims_dir`), kept
    alive by this process and kwok; every cluster that should not share pod IPs with it must use the same
    directory. Raises `ClusterRunningError` if a cluster already runs there, `ClusterBusyError` if another start
    or stop holds the home, `BinariesMissingError` (from `locate_binaries`) if the binaries are not built,
    ValueError if a node's InternalIP is inside the claimed pod range, and `ClusterStartError` if every pod range
    is taken or, with the failing component's log, if it does not become Ready in ``timeout_seconds``. With
    ``die_with_parent`` the processes end with the calling thread (test sessions). ``extra_args`` adds flags to
    the named components' command lines (`components.component_argvs`), e.g. a test's API server settings.
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
        if previous is not None:  # leftovers of a half-dead cluster
            processes.stop_all(previous.processes, grace_seconds=2.0)
            _release_pod_range(previous)
        for stale in (layout.state_file, layout.kubeconfig):
            stale.unlink(missing_ok=True)
        for stale_dir in (layout.pki_dir, layout.etcd_dir, layout.logs_dir, layout.service_accounts_dir):
            shutil.rmtree(stale_dir, ignore_errors=True)
        try:
            pod_range = podranges.claim_pod_range(
                claims_dir=pod_range_claims_dir or default_pod_range_claims_dir(), home=layout.home, pid=os.getpid()
            )
        except podranges.PodRangesExhaustedError as error:
            raise ClusterStartError(str(error)) from error
        startup = _Startup(
            layout=layout,
            binaries=found,
            pod_range=pod_range,
            die_with_parent=die_with_parent,
            timeout_seconds=timeout_seconds,
            extra_args=extra_args or {},
        )
        try:
            nodes.check_outside_pod_range(fake_nodes, pod_cidr=pod_range.pod_cidr)
            state = _start(startup, fake_nodes=fake_nodes)
        except BaseException:
            startup.abort()
            podranges.release_pod_range(pod_range.path, home=layout.home)
            raise
        layout.state_file.with_suffix(".tmp").write_text(state.to_json())
        layout.state_file.with_suffix(".tmp").replace(layout.state_file)
    return DevCluster(state=state, binaries=found, popens=startup.popens)


def _start(startup: _Startup, *, fake_nodes: Sequence[nodes.FakeNode]) -> ClusterState:
    layout = startup.layout
    started_at_unix = time.time()
    try:
        certs = pki.create_pki(layout.pki_dir)
    except (OSError, RuntimeError) as error:  # no openssl, or it failed
        raise ClusterStartError(f"making the cluster's certificates with openssl failed: {error}") from error
    ports = components.free_ports()
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
    components.write_kwok_config(layout)
    argvs = components.component_argvs(
        binaries=startup.binaries,
        layout=layout,
        certs=certs,
        ports=ports,
        pod_cidr=startup.pod_range.pod_cidr,
        extra_args=startup.extra_args,
    )
    startup.mark("pki")

    api = _admin_client(server_url, certs)
    startup.spawn("etcd", argvs["etcd"])
    startup.spawn("kube-apiserver", argvs["kube-apiserver"])
    startup.wait_for("kube-apiserver /readyz", lambda: api.get("/readyz")[0] == 200)

    # Nodes first: kubectl is quicker while the three components below are not yet starting up beside it on a
    # 2-core machine, and nothing below needs the nodes before kwok runs.
    cluster_kubectl = Kubectl(
        binary=startup.binaries.path("kubectl"),
        kubeconfig=layout.kubeconfig,
        cache_dir=layout.kubectl_cache,
        env=components.component_env(layout, "kubectl"),
    )
    try:
        cluster_kubectl.create_objects([nodes.node_manifest(node) for node in fake_nodes])
    except KubectlError as error:
        raise ClusterStartError(f"creating the fake nodes failed: {error}") from error
    startup.mark("nodes created")
    for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
        startup.spawn(name, argvs[name])
    # kwok hands out the pod IPs: its pid keeps the claim alive after the starting process (`dev-cluster up`) ends.
    kwok = next(process for process in startup.started_processes if process.name == "kwok")
    podranges.add_claim_pid(startup.pod_range, pid=kwok.pid)

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
        pod_cidr=startup.pod_range.pod_cidr,
        pod_range_claim=startup.pod_range.path,
    )


def attach_cluster(home: Path) -> DevCluster | None:
    """The cluster running in ``home``, or None if none runs there. It keeps the binaries it was started with,
    even if the pins have changed since."""
    state = _read_state(ClusterLayout(home.expanduser().resolve()))
    if state is None or not _is_up(state) or not state.processes:
        return None
    return DevCluster(state=state, binaries=Binaries(directory=state.processes[0].binary.parent))


def stop_cluster(home: Path) -> bool:
    """Stop the cluster in ``home`` (also a half-dead one); False if there was none."""
    layout = ClusterLayout(home.expanduser().resolve())
    with _locked(layout):
        state = _read_state(layout)
        if state is None:
            return False
        _stop(layout, state, popens={})
    return True
