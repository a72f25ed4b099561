"""One demo run: a cluster, the example service, the twin, the operator; sampled until the duration is up.

`run_demo` does, in order (docs/demo.md):

1. start the local control plane in the demo's own home (`default_home`, never the ``dev-cluster`` one), or use
   the cluster of ``kubeconfig`` (e.g. kind with KWOK nodes) and its ``pod_cidr``;
2. install the CRD, create the namespace, write the sped-up profile (`tokenscale.twin.speedup`), apply the two
   Deployments and the DisaggregatedInferenceService (`tokenscale.demo.manifests`);
3. start the twin in this process (a poller thread and one listener per pod IP) on the chosen load slice;
4. start the operator, ``python -m tokenscale run``, as a child process that may scrape only the pod range;
5. once the twin's load has started (both roles Ready), sample the twin and the service's status every
   ``sample_seconds`` until ``duration_seconds`` have passed, handing each `DemoFrame` to ``on_frame``;
6. tear down in reverse, whatever happened (also on Ctrl-C or SIGTERM): the operator (SIGTERM, then SIGKILL),
   the twin's listeners, and the cluster (or, on a cluster that is not the demo's, the namespace after the
   service, so the operator's finalizer is honoured while it still runs).

Every child process is started by `tokenscale.devcluster.processes.spawn` with ``die_with_parent`` (SIGTERM when
this process dies, even by SIGKILL) and stopped by its PID; `DemoResult.leftover_pids` lists any still alive at
the end (none, or teardown failed).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tokenscale.api import crdgen, profiles, v1alpha1
from tokenscale.demo import manifests
from tokenscale.devcluster import binaries, cluster, layout, nodes, processes
from tokenscale.devcluster.kubectl import Kubectl, KubectlError
from tokenscale.kube import client as kube_client
from tokenscale.kube import services as kube_services
from tokenscale.sim import loop, traces
from tokenscale.sim import report as sim_report
from tokenscale.twin import load as twin_load
from tokenscale.twin import speedup as twin_speedup
from tokenscale.twin.runner import Twin
from tokenscale.twin.service import ServiceSnapshot, TwinEvent

__all__ = [
    "DECODE_NAME",
    "DEFAULT_SLICES",
    "PREFILL_NAME",
    "SERVICE_NAME",
    "DecisionRow",
    "DemoFrame",
    "DemoOptions",
    "DemoResult",
    "default_home",
    "run_demo",
]

logger = logging.getLogger(__name__)

DEFAULT_SLICES: dict[str, tuple[float, float]] = {
    # (start seconds, rate scale) per bundled trace, chosen by simulation (docs/demo.md "The load"):
    # azure-code from 810 s is 40 s of quiet, then a burst peaking at 70k prompt tokens/s (about 2.5 prefillers'
    # worth) for 20 s, a tail, two minutes of quiet (scale-in), and a second, smaller burst at +270 s.
    "azure-code": (810.0, 1.0),
    # azure-conv is steady (5-9k prompt tokens/s); at 4x its rate the first minutes need a second prefiller.
    "azure-conv": (0.0, 4.0),
}

PREFILL_NAME = "llama-prefill"
DECODE_NAME = "llama-decode"
SERVICE_NAME = "llama"


def default_home() -> Path:
    """``<cache>/demo-cluster``: the demo's own cluster home, beside (never) the ``dev-cluster`` one."""
    return layout.cache_root() / "demo-cluster"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What `tokenscale demo` runs (its flags)."""

    trace: str = "azure-code"
    policy: str = "tokenscale"
    speedup: float = 4.0
    duration_seconds: float = 120.0
    """Wall-clock seconds of load; the slice replayed is ``duration × speedup`` simulated seconds."""
    profile: str = "llama-3.1-8b-h100"
    trace_start_seconds: float | None = None
    """Where the slice starts in the trace; None: `DEFAULT_SLICES` for a bundled trace, else 0."""
    rate_scale: float | None = None
    """Request-rate factor; None: `DEFAULT_SLICES` for a bundled trace, else 1."""
    seed: int = 0
    initial_prefill: int = 1
    initial_decode: int = 2
    max_replicas: int = 8
    report_dir: Path = Path("demo-report")
    home: Path | None = None
    """Home of the demo's own cluster; None: `default_home`."""
    kubeconfig: Path | None = None
    """Use this cluster instead of starting one (it must run KWOK fake GPU nodes handing out ``pod_cidr``)."""
    pod_cidr: str | None = None
    """The pod range of the ``kubeconfig`` cluster (127.x.0.0/16): the operator may scrape only it."""
    namespace: str = "tokenscale-demo"
    sample_seconds: float = 0.5
    fake_nodes: int = 4

    @property
    def slice_start_seconds(self) -> float:
        if self.trace_start_seconds is not None:
            return self.trace_start_seconds
        return DEFAULT_SLICES.get(self.trace, (0.0, 1.0))[0]

    @property
    def slice_rate_scale(self) -> float:
        if self.rate_scale is not None:
            return self.rate_scale
        return DEFAULT_SLICES.get(self.trace, (0.0, 1.0))[1]

    @property
    def simulated_seconds(self) -> float:
        return self.duration_seconds * self.speedup


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """A decision from the service's status, at a simulated time since the load started."""

    simulated_seconds: float
    action: str
    prefill_replicas: int
    decode_replicas: int
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class DemoFrame:
    """One sample: the twin, and the service's status as the operator wrote it (rates in simulated units)."""

    wall_seconds: float
    """Wall-clock seconds since the load started."""
    twin: ServiceSnapshot
    prefill_desired: int
    decode_desired: int
    prefill_capacity_tokens_per_second: float
    decode_capacity_tokens_per_second: float
    operator_arriving_prompt_tokens_per_second: float
    operator_arriving_decode_tokens_per_second: float
    converted_pods: tuple[str, ...]
    conditions: dict[str, str]
    """Condition type → ``status/reason``."""
    recent_decisions: tuple[DecisionRow, ...]
    recent_events: tuple[TwinEvent, ...]


@dataclass(slots=True)
class DemoResult:
    """What a run recorded, for the report."""

    options: DemoOptions
    pod_cidr: str = ""
    load_requests: int = 0
    frames: list[DemoFrame] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)
    events: list[TwinEvent] = field(default_factory=list)
    interrupted: bool = False
    error: str | None = None
    operator_exit_code: int | None = None
    operator_log: Path | None = None
    leftover_pids: list[int] = field(default_factory=list)
    started_at: str = ""
    simulator: dict[str, float] | None = None
    """The same load and spec in the simulator (simulated time: no API, scrape or tick latency), for comparison."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rfc3339_to_unix(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _wait(condition: Callable[[], bool], *, what: str, timeout_seconds: float, poll_seconds: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_seconds:g} s waiting for {what}")
        time.sleep(poll_seconds)


class _Session:
    """The resources of one run, torn down in reverse order by `close`."""

    def __init__(self, options: DemoOptions, result: DemoResult) -> None:
        self.options = options
        self.result = result
        self.own_cluster: cluster.DevCluster | None = None
        self.kubectl: Kubectl | None = None
        self.kubeconfig: Path | None = None
        self.reader: kube_services.ServiceReader | None = None
        self.twin: Twin | None = None
        self.operator: tuple[processes.ComponentProcess, subprocess.Popen[bytes]] | None = None

    # -- setup --------------------------------------------------------------------------------------------------

    def start_cluster(self) -> None:
        options = self.options
        found = binaries.locate_binaries()
        if options.kubeconfig is not None:
            if not options.pod_cidr:
                raise ValueError("--kubeconfig needs --pod-cidr: the pod range the operator may scrape")
            self.kubeconfig = options.kubeconfig
            self.result.pod_cidr = options.pod_cidr
            cache = options.report_dir / "kubectl-cache"
            self.kubectl = Kubectl(binary=found.path("kubectl"), kubeconfig=options.kubeconfig, cache_dir=cache)
            return
        home = options.home or default_home()
        cluster.stop_cluster(home)  # the demo's own home: a cluster left there by a killed demo goes
        started = cluster.start_cluster(
            home=home, fake_nodes=nodes.fake_gpu_nodes(options.fake_nodes), binaries=found, die_with_parent=True
        )
        self.own_cluster = started
        self.kubeconfig = started.kubeconfig
        self.kubectl = started.kubectl
        self.result.pod_cidr = started.pod_cidr

    def install(self, *, metrics_port: int) -> None:
        kubectl, options = self.kubectl, self.options
        assert kubectl is not None
        kubectl.run("apply", "--server-side", "-f", "-", input_text=crdgen.crd_yaml())
        crd = f"crd/{v1alpha1.PLURAL}.{v1alpha1.GROUP}"
        _wait(
            lambda: any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (kubectl.get_json(crd).get("status", {}).get("conditions") or ())
            ),
            what="the CRD to be Established",
            timeout_seconds=60,
        )
        if kubectl.run("get", "namespace", options.namespace, check=False).returncode != 0:
            kubectl.run("create", "namespace", options.namespace)
        _wait(
            lambda: (
                kubectl.run("get", "serviceaccount", "default", "-n", options.namespace, check=False).returncode == 0
            ),
            what=f"ServiceAccount {options.namespace}/default",
            timeout_seconds=60,
        )
        base = profiles.ProfileFile.model_validate(yaml.safe_load(_profile_text(options.profile)))
        fast = twin_speedup.compress_profile(base, speedup=options.speedup)
        options.report_dir.mkdir(parents=True, exist_ok=True)
        profile_path = (options.report_dir / f"{fast.name}.yaml").resolve()
        profile_path.write_text(yaml.safe_dump(fast.model_dump(by_alias=True, mode="json"), sort_keys=False))
        _, prefill_value, decode_value, _ = v1alpha1.RoleLabelSpec().resolved()
        cold_start = fast.perf.cold_start_seconds
        spec = manifests.service_spec(
            prefill=PREFILL_NAME,
            decode=DECODE_NAME,
            profile=str(profile_path),
            policy=options.policy,
            speedup=options.speedup,
            metrics_port=metrics_port,
            min_decode=min(options.initial_decode, options.max_replicas),
            max_replicas=options.max_replicas,
        )
        kubectl.apply_objects(
            [
                manifests.deployment(
                    name=PREFILL_NAME,
                    role_value=prefill_value,
                    replicas=options.initial_prefill,
                    cold_start_seconds=cold_start,
                    metrics_port=metrics_port,
                ),
                manifests.deployment(
                    name=DECODE_NAME,
                    role_value=decode_value,
                    replicas=options.initial_decode,
                    cold_start_seconds=cold_start,
                    metrics_port=metrics_port,
                ),
                manifests.service(name=SERVICE_NAME, spec=spec),
            ],
            namespace=options.namespace,
        )

    def start_twin(self, load: traces.Trace) -> Twin:
        assert self.kubeconfig is not None
        self.reader = kube_services.ServiceReader(kube_client.build_api_client(kubeconfig=self.kubeconfig))
        twin = Twin(
            source=self.reader,
            namespaces=[self.options.namespace],
            load=load,
            speedup=self.options.speedup,
            only=[SERVICE_NAME],
        )
        twin.start()
        self.twin = twin
        return twin

    def start_operator(self, *, tick_seconds: float) -> None:
        options, result = self.options, self.result
        assert self.kubeconfig is not None
        log = (options.report_dir / "operator.log").resolve()
        log.unlink(missing_ok=True)
        result.operator_log = log
        argv = [
            sys.executable,
            "-m",
            "tokenscale",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            options.namespace,
            "--allowed-cidr",
            result.pod_cidr,
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            "0",
            "--health-port",
            "0",
            "--log-format",
            "json",
            # A scrape may take at most most of a tick, so one slow pod cannot stretch the tick.
            "--scrape-timeout-seconds",
            f"{min(0.5, 0.8 * tick_seconds):g}",
            "--event-repeat-seconds",
            f"{60.0 / options.speedup:g}",
        ]
        env = {k: v for k, v in os.environ.items() if k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}}
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        self.operator = processes.spawn("operator", argv, log=log, env=env, die_with_parent=True)

    # -- teardown -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Tear everything down; each step runs even if an earlier one failed."""
        steps: list[tuple[str, Callable[[], None]]] = []
        if self.own_cluster is None and self.kubectl is not None:
            # Someone else's cluster: the service goes while the operator runs, so its finalizer is handled.
            steps.append(("delete the service", self._delete_service))
        steps += [("stop the operator", self._stop_operator), ("stop the twin", self._stop_twin)]
        if self.own_cluster is not None:
            steps.append(("stop the cluster", self._stop_cluster))
        elif self.kubectl is not None:
            steps.append(("delete the namespace", self._delete_namespace))
        for what, step in steps:
            try:
                step()
            except Exception as error:  # teardown goes on: every later step still has to run
                logger.warning("teardown: %s failed: %s", what, error)
        self.result.leftover_pids = self._leftover_pids()

    def _delete_service(self) -> None:
        assert self.kubectl is not None
        self.kubectl.run(
            "delete", v1alpha1.PLURAL, SERVICE_NAME, f"--namespace={self.options.namespace}", "--timeout=30s",
            check=False,
        )  # fmt: skip

    def _stop_operator(self) -> None:
        if self.operator is None:
            return
        process, popen = self.operator
        processes.stop_all([process], popens={process.pid: popen}, grace_seconds=10.0)
        self.result.operator_exit_code = popen.poll()

    def _stop_twin(self) -> None:
        if self.twin is not None:
            self.twin.stop()
        if self.reader is not None:
            self.reader.close()

    def _stop_cluster(self) -> None:
        assert self.own_cluster is not None
        self.own_cluster.stop()

    def _delete_namespace(self) -> None:
        assert self.kubectl is not None
        self.kubectl.run("delete", "namespace", self.options.namespace, "--wait=false", check=False)

    def _leftover_pids(self) -> list[int]:
        started: list[processes.ComponentProcess] = []
        if self.operator is not None:
            started.append(self.operator[0])
        if self.own_cluster is not None:
            started.extend(self.own_cluster.state.processes)
        return [p.pid for p in started if processes.is_running(p)]


def _profile_text(name_or_path: str) -> str:
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.is_file():
        return path.read_text()
    if name_or_path not in profiles.bundled_profile_names():
        raise ValueError(f"unknown profile {name_or_path!r}; bundled: {', '.join(profiles.bundled_profile_names())}")
    return resources.files("tokenscale.api").joinpath("data", "profiles", f"{name_or_path}.yaml").read_text()


def _decision_rows(status: dict[str, Any], *, load_start_unix: float, speedup: float) -> list[DecisionRow]:
    rows = []
    for record in status.get("lastDecisions") or ():
        rows.append(
            DecisionRow(
                simulated_seconds=(_rfc3339_to_unix(record["time"]) - load_start_unix) * speedup,
                action=str(record.get("action", "")),
                prefill_replicas=int(record.get("prefillReplicas", 0)),
                decode_replicas=int(record.get("decodeReplicas", 0)),
                reason=str(record.get("reason", "")),
                message=str(record.get("message", "")),
            )
        )
    return rows


def _frame(
    *,
    wall_seconds: float,
    snapshot: ServiceSnapshot,
    status: dict[str, Any],
    decisions: list[DecisionRow],
    events: list[TwinEvent],
    speedup: float,
) -> DemoFrame:
    velocities = status.get("velocities") or {}

    def rate(key: str) -> float:
        return twin_speedup.to_simulated_rate(float(velocities.get(key, 0.0)), speedup=speedup)

    return DemoFrame(
        wall_seconds=wall_seconds,
        twin=snapshot,
        prefill_desired=int((status.get("prefill") or {}).get("desiredReplicas", 0)),
        decode_desired=int((status.get("decode") or {}).get("desiredReplicas", 0)),
        prefill_capacity_tokens_per_second=rate("prefillTokensPerSecond"),
        decode_capacity_tokens_per_second=rate("decodeTokensPerSecond"),
        operator_arriving_prompt_tokens_per_second=rate("arrivingPromptTokensPerSecond"),
        operator_arriving_decode_tokens_per_second=rate("arrivingDecodeTokensPerSecond"),
        converted_pods=tuple(status.get("convertedPods") or ()),
        conditions={
            str(c.get("type")): f"{c.get('status')}/{c.get('reason', '')}" for c in status.get("conditions") or ()
        },
        recent_decisions=tuple(decisions[-6:]),
        recent_events=tuple(e for e in events if e.kind != "added")[-6:],
    )


def run_demo(options: DemoOptions, *, on_frame: Callable[[DemoFrame], None] = lambda _: None) -> DemoResult:
    """Run the demo (see the module doc) and return what it recorded; teardown always runs.

    A KeyboardInterrupt (Ctrl-C; the CLI turns SIGTERM into one) ends the sampling early: the result says
    ``interrupted`` and holds what was recorded. Other failures are in ``error``.
    """
    result = DemoResult(options=options, started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    try:
        load = twin_load.build_load(
            twin_load.LoadSpec(
                source=options.trace,
                start_seconds=options.slice_start_seconds,
                duration_seconds=options.simulated_seconds,
                rate_scale=options.slice_rate_scale,
                seed=options.seed,
            )
        )
    except (OSError, ValueError) as error:
        result.error = f"load: {error}"
        return result
    result.load_requests = len(load)
    session = _Session(options, result)
    try:
        tick_seconds = 1.0 / options.speedup
        session.start_cluster()
        metrics_port = _free_port()
        session.install(metrics_port=metrics_port)
        twin = session.start_twin(load)
        session.start_operator(tick_seconds=tick_seconds)
        cold_start_wall = _cold_start_seconds(options) / options.speedup
        _wait(
            lambda: any(s.load_started for s in twin.snapshots()),
            what="the first prefill and decode pods to be Ready (the load starts then)",
            timeout_seconds=60 + 2 * cold_start_wall,
        )
        _sample(session, twin, on_frame)
    except KeyboardInterrupt:
        result.interrupted = True
    except (OSError, ValueError, TimeoutError, KubectlError, cluster.ClusterStartError) as error:
        result.error = f"{type(error).__name__}: {error}"
    except binaries.BinariesMissingError as error:
        result.error = f"{error} (run `make cluster-bins`)"
    finally:
        with _teardown_signals_ignored():
            session.close()
    if not (result.error or result.interrupted):
        result.simulator = simulator_reference(options, load)
    return result


def simulator_reference(options: DemoOptions, load: traces.Trace) -> dict[str, float]:
    """``load`` through the simulator's control loop with the demo's spec at real speed and the same initial pods:
    what the twin's run would give without real time's latencies (API calls, scrapes, ticks, polls)."""
    profile = profiles.load_profile(options.profile)
    spec = manifests.service_spec(
        prefill=PREFILL_NAME,
        decode=DECODE_NAME,
        profile=options.profile,
        policy=options.policy,
        speedup=1.0,
        metrics_port=8000,
        min_decode=min(options.initial_decode, options.max_replicas),
        max_replicas=options.max_replicas,
    )
    settings = v1alpha1.parse_spec(spec).to_core(profile=profile)
    outcome = loop.run_policy(
        trace=load,
        settings=settings,
        initial_prefill=options.initial_prefill,
        initial_decode=options.initial_decode,
        horizon_seconds=options.simulated_seconds,
    )
    attained = sim_report.attainment(outcomes=outcome.outcomes, slo=settings.slo)
    return {
        "slo_attainment": attained.slo,
        "ttft_attainment": attained.ttft,
        "tpot_attainment": attained.tpot,
        "gpu_hours": outcome.gpu_seconds / 3600,
        "scale_out_events": outcome.scale_out_events,
        "scale_in_events": outcome.scale_in_events,
        "conversions": outcome.conversions,
    }


@contextlib.contextmanager
def _teardown_signals_ignored() -> Iterator[None]:
    """A second Ctrl-C (or SIGTERM) must not cut the teardown short and leave processes behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cold_start_seconds(options: DemoOptions) -> float:
    return float(yaml.safe_load(_profile_text(options.profile))["perf"]["coldStartSeconds"])


def _sample(session: _Session, twin: Twin, on_frame: Callable[[DemoFrame], None]) -> None:
    options, result = session.options, session.result
    reader = session.reader
    assert reader is not None
    service = twin.service(options.namespace, SERVICE_NAME)
    assert service is not None
    started_monotonic = time.monotonic()
    first = service.snapshot()
    load_start_unix = time.time() - first.simulated_seconds / options.speedup
    seen: dict[tuple[float, str, int, int, str], DecisionRow] = {}
    while True:
        wall = time.monotonic() - started_monotonic + first.simulated_seconds / options.speedup
        snapshot = service.snapshot()
        document = reader.read_service(namespace=options.namespace, name=SERVICE_NAME) or {}
        status = document.get("status") or {}
        for row in _decision_rows(status, load_start_unix=load_start_unix, speedup=options.speedup):
            seen.setdefault(
                (round(row.simulated_seconds, 3), row.action, row.prefill_replicas, row.decode_replicas, row.reason),
                row,
            )
        result.decisions = sorted(seen.values(), key=lambda r: r.simulated_seconds)
        result.events = list(service.events)
        frame = _frame(
            wall_seconds=wall,
            snapshot=snapshot,
            status=status,
            decisions=result.decisions,
            events=result.events,
            speedup=options.speedup,
        )
        result.frames.append(frame)
        on_frame(frame)
        operator = session.operator
        if operator is not None and operator[1].poll() is not None:
            raise OSError(f"the operator exited ({operator[1].returncode}); see {result.operator_log}")
        if wall >= options.duration_seconds:
            return
        time.sleep(options.sample_seconds)
