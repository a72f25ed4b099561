"""Operator tick latency and CPU per tick: one service of 64 pods, and 50 services of 32 pods, at 1 s ticks.

Each tick is the operator's real `tokenscale.controller.reconcile.run_tick`: the real metrics scraper over HTTP to
fake vLLM engines on loopback (one listener per pod IP, 127.3.x.y, served by a separate process so that their
CPU is not counted), `build_observation`, `decide` (policy tokenscale), actuation and status against an
in-memory cluster (the unit tests' fake kube adapter, so the API server's latency is not measured). The fake
engines answer the vLLM preset's ``name[]`` query as vLLM's prometheus_client exposition does
(`benchmarks.restricted_exposition`), or, in the rows marked so, ignore it as a server that is not
prometheus_client would.

Goal (issue 6): p99 <= 50 ms per tick for the 64-pod service, and 50 x 32 pods at 1 s within one core
(CPU seconds per wall second < 1).

Run: ``.venv/bin/python -m benchmarks operator`` (or ``make bench``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import ipaddress
import multiprocessing
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from tests.unit.controller.fakes import EventList, FakeCluster

from benchmarks.restricted_exposition import requested_names, restricted, restricted_lines, same_samples
from tokenscale.controller import reconcile, runner, scraping, telemetry
from tokenscale.controller.service import MetricsEndpoint, ServiceMemory, parse_service
from tokenscale.core.types import EngineSample
from tokenscale.kube.pods import PodInfo
from tokenscale.metrics import engines
from tokenscale.metrics.reader import SampleReader
from tokenscale.metrics.source import PodTarget, Unknown

PORT = 18000
WARMUP_TICKS = 6
"""Ticks before measuring: the rate window fills and the first conversions settle."""

_TTFT = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
         80.0, 160.0, 640.0, 2560.0)  # fmt: skip
_ITL = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
_E2E = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
        1920.0, 7680.0)  # fmt: skip
_LENGTHS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
_LABELS = 'engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"'


def _histogram(name: str, bounds: tuple[float, ...], *, observed: float, count: float) -> list[str]:
    lines = [f"# HELP {name} Histogram.", f"# TYPE {name} histogram"]
    for bound in bounds:
        lines.append(f'{name}_bucket{{{_LABELS},le="{float(bound)}"}} {count if observed <= bound else 0.0}')
    lines.append(f'{name}_bucket{{{_LABELS},le="+Inf"}} {count}')
    lines.append(f"{name}_count{{{_LABELS}}} {count}")
    lines.append(f"{name}_sum{{{_LABELS}}} {observed * count}")
    return lines


def exposition(*, prefill: bool, elapsed_seconds: float) -> bytes:
    """A vLLM V1 exposition of one engine ``elapsed_seconds`` after start, at a steady load (about 12 KB)."""
    requests = 10.0 * elapsed_seconds
    lines: list[str] = []
    for name, value in (
        ("vllm:num_requests_running", 2.0 if prefill else 40.0),
        ("vllm:num_requests_waiting", 1.0 if prefill else 0.0),
        ("vllm:kv_cache_usage_perc", 0.05 if prefill else 0.4),
    ):
        lines += [f"# HELP {name} Gauge.", f"# TYPE {name} gauge", f"{name}{{{_LABELS}}} {value}"]
    for name, value in (
        ("vllm:prompt_tokens", 10_000.0 * elapsed_seconds if prefill else 0.0),
        ("vllm:generation_tokens", 0.0 if prefill else 2_000.0 * elapsed_seconds),
        ("vllm:num_preemptions", 0.0),
    ):
        lines += [f"# HELP {name}_total Counter.", f"# TYPE {name}_total counter", f"{name}_total{{{_LABELS}}} {value}"]
    lines += [
        "# HELP vllm:request_success_total Counter.",
        "# TYPE vllm:request_success_total counter",
        f'vllm:request_success_total{{{_LABELS},finished_reason="stop"}} {requests}',
    ]
    lines += _histogram("vllm:time_to_first_token_seconds", _TTFT, observed=0.2, count=requests)
    lines += _histogram("vllm:inter_token_latency_seconds", _ITL, observed=0.03, count=requests * 200)
    lines += _histogram("vllm:e2e_request_latency_seconds", _E2E, observed=6.0, count=requests)
    lines += _histogram("vllm:request_queue_time_seconds", _E2E, observed=0.3, count=requests)
    lines += _histogram("vllm:request_prompt_tokens", _LENGTHS, observed=1000.0, count=requests)
    lines += _histogram("vllm:request_generation_tokens", _LENGTHS, observed=200.0, count=requests)
    lines += _histogram("vllm:request_params_max_tokens", _LENGTHS, observed=512.0, count=requests)
    return ("\n".join(lines) + "\n").encode()


def _pod_ip(service: int, pod: int) -> str:
    return str(ipaddress.ip_address("127.3.0.0") + service * 256 + pod + 1)


def _pin(*, server: bool) -> None:
    """On a machine with two or more CPUs: the operator on CPU 0 (so "one core" is what is measured), the fake
    engines on the others."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, set(cpus[1:]) if server else {cpus[0]})


def _serve(addresses: list[tuple[str, bool]], ready: Any, honour_name_query: bool) -> None:
    """The fake engines: one asyncio listener per pod IP, answering every request with a fresh exposition, or
    with its samples the request's ``name[]`` query lists (``honour_name_query``), as prometheus_client does."""

    _pin(server=True)

    async def run() -> None:
        started = time.monotonic()
        rendered: dict[tuple[bool, int, bytes], bytes] = {}

        def body_of(prefill: bool, target: bytes) -> bytes:
            # Rendered once per role, query and 100 ms: the server's CPU is not what is measured, and it shares
            # the machine. The client still parses every answer in full (its memo is per series, not per text).
            tenth = int(10 * (time.monotonic() - started))
            key = (prefill, tenth, target)
            if key not in rendered:
                for stale in [k for k in rendered if k[1] != tenth]:
                    del rendered[stale]
                text = exposition(prefill=prefill, elapsed_seconds=tenth / 10)
                names = requested_names(target.decode("latin-1")) if honour_name_query else None
                rendered[key] = text if names is None else restricted_lines(text.decode(), names)
            return rendered[key]

        # The line model answers the query as prometheus_client does (checked here on the vLLM preset's query),
        # at a fraction of its cost: rendering through prometheus_client takes milliseconds, which would hold
        # up the ticks' requests.
        example, names = (
            exposition(prefill=False, elapsed_seconds=1.0).decode(),
            engines.preset_for("vllm").exposition_names,
        )
        if not same_samples(restricted_lines(example, names), restricted(example, names)):
            raise RuntimeError("restricted_lines does not answer the name[] query as prometheus_client does")

        def handler(prefill: bool) -> Any:
            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                try:
                    while True:
                        request = await reader.readuntil(b"\r\n\r\n")
                        if not request:
                            break
                        body = body_of(prefill, request.split(b" ", 2)[1])
                        writer.write(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                            + f"Content-Length: {len(body)}\r\n\r\n".encode()
                            + body
                        )
                        await writer.drain()
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                finally:
                    writer.close()

            return handle

        servers = [await asyncio.start_server(handler(prefill), host=ip, port=PORT) for ip, prefill in addresses]
        ready.set()
        await asyncio.gather(*(server.serve_forever() for server in servers))

    asyncio.run(run())


@dataclass(frozen=True)
class Result:
    http: bool
    name_query_honoured: bool
    services: int
    pods_per_service: int
    ticks: int
    p50_ms: float
    p99_ms: float
    cpu_ms_per_tick: float
    cpu_seconds_per_second: float
    scrape_errors: int
    gc_pause_max_ms: float

    def row(self) -> str:
        pods = self.pods_per_service
        honoured = "honoured" if self.name_query_honoured else "ignored"
        scrape = f"HTTP on loopback, name[] {honoured}" if self.http else "in memory"
        return (
            f"| {self.services} x {pods} pods | {scrape} | {self.ticks} | {self.p50_ms:.1f} | {self.p99_ms:.1f} | "
            f"{self.cpu_ms_per_tick:.1f} | {1000 * self.cpu_ms_per_tick / pods:.0f} | "
            f"{self.cpu_seconds_per_second:.2f} | {self.scrape_errors} | {self.gc_pause_max_ms:.1f} |"
        )


def _service_spec(index: int) -> dict[str, Any]:
    return {
        "prefill": {"scaleTargetRef": {"name": f"p{index}"}, "minReplicas": 1, "maxReplicas": 64},
        "decode": {"scaleTargetRef": {"name": f"d{index}"}, "minReplicas": 1, "maxReplicas": 64},
        "metrics": {"port": PORT, "windowSeconds": 10},
    }


def _pods(service: int, *, role: str, first: int, count: int) -> list[PodInfo]:
    return [
        PodInfo(
            name=f"s{service}-{role}-{i}",
            pod_ip=_pod_ip(service, first + i),
            ready=True,
            ready_since_seconds=0.0,
            deleting=False,
            labels={"tokenscale.io/role": role},
            annotations={},
        )
        for i in range(count)
    ]


class InMemoryEngines:
    """The scraper's answers without HTTP: each role's exposition parsed by the metrics layer once per elapsed
    second and handed to every pod of the role, stamped now. Isolates the operator's own cost per tick."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._preset = engines.preset_for("vllm")
        self._reader = SampleReader()
        self._samples: dict[tuple[bool, int], EngineSample] = {}

    def _sample(self, *, prefill: bool, elapsed_seconds: int) -> EngineSample:
        key = (prefill, elapsed_seconds)
        if key not in self._samples:
            text = exposition(prefill=prefill, elapsed_seconds=elapsed_seconds).decode()
            self._samples[key] = self._reader.read(self._preset, text, timestamp_seconds=0.0, model_name=None)
        return self._samples[key]

    async def scrape(
        self, *, targets: Sequence[PodTarget], endpoint: MetricsEndpoint
    ) -> Mapping[str, EngineSample | Unknown]:
        del endpoint
        now, elapsed = time.time(), int(time.monotonic() - self._started)
        return {
            t.name: dataclasses.replace(
                self._sample(prefill="-prefill-" in t.name, elapsed_seconds=elapsed), timestamp_seconds=now
            )
            for t in targets
        }


class GCPauses:
    """A `gc.callbacks` entry that keeps the longest collection it saw (any generation), in seconds."""

    def __init__(self) -> None:
        self.longest_seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest_seconds = max(self.longest_seconds, time.perf_counter() - self._started)


async def _measure(
    *, services: int, pods_per_service: int, measured_ticks: int, http: bool, name_query_honoured: bool
) -> Result:
    prefill_pods = pods_per_service // 4
    cluster = FakeCluster()
    for s in range(services):
        cluster.add_target(
            f"p{s}", replicas=prefill_pods, selector=f"p{s}", pods=_pods(s, role="prefill", first=0, count=prefill_pods)
        )
        cluster.add_target(
            f"d{s}",
            replicas=pods_per_service - prefill_pods,
            selector=f"d{s}",
            pods=_pods(s, role="decode", first=prefill_pods, count=pods_per_service - prefill_pods),
        )
    configs = [parse_service(spec=_service_spec(s), generation=1) for s in range(services)]
    memories = [ServiceMemory() for _ in range(services)]
    scraper: reconcile.PodScraper = (
        scraping.MetricsScraper(allowed_cidrs=(ipaddress.ip_network("127.0.0.0/8"),), timeout_seconds=0.5)
        if http
        else InMemoryEngines()
    )
    ports = reconcile.TickPorts(
        cluster=cluster, scraper=scraper, events=EventList(), metrics=telemetry.OperatorMetrics(CollectorRegistry())
    )
    durations: list[float] = []
    measuring = asyncio.Event()
    total_ticks = WARMUP_TICKS + measured_ticks

    async def daemon(index: int) -> None:
        """One service's tick loop, as the operator's kopf daemon runs it: phases spread over the second."""
        await asyncio.sleep(index / services)
        for tick in range(total_ticks):
            started = time.perf_counter()
            await reconcile.run_tick(
                namespace="bench",
                name=f"svc{index}",
                config=configs[index],
                memory=memories[index],
                ports=ports,
                now_seconds=time.time(),
                previous_status={},
            )
            elapsed = time.perf_counter() - started
            if tick >= WARMUP_TICKS:
                durations.append(elapsed)
            if tick == WARMUP_TICKS - 1 and index == services - 1:
                measuring.set()
            await asyncio.sleep(max(0.0, 1.0 - elapsed))

    # The garbage collector as `tokenscale run` sets it up (`tune_garbage_collector`).
    runner.tune_garbage_collector()
    pauses = GCPauses()
    tasks = [asyncio.create_task(daemon(i)) for i in range(services)]
    await measuring.wait()
    gc.callbacks.append(pauses)
    cpu_started, wall_started = time.process_time(), time.monotonic()
    await asyncio.gather(*tasks)
    cpu = time.process_time() - cpu_started
    gc.callbacks.remove(pauses)
    scrape_errors = sum(
        sample.value
        for family in ports.metrics.scrape_errors.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )
    wall = time.monotonic() - wall_started
    await scraping.close(scraper)
    ordered = sorted(durations)
    return Result(
        http=http,
        name_query_honoured=name_query_honoured,
        services=services,
        pods_per_service=pods_per_service,
        ticks=len(durations),
        p50_ms=1000 * statistics.median(ordered),
        p99_ms=1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        cpu_ms_per_tick=1000 * cpu / len(durations),
        cpu_seconds_per_second=cpu / wall,
        scrape_errors=int(scrape_errors),
        gc_pause_max_ms=1000 * pauses.longest_seconds,
    )


def run_scenario(
    *, services: int, pods_per_service: int, measured_ticks: int, http: bool = True, name_query_honoured: bool = True
) -> Result:
    """Start the fake engines in their own process, then tick ``services`` services for ``measured_ticks`` s.

    With ``http`` false the pods are not scraped over HTTP but answered in memory (`InMemoryEngines`); with
    ``name_query_honoured`` false the fake engines send their whole exposition whatever the query asks."""
    _pin(server=False)
    if not http:
        return asyncio.run(
            _measure(
                services=services,
                pods_per_service=pods_per_service,
                measured_ticks=measured_ticks,
                http=False,
                name_query_honoured=False,
            )
        )
    prefill_pods = pods_per_service // 4
    addresses = [(_pod_ip(s, p), p < prefill_pods) for s in range(services) for p in range(pods_per_service)]
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(target=_serve, args=(addresses, ready, name_query_honoured), daemon=True)
    server.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the fake engines did not start")
        return asyncio.run(
            _measure(
                services=services,
                pods_per_service=pods_per_service,
                measured_ticks=measured_ticks,
                http=True,
                name_query_honoured=name_query_honoured,
            )
        )
    finally:
        server.terminate()
        server.join(10)


def main() -> None:
    results = [
        run_scenario(services=1, pods_per_service=64, measured_ticks=60),
        run_scenario(services=50, pods_per_service=32, measured_ticks=30),
        run_scenario(services=1, pods_per_service=64, measured_ticks=60, name_query_honoured=False),
        run_scenario(services=50, pods_per_service=32, measured_ticks=30, name_query_honoured=False),
        run_scenario(services=1, pods_per_service=64, measured_ticks=60, http=False),
        run_scenario(services=50, pods_per_service=32, measured_ticks=30, http=False),
    ]
    print(
        "| services x pods | scrape | ticks measured | p50 ms | p99 ms | CPU ms/tick | CPU us/pod/tick "
        "| CPU s per s | scrape errors | longest GC pause ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())


if __name__ == "__main__":
    main()
