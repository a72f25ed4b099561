"""The scraper answers every pod with a sample or an unknown reason, never an exception (a mock transport, and
real loopback servers for connection reuse, reconnects, TLS and deadlines)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpcore
import pytest
from tests.unit.metrics.fakes import MockTransport, response

from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.scraper import Endpoint, PodMetricsSource, Scraper, ScrapeSettings
from tokenscale.metrics.source import MetricsSource, PodTarget, Unknown, UnknownReason

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
SGLANG_TEXT = (FIXTURES / "sglang-metrics.txt").read_bytes()
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
ENDPOINT = Endpoint(preset=preset_for("sglang"), port=30000)
POD = PodTarget("pod-a", "127.0.0.2")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


Handler = Callable[[httpcore.Request], httpcore.Response]


def make_scraper(handler: Handler, **settings: Any) -> Scraper:
    return Scraper(
        ScrapeSettings(allowed_networks=LOOPBACK, **settings),
        clock=FakeClock(),
        transport=MockTransport(handler),
    )


async def scrape_one(handler: Handler, **settings: Any) -> EngineSample | Unknown:
    async with make_scraper(handler, **settings) as scraper:
        return (await scraper.scrape([POD], ENDPOINT))[POD.name]


async def test_sample_is_read_and_stamped_by_the_injected_clock() -> None:
    seen: list[httpcore.Request] = []

    def handler(request: httpcore.Request) -> httpcore.Response:
        seen.append(request)
        return response(200, SGLANG_TEXT)

    result = await scrape_one(handler)
    assert isinstance(result, EngineSample)
    assert result.timestamp_seconds == 1001.0
    assert result.prompt_tokens_total == 8.128902e06
    assert bytes(seen[0].url) == b"http://127.0.0.2:30000/metrics"
    headers = {name.lower(): value for name, value in seen[0].headers}
    assert headers[b"host"] == b"127.0.0.2:30000"
    assert headers[b"accept-encoding"] == b"identity"


def _raise(error: Exception) -> Handler:
    def handler(request: httpcore.Request) -> httpcore.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    ("handler", "reason", "message"),
    [
        pytest.param(_raise(httpcore.ReadTimeout("slow")), UnknownReason.TIMEOUT, "within 2 s", id="read-timeout"),
        pytest.param(
            _raise(httpcore.ConnectError("Connection refused")),
            UnknownReason.CONNECTION_FAILED,
            "Connection refused",
            id="refused",
        ),
        pytest.param(
            _raise(httpcore.RemoteProtocolError("peer closed")),
            UnknownReason.TRANSPORT_ERROR,
            "peer closed",
            id="reset",
        ),
        pytest.param(
            _raise(httpcore.ReadError("connection reset")), UnknownReason.TRANSPORT_ERROR, "reset", id="read-error"
        ),
        pytest.param(_raise(RuntimeError("boom")), UnknownReason.INTERNAL_ERROR, "boom", id="unexpected"),
        pytest.param(lambda _: response(500), UnknownReason.HTTP_STATUS, "HTTP 500", id="http-500"),
        pytest.param(lambda _: response(302), UnknownReason.HTTP_STATUS, "HTTP 302", id="redirect-not-followed"),
        pytest.param(
            lambda _: response(200, b"\x00garbage\xff\nno families here"),
            UnknownReason.NO_MATCHING_FAMILY,
            "no sglang metric family",
            id="junk",
        ),
        pytest.param(
            lambda _: response(200, b'sglang:num_running_reqs{model_name="m} 1\n'),
            UnknownReason.PARSE_ERROR,
            "malformed",
            id="bad-text",
        ),
        pytest.param(
            lambda _: response(200, b"sglang:token_usage NaN\n"),
            UnknownReason.PARSE_ERROR,
            "finite",
            id="nan-gauge",
        ),
        pytest.param(
            lambda _: response(200, b"x", headers={"Content-Encoding": "gzip"}),
            UnknownReason.PARSE_ERROR,
            "content-encoding 'gzip'",
            id="compressed-body",
        ),
        pytest.param(
            lambda _: response(200, b"x", headers={"content-encoding": "identity", "Content-Encoding": "br"}),
            UnknownReason.PARSE_ERROR,
            "content-encoding 'identity, br'",
            id="repeated-coding-header",
        ),
        pytest.param(
            lambda _: response(200, b"x" * 2048),
            UnknownReason.TOO_LARGE,
            "declared 2048 bytes",
            id="declared-too-large",
        ),
    ],
)
async def test_failure_makes_the_pod_unknown_with_its_reason(
    handler: Handler, reason: UnknownReason, message: str
) -> None:
    result = await scrape_one(handler, max_body_bytes=1024)
    assert isinstance(result, Unknown)
    assert result.reason == reason
    assert message in result.message
    assert result.timestamp_seconds == 1001.0


async def test_streamed_body_past_the_cap_stops_being_read() -> None:
    produced: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(10_000):
            produced.append(1)
            yield b"y" * 1000

    result = await scrape_one(lambda _: httpcore.Response(200, content=endless()), max_body_bytes=10_000)
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.TOO_LARGE
    assert len(produced) == 11  # the chunk that crossed the cap is the last one read


async def test_slow_body_hits_the_total_deadline() -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b"sglang:num_running_reqs 1\n"
        await asyncio.sleep(30)
        yield b"sglang:num_queue_reqs 1\n"

    result = await scrape_one(lambda _: httpcore.Response(200, content=trickle()), timeout_seconds=0.05)
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.TIMEOUT


@pytest.mark.parametrize(
    "ip",
    [
        pytest.param("192.0.2.10", id="outside-allowed-network"),
        pytest.param("2001:db8::1", id="ipv6-outside"),
        pytest.param("pod.example", id="not-an-ip"),
        pytest.param("127.0.0.1:80", id="ip-with-port"),
    ],
)
async def test_pod_outside_the_allowed_networks_is_never_dialled(ip: str) -> None:
    dialled: list[httpcore.Request] = []

    def handler(request: httpcore.Request) -> httpcore.Response:
        dialled.append(request)
        return response(200, SGLANG_TEXT)

    async with make_scraper(handler) as scraper:
        result = (await scraper.scrape([PodTarget("p", ip)], ENDPOINT))["p"]
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.NOT_ALLOWED
    assert dialled == []


async def test_every_pod_gets_one_answer_per_call_and_failures_stay_per_pod() -> None:
    def handler(request: httpcore.Request) -> httpcore.Response:
        if request.url.host == b"127.0.0.3":
            return response(503)
        return response(200, SGLANG_TEXT)

    pods = [PodTarget("a", "127.0.0.2"), PodTarget("b", "127.0.0.3"), PodTarget("c", "127.0.0.4")]
    async with make_scraper(handler) as scraper:
        for _ in range(2):
            results = await scraper.scrape(pods, ENDPOINT)
            assert list(results) == ["a", "b", "c"]
            assert isinstance(results["a"], EngineSample)
            assert isinstance(results["b"], Unknown)
            assert isinstance(results["c"], EngineSample)


async def test_concurrency_is_bounded() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpcore.Request) -> httpcore.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return response(200, SGLANG_TEXT)

    pods = [PodTarget(f"p{i}", f"127.0.1.{i}") for i in range(1, 21)]
    async with Scraper(
        ScrapeSettings(allowed_networks=LOOPBACK, max_concurrency=3), transport=MockTransport(handler)
    ) as scraper:
        results = await scraper.scrape(pods, ENDPOINT)
    assert all(isinstance(r, EngineSample) for r in results.values())
    assert peak == 3


async def test_cookies_from_pods_are_not_kept() -> None:
    cookies_sent: list[list[bytes]] = []

    def handler(request: httpcore.Request) -> httpcore.Response:
        cookies_sent.append([value for name, value in request.headers if name.lower() == b"cookie"])
        return response(200, SGLANG_TEXT, headers={"set-cookie": "session=abc"})

    async with make_scraper(handler) as scraper:
        for _ in range(2):
            await scraper.scrape([POD], ENDPOINT)
    assert cookies_sent == [[], []]


async def test_pod_source_implements_the_metrics_source_protocol() -> None:
    async with make_scraper(lambda _: response(200, SGLANG_TEXT)) as scraper:
        source: MetricsSource = PodMetricsSource(scraper, ENDPOINT)
        results = await source.sample([POD])
    assert isinstance(results[POD.name], EngineSample)


async def test_model_name_filter_applies_to_scrapes() -> None:
    endpoint = Endpoint(preset=preset_for("sglang"), port=30000, model_name="another-model")
    async with make_scraper(lambda _: response(200, SGLANG_TEXT)) as scraper:
        result = (await scraper.scrape([POD], endpoint))[POD.name]
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.NO_MATCHING_FAMILY
    assert "another-model" in result.message


@pytest.fixture
async def loopback_servers() -> AsyncIterator[tuple[int, list[int]]]:
    """Two engine endpoints on 127.0.0.2 and 127.0.0.3 (same port) in the test's loop; yields the port and how
    many connections each accepted."""
    connections = [0, 0]
    handlers: list[asyncio.Task[None]] = []
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(SGLANG_TEXT), SGLANG_TEXT)

    def serve(index: int) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections[index] += 1
            task = asyncio.current_task()
            assert task is not None
            handlers.append(task)
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    writer.write(response)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        return handle

    first = await asyncio.start_server(serve(0), "127.0.0.2", 0)
    port = first.sockets[0].getsockname()[1]
    second = await asyncio.start_server(serve(1), "127.0.0.3", port)
    try:
        yield port, connections
    finally:
        for server in (first, second):
            server.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        for server in (first, second):
            await server.wait_closed()


async def test_real_loopback_scrapes_keep_one_connection_per_pod(loopback_servers: tuple[int, list[int]]) -> None:
    port, connections = loopback_servers
    endpoint = Endpoint(preset=preset_for("sglang"), port=port)
    pods = [PodTarget("a", "127.0.0.2"), PodTarget("b", "127.0.0.3")]
    async with Scraper(ScrapeSettings(allowed_networks=LOOPBACK)) as scraper:
        for _ in range(3):
            results = await scraper.scrape(pods, endpoint)
            assert all(isinstance(r, EngineSample) for r in results.values()), results
    assert connections == [1, 1]


async def test_refused_loopback_port_is_connection_failed(unused_tcp_port: int) -> None:
    endpoint = Endpoint(preset=preset_for("sglang"), port=unused_tcp_port)
    async with Scraper(ScrapeSettings(allowed_networks=LOOPBACK)) as scraper:
        result = (await scraper.scrape([PodTarget("a", "127.0.0.1")], endpoint))["a"]
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.CONNECTION_FAILED
