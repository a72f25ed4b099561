"""The vLLM preset asks for its samples only (``?name[]=…``) and reads the same sample as from the whole exposition,
whether the server honours the query (prometheus_client's default registry), answers it with nothing (its
multiprocess registry), refuses it, or ignores it; presets without the query never send it."""

from __future__ import annotations

import dataclasses
import io
import ipaddress

import pytest
from benchmarks.restricted_exposition import NamelessTextCollector, TextCollector, requested_names
from benchmarks.vllm_payload import vllm_exposition
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.registry import Collector
from tests.unit.metrics.fakes import Handler, Request, StartEngines, response

from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.engines.preset import EnginePreset
from tokenscale.metrics.scraper import Endpoint, Scraper, ScrapeSettings
from tokenscale.metrics.source import PodTarget, Unknown, UnknownReason

VLLM = preset_for("vllm")
WHOLE = dataclasses.replace(VLLM, name_query=False)
"""The vLLM preset reading the whole exposition: the reference every filtered scrape must equal."""
TEXT = vllm_exposition()  # vLLM's families plus the API server's HTTP and process metrics (noise)
POD = PodTarget("pod", "127.0.0.2")


def prometheus_app(collector: Collector) -> Handler:
    """prometheus_client's WSGI exposition app (the code behind its ASGI app and ``start_http_server`` too) over a
    registry holding ``collector``, called with each request."""
    registry = CollectorRegistry()
    registry.register(collector)
    app = make_wsgi_app(registry)

    def handle(request: Request) -> bytes:
        path, _, query = request.target.partition("?")
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "HTTP_ACCEPT": "text/plain",
            "HTTP_ACCEPT_ENCODING": "identity",
            "wsgi.input": io.BytesIO(),
        }
        status: list[str] = []

        def start_response(line: str, headers: list[tuple[str, str]]) -> None:
            status.append(line)

        body = b"".join(app(environ, start_response))
        return response(int(status[0].split()[0]), body)

    return handle


def refusing_queries(request: Request) -> bytes:
    """A server (or proxy) that answers 400 to any query string."""
    if "?" in request.target:
        return response(400)
    return response(200, TEXT.encode())


def ignoring_queries(request: Request) -> bytes:
    return response(200, TEXT.encode())


async def scrape_twice(
    start_engines: StartEngines, handler: Handler, preset: EnginePreset
) -> tuple[list[EngineSample | Unknown], list[list[str]]]:
    """Two scrapes of one pod by the preset: the answers, and the targets requested in each."""
    targets: list[str] = []

    def recording(request: Request) -> bytes:
        targets.append(request.target)
        reply = handler(request)
        assert isinstance(reply, bytes)
        return reply

    engines = await start_engines(recording)
    endpoint = Endpoint(preset=preset, port=engines.port)

    settings = ScrapeSettings(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    answers: list[EngineSample | Unknown] = []
    per_scrape: list[list[str]] = []
    async with Scraper(settings, clock=lambda: 1.0) as scraper:
        for _ in range(2):
            answers.append((await scraper.scrape([POD], endpoint))[POD.name])
            per_scrape.append(targets.copy())
            targets.clear()
    return answers, per_scrape


def filtered(target: str) -> bool:
    return requested_names(target) is not None


@pytest.mark.parametrize(
    ("handler", "first_scrape", "second_scrape"),
    [
        pytest.param(prometheus_app(TextCollector(TEXT)), [True], [True], id="honoured"),
        pytest.param(
            prometheus_app(NamelessTextCollector(TEXT)), [True, False], [False], id="empty-answer-multiprocess"
        ),
        pytest.param(refusing_queries, [True, False], [False], id="refused-with-400"),
        pytest.param(ignoring_queries, [True], [True], id="ignored"),
    ],
)
async def test_filtered_scrape_reads_the_sample_of_the_whole_exposition(
    start_engines: StartEngines, handler: Handler, first_scrape: list[bool], second_scrape: list[bool]
) -> None:
    reference, _ = await scrape_twice(start_engines, handler, WHOLE)
    answers, requests = await scrape_twice(start_engines, handler, VLLM)
    assert isinstance(reference[0], EngineSample)
    assert reference[0].time_to_first_token_seconds is not None  # histograms and derived fields are compared too
    assert reference[0].kv_cache_capacity_tokens is not None
    assert answers == reference
    assert [[filtered(t) for t in scrape] for scrape in requests] == [first_scrape, second_scrape]


async def test_the_query_names_exactly_the_samples_the_preset_reads(start_engines: StartEngines) -> None:
    _, requests = await scrape_twice(start_engines, ignoring_queries, VLLM)
    names = requested_names(requests[0][0])
    assert names is not None
    assert sorted(names) == sorted(VLLM.series_filter.names)
    assert {"vllm:time_to_first_token_seconds_bucket", "vllm:prompt_tokens_total"} <= set(names)
    assert requests[0][0].startswith("/metrics?")


async def test_a_prometheus_app_honouring_the_query_sends_a_fraction_of_the_exposition(
    start_engines: StartEngines,
) -> None:
    sizes: dict[bool, int] = {}
    app = prometheus_app(TextCollector(TEXT))

    def measuring(request: Request) -> bytes:
        answer = app(request)
        assert isinstance(answer, bytes)
        sizes[filtered(request.target)] = len(answer)
        return answer

    await scrape_twice(start_engines, measuring, VLLM)
    await scrape_twice(start_engines, measuring, WHOLE)
    assert sizes[True] < sizes[False] / 3


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        pytest.param(prometheus_app(TextCollector("")), UnknownReason.NO_MATCHING_FAMILY, id="no-families-yet"),
        pytest.param(lambda _: response(503), UnknownReason.HTTP_STATUS, id="unavailable"),
    ],
)
async def test_a_pod_failing_both_ways_keeps_being_asked_with_the_query(
    start_engines: StartEngines, handler: Handler, reason: UnknownReason
) -> None:
    answers, requests = await scrape_twice(start_engines, handler, VLLM)
    assert all(isinstance(a, Unknown) and a.reason == reason for a in answers), answers
    assert [[filtered(t) for t in scrape] for scrape in requests] == [[True, False], [True, False]]


@pytest.mark.parametrize("engine", [pytest.param("sglang", id="sglang"), pytest.param("trtllm", id="trtllm")])
async def test_presets_without_the_query_never_send_it(start_engines: StartEngines, engine: str) -> None:
    _, requests = await scrape_twice(start_engines, ignoring_queries, preset_for(engine))
    assert requests == [["/metrics"], ["/metrics"]]
