"""Issue 3 (engine metrics): CPU per pod for scrape + parse of a realistic ~50 KB vLLM payload, and how many pods
per second one core sustains against 500 loopback endpoints.

Goals: <= 0.5 ms CPU per pod, >= 1,000 pods/s per core. CPU is the benchmark process's own
`time.process_time` (the endpoints are served by a separate process, `benchmarks.exposition_server`), so
pods/s per core = pods scraped / CPU seconds spent. Parse costs compare prometheus_client's parser on the
whole text, the same parser on the family-filtered lines, and the memoised path the scraper uses, on the whole
exposition and on what vLLM sends for the preset's ``name[]`` query. The endpoints answer that query as vLLM's
prometheus_client does (`benchmarks.restricted_exposition`). Ablations, interleaved with the default so that
the shared machine's load moves them alike, show what the query saves (the same preset without it: an engine
that ignores the query) and split the scrape into HTTP and parse.

`bench_layouts` compares, per payload (the operator benchmark's vLLM pod, the ~50 KB payload, the upstream
fixtures of each engine), the generic parse + normalise with `SampleReader` (a plan per layout), as the scraper
uses it (one source per pod: the skeleton read once the text's skeleton repeats) and from a source never seen
before (the family filter's split and the layout look-up, no skeleton), and checks that all three read the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from benchmarks import bench_operator
from benchmarks.restricted_exposition import restricted, restricted_lines
from benchmarks.vllm_payload import vllm_exposition
from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.engines.preset import EnginePreset, ScalarField, sample_from_series
from tokenscale.metrics.exposition import SeriesParser
from tokenscale.metrics.reader import SampleReader
from tokenscale.metrics.scraper import Endpoint, Scraper, ScrapeSettings
from tokenscale.metrics.source import PodTarget, UnknownReason

PODS = 500
ROUNDS = 8
VLLM = preset_for("vllm")
WHOLE = dataclasses.replace(VLLM, name_query=False)
"""The vLLM preset without the ``name[]`` query: what a scrape of an engine that ignores the query costs."""
NOTHING = EnginePreset(engine="nothing", scalars=(ScalarField("requests_waiting", ("nothing:at_all",)),))
"""A preset whose one family no payload has: scraping with it costs the HTTP request, the body's decode and
the family filter's scan, and no parse."""


def cpu_microseconds_per_call(call: Callable[[], object], *, budget_seconds: float = 1.0) -> float:
    """Mean CPU time of ``call`` in µs, repeated for about ``budget_seconds`` of CPU (best of three runs)."""
    call()
    started = time.process_time()
    calls = 0
    while time.process_time() - started < budget_seconds / 10:
        call()
        calls += 1
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(calls * 3):
            call()
        best = min(best, (time.process_time() - started) / (calls * 3))
    return best * 1e6


def bench_parse() -> None:
    text = vllm_exposition()
    kept = VLLM.series_filter.candidate_lines(text)
    filtered = "\n".join(kept)
    restricted_text = restricted(text, VLLM.exposition_names).decode()
    parser = SeriesParser()

    def ours() -> EngineSample:
        series = parser.parse(text, VLLM.series_filter)
        return sample_from_series(VLLM, series, timestamp_seconds=0.0, model_name=None)

    def ours_restricted() -> EngineSample:
        series = parser.parse(restricted_text, VLLM.series_filter)
        return sample_from_series(VLLM, series, timestamp_seconds=0.0, model_name=None)

    if ours_restricted() != ours():
        raise RuntimeError("the restricted exposition reads differently from the whole one")

    def ours_cold() -> EngineSample:
        series = SeriesParser().parse(text, VLLM.series_filter)
        return sample_from_series(VLLM, series, timestamp_seconds=0.0, model_name=None)

    print(f"payload: {len(text.encode())} bytes, {text.count(chr(10))} lines, {len(kept)} kept by the vLLM filter")
    print(
        f"answer to the vLLM preset's name[] query: {len(restricted_text.encode())} bytes, "
        f"{restricted_text.count(chr(10))} lines"
    )
    rows = [
        ("prometheus_client parser, whole text", lambda: list(text_string_to_metric_families(text))),
        ("prometheus_client parser, filtered lines", lambda: list(text_string_to_metric_families(filtered))),
        ("family filter only (regex, lines split)", lambda: VLLM.series_filter.split_candidate_lines(text)),
        ("tokenscale parse + normalise, cold memo", ours_cold),
        ("tokenscale parse + normalise, warm memo", ours),
        ("the same on the name[] answer", ours_restricted),
    ]
    for label, call in rows:
        print(f"  {label:<44} {cpu_microseconds_per_call(call):8.0f} µs CPU per payload")


FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "metrics"


def _layout_payloads() -> list[tuple[str, EnginePreset, str]]:
    pod = bench_operator.exposition(prefill=False, elapsed_seconds=5.0).decode()
    payload = vllm_exposition()
    fixtures = [
        ("vllm-v1-metrics.txt", "vllm"),
        ("sglang-metrics.txt", "sglang"),
        ("trtllm-dynamo-metrics.txt", "trtllm"),
    ]
    return [
        ("vLLM pod of bench_operator, name[] answer", VLLM, restricted_lines(pod, VLLM.exposition_names).decode()),
        ("vLLM pod of bench_operator, whole", VLLM, pod),
        ("vLLM ~50 KB payload, name[] answer", VLLM, restricted(payload, VLLM.exposition_names).decode()),
        ("vLLM ~50 KB payload, whole", VLLM, payload),
        *[(f"fixture {name}", preset_for(engine), (FIXTURES / name).read_text()) for name, engine in fixtures],
    ]


def bench_layouts() -> None:
    print("parse + normalise one pod's text, µs CPU (generic: SeriesParser.parse + sample_from_series, warm memo;")
    print("reader: SampleReader as the scraper uses it; new source: the layout path without the skeleton read):")
    print(f"  {'payload':<44} {'bytes':>6} {'kept':>5} {'generic':>8} {'reader':>8} {'new src':>8}  reader's path")
    for label, preset, text in _layout_payloads():
        parser = SeriesParser()
        reader = SampleReader()
        sources = itertools.count()

        def generic(preset: EnginePreset = preset, text: str = text, parser: SeriesParser = parser) -> EngineSample:
            series = parser.parse(text, preset.series_filter)
            return sample_from_series(preset, series, timestamp_seconds=0.0, model_name=None)

        def read(preset: EnginePreset = preset, text: str = text, reader: SampleReader = reader) -> EngineSample:
            return reader.read(preset, text, timestamp_seconds=0.0, model_name=None, source="pod")

        def read_new(
            preset: EnginePreset = preset,
            text: str = text,
            reader: SampleReader = reader,
            sources: itertools.count[int] = sources,
        ) -> EngineSample:
            return reader.read(preset, text, timestamp_seconds=0.0, model_name=None, source=next(sources))

        for _ in range(3):  # compile the layout and let the skeleton probes agree
            if repr(read()) != repr(generic()) or repr(read_new()) != repr(generic()):
                raise RuntimeError(f"{label}: the reader reads differently from the generic path")
        before = reader.stats
        costs = [cpu_microseconds_per_call(call) for call in (generic, read, read_new)]
        after = reader.stats
        path = "skeleton" if after.skeleton_reads > before.skeleton_reads else "layout"
        if after.generic_reads > before.generic_reads:
            path = "generic"
        kept = len(parser.parse(text, preset.series_filter))
        size = len(text.encode())
        print(f"  {label:<44} {size:>6} {kept:>5} {costs[0]:>8.1f} {costs[1]:>8.1f} {costs[2]:>8.1f}  {path}")


async def _scrape_rounds(
    scraper: Scraper, pods: list[PodTarget], endpoint: Endpoint, rounds: int
) -> tuple[float, float]:
    """CPU and wall seconds for ``rounds`` scrapes of every pod; fails loudly if any pod is not a sample (or,
    for the `NOTHING` preset, not `NoMatchingFamily`)."""
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        results = await scraper.scrape(pods, endpoint)
        if endpoint.preset is NOTHING:
            failed = [r for r in results.values() if getattr(r, "reason", None) != UnknownReason.NO_MATCHING_FAMILY]
        else:
            failed = [r for r in results.values() if not isinstance(r, EngineSample)]
        if failed:
            raise RuntimeError(f"{len(failed)} pods not as expected, e.g. {failed[0]}")
    return time.process_time() - cpu_started, time.perf_counter() - wall_started


async def bench_scrape(port: int, addresses: list[str]) -> None:
    pods = [PodTarget(f"pod-{index}", ip) for index, ip in enumerate(addresses)]
    endpoint = Endpoint(preset=VLLM, port=port)
    settings = ScrapeSettings(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), timeout_seconds=30.0)
    count = len(pods)

    async with Scraper(settings) as scraper:
        cold_cpu, _ = await _scrape_rounds(scraper, pods, endpoint, 1)
        cpu, wall = await _scrape_rounds(scraper, pods, endpoint, ROUNDS)
    scraped = ROUNDS * count
    print(f"scrape + parse, {count} loopback endpoints, one kept-alive aiohttp connection per pod, name[] query:")
    print(f"  first round (connect, memo fill)  {cold_cpu / count * 1e6:8.0f} µs CPU per pod")
    print(f"  steady state, {ROUNDS} rounds           {cpu / scraped * 1e6:8.0f} µs CPU per pod")
    print(f"  pods per CPU-second (one core)    {scraped / cpu:8.0f} pods/s")
    print(f"  wall-clock throughput             {scraped / wall:8.0f} pods/s (server shares the machine)")

    # Ablations: presets that differ from the default in one respect each, on the same scraper (the same kept
    # connections). They run interleaved with the default, two rounds at a time, so that the shared machine's
    # load moves them alike; best of four. The query, then the parse.
    variants: list[tuple[str, Endpoint]] = [
        ("default (name[] query)", endpoint),
        ("no name[] query (whole exposition)", Endpoint(preset=WHOLE, port=port)),
        ("no parse (whole exposition)", Endpoint(preset=NOTHING, port=port)),
    ]
    best = [float("inf")] * len(variants)
    async with Scraper(settings) as scraper:
        for _, used in variants:
            await _scrape_rounds(scraper, pods, used, 1)
        for _ in range(4):
            for index, (_, used) in enumerate(variants):
                ablated_cpu, _ = await _scrape_rounds(scraper, pods, used, 2)
                best[index] = min(best[index], ablated_cpu / (2 * count))
    print("ablations, interleaved (best of 4 x 2 rounds):")
    for (label, _), cpu_per_pod in zip(variants, best, strict=True):
        print(f"  {label:<34} {cpu_per_pod * 1e6:8.0f} µs CPU per pod")


def main() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    bench_layouts()
    bench_parse()
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.exposition_server", "--count", str(PODS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        listening = json.loads(server.stdout.readline())
        asyncio.run(bench_scrape(listening["port"], listening["addresses"]))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
