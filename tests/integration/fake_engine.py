"""Fake engines for the operator's integration tests: every pod of a namespace gets a vLLM-format /metrics
server on its own 127.1.x.y pod IP and the spec's metrics port, with counters the test drives.

The test sets a load per workload (the pods' ``app`` label): token and request rates, queue and running
requests are totals for the workload, shared evenly by its pods (so scaling out spreads the same load, as a
router would); KV usage is per pod. Each pod's counters advance at its share in real time, so the operator's
rate windows see exactly those rates. A workload can also fail (HTTP 503): a metrics outage; or hang (each
request held unanswered until the test lets it go): a stalled engine. The fleet polls the pods of its namespace
and starts or stops servers as pods come and go (pod IPs are recycled, so a gone pod's listener is closed).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from tokenscale.kube import client as kube_client
from tokenscale.kube import pods as kube_pods

MODEL_NAME = "meta-llama/Llama-3.1-8B-Instruct"
APP_LABEL = "app"
_STALL_POLL_SECONDS = 0.02
"""How often a stalled engine's held request checks whether it may answer."""

# vLLM V1's bucket bounds (vllm/v1/metrics/loggers.py).
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
LENGTH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)


@dataclass(frozen=True)
class EngineLoad:
    """What a workload is doing (totals over its pods, but for the per-pod KV usage and latencies)."""

    prompt_tokens_per_second: float = 0.0
    generation_tokens_per_second: float = 0.0
    requests_per_second: float = 0.0
    """Requests finishing per second; each adds one observation to the length and latency histograms."""
    requests_waiting: float = 0.0
    """Waiting requests when the load is set; they then grow at ``waiting_growth_per_second``."""
    waiting_growth_per_second: float = 0.0
    requests_running: float = 0.0
    kv_cache_usage_ratio: float = 0.0
    prompt_tokens_per_request: float = 1000.0
    generation_tokens_per_request: float = 100.0
    ttft_seconds: float = 0.1
    itl_seconds: float = 0.02
    kv_cache_capacity_tokens: int = 500_000
    healthy: bool = True
    """False: /metrics answers 503 (a metrics outage)."""
    stalled: bool = False
    """True: /metrics accepts each request and answers nothing until this is False again (a hung engine); the
    held request is then answered as usual."""

    def share(self, pods: int) -> EngineLoad:
        """One pod's part of the workload's load when ``pods`` pods share it."""
        n = max(pods, 1)
        return dataclasses.replace(
            self,
            prompt_tokens_per_second=self.prompt_tokens_per_second / n,
            generation_tokens_per_second=self.generation_tokens_per_second / n,
            requests_per_second=self.requests_per_second / n,
            requests_waiting=self.requests_waiting / n,
            waiting_growth_per_second=self.waiting_growth_per_second / n,
            requests_running=self.requests_running / n,
        )


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[float] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0.0] * (len(self.bounds) + 1)

    def observe(self, value: float, count: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += count
        self.total += value * count

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, running = [], 0.0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else str(float(bound)), running))
        family = HistogramMetricFamily(name, documentation, labels=["engine", "model_name"])
        family.add_metric(["0", MODEL_NAME], cumulative, self.total)
        return family


class _Engine(Collector):
    """One pod's engine: cumulative counters advanced from the load in force since the last read."""

    def __init__(self, load: EngineLoad) -> None:
        self._lock = threading.Lock()
        self.load = load
        self._last = time.monotonic()
        self.waiting = load.requests_waiting
        self.prompt_tokens = 0.0
        self.generation_tokens = 0.0
        self.requests = 0.0
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.itl = _Histogram(ITL_BUCKETS)
        self.prompt_lengths = _Histogram(LENGTH_BUCKETS)
        self.generation_lengths = _Histogram(LENGTH_BUCKETS)
        self.closed = threading.Event()
        """Set when the engine's server shuts down: a held (stalled) request is let go."""

    def set_load(self, load: EngineLoad, *, reset_waiting: bool) -> None:
        with self._lock:
            self._advance()
            self.load = load
            if reset_waiting:
                self.waiting = load.requests_waiting

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        load = self.load
        self.prompt_tokens += load.prompt_tokens_per_second * elapsed
        self.generation_tokens += load.generation_tokens_per_second * elapsed
        self.waiting = max(0.0, self.waiting + load.waiting_growth_per_second * elapsed)
        finished = load.requests_per_second * elapsed
        self.requests += finished
        if finished > 0:
            self.ttft.observe(load.ttft_seconds, finished)
            self.itl.observe(load.itl_seconds, finished * load.generation_tokens_per_request)
            self.prompt_lengths.observe(load.prompt_tokens_per_request, finished)
            self.generation_lengths.observe(load.generation_tokens_per_request, finished)

    def collect(self) -> Iterator[Any]:
        with self._lock:
            self._advance()
            load = self.load
            labels = ["engine", "model_name"]
            for name, doc, value in (
                ("vllm:num_requests_running", "Number of requests in model execution batches.", load.requests_running),
                ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", self.waiting),
                ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", load.kv_cache_usage_ratio),
            ):
                gauge = GaugeMetricFamily(name, doc, labels=labels)
                gauge.add_metric(["0", MODEL_NAME], value)
                yield gauge
            info = GaugeMetricFamily(
                "vllm:cache_config_info",
                "Information of the LLMEngine CacheConfig",
                labels=["block_size", "num_gpu_blocks", "engine"],
            )
            info.add_metric(["16", str(load.kv_cache_capacity_tokens // 16), "0"], 1.0)
            yield info
            for name, doc, value in (
                ("vllm:prompt_tokens", "Number of prefill tokens processed.", self.prompt_tokens),
                ("vllm:generation_tokens", "Number of generation tokens processed.", self.generation_tokens),
                ("vllm:num_preemptions", "Cumulative number of preemption from the engine.", 0.0),
            ):
                counter = CounterMetricFamily(name, doc, labels=labels)
                counter.add_metric(["0", MODEL_NAME], value)
                yield counter
            success = CounterMetricFamily(
                "vllm:request_success", "Count of successfully processed requests.", labels=[*labels, "finished_reason"]
            )
            success.add_metric(["0", MODEL_NAME, "stop"], self.requests)
            yield success
            yield self.ttft.family("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.")
            yield self.itl.family("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.")
            yield self.prompt_lengths.family("vllm:request_prompt_tokens", "Number of prefill tokens processed.")
            yield self.generation_lengths.family(
                "vllm:request_generation_tokens", "Number of generation tokens processed."
            )


def _server(address: str, port: int, engine: _Engine) -> ThreadingHTTPServer:
    # Answers the scraper's ``name[]`` query as a vLLM pod does (prometheus_client's exposition renders
    # ``registry.restricted_registry(names)``); the collector names nothing up front, so the registry must
    # collect it anyway for that view not to be empty.
    registry = CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(engine)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            while engine.load.stalled and not engine.closed.wait(_STALL_POLL_SECONDS):
                pass
            if not engine.load.healthy:
                self.send_error(503, "engine unavailable")
                return
            names = parse_qs(urlsplit(self.path).query).get("name[]")
            body = generate_latest(registry if names is None else registry.restricted_registry(names))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    return server


@dataclass
class _Running:
    app: str
    pod_ip: str
    engine: _Engine
    server: ThreadingHTTPServer
    thread: threading.Thread


class FakeEngineFleet:
    """Serves /metrics for every pod with an ``app`` label in ``namespace``, on ``podIP:port``."""

    def __init__(self, *, kubeconfig: Path, namespace: str, port: int, poll_seconds: float = 0.2) -> None:
        self._api = kube_client.build_api_client(kubeconfig=kubeconfig)
        self._namespace = namespace
        self._port = port
        self._poll_seconds = poll_seconds
        self._loads: dict[str, EngineLoad] = {}
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-engine-fleet", daemon=True)

    def set_load(self, app: str, load: EngineLoad) -> None:
        """Workload ``app``'s pods (now and later) share ``load`` from now on."""
        with self._lock:
            self._loads[app] = load
            self._share(app, reset_waiting=True)

    def _share(self, app: str, *, reset_waiting: bool) -> None:
        members = [running for running in self._running.values() if running.app == app]
        load = self._loads.get(app, EngineLoad())
        for running in members:
            running.engine.set_load(load.share(len(members)), reset_waiting=reset_waiting)

    def update_load(self, app: str, **changes: Any) -> None:
        """Change some fields of workload ``app``'s load."""
        self.set_load(app, dataclasses.replace(self._loads.get(app, EngineLoad()), **changes))

    def serving(self) -> dict[str, str]:
        """Pod name -> pod IP of the pods served now."""
        with self._lock:
            return {name: running.pod_ip for name, running in self._running.items()}

    def _sync(self) -> None:
        pods = [
            pod
            for pod in kube_pods.list_pods(self._api, namespace=self._namespace, selector=APP_LABEL)
            if pod.pod_ip and not pod.deleting
        ]
        wanted = {pod.name: pod for pod in pods}
        with self._lock:
            changed: set[str] = set()
            for name in [n for n, r in self._running.items() if n not in wanted or wanted[n].pod_ip != r.pod_ip]:
                gone = self._running.pop(name)
                changed.add(gone.app)
                self._shutdown(gone)
            for name, pod in wanted.items():
                if name in self._running or pod.pod_ip is None:
                    continue
                app = pod.labels.get(APP_LABEL, "")
                engine = _Engine(EngineLoad())
                try:
                    server = _server(pod.pod_ip, self._port, engine)
                except OSError:
                    continue  # the IP's previous owner is still closing; next poll
                thread = threading.Thread(target=server.serve_forever, name=f"engine-{name}", daemon=True)
                thread.start()
                self._running[name] = _Running(app=app, pod_ip=pod.pod_ip, engine=engine, server=server, thread=thread)
                changed.add(app)
            for app in changed:
                self._share(app, reset_waiting=False)

    @staticmethod
    def _shutdown(running: _Running) -> None:
        running.engine.closed.set()
        running.server.shutdown()
        running.server.server_close()
        running.thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            # A transient API error must not end the fleet; the next poll retries.
            with contextlib.suppress(Exception):
                self._sync()
            self._stop.wait(self._poll_seconds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for running in self._running.values():
                self._shutdown(running)
            self._running.clear()
        self._api.close()


@contextlib.contextmanager
def fake_engines(
    *, kubeconfig: Path, namespace: str, port: int, loads: Iterable[tuple[str, EngineLoad]] = ()
) -> Iterator[FakeEngineFleet]:
    """A started `FakeEngineFleet`, stopped on exit."""
    fleet = FakeEngineFleet(kubeconfig=kubeconfig, namespace=namespace, port=port)
    for app, load in loads:
        fleet.set_load(app, load)
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()
