"""The scraper answers every pod with a sample or an unknown reason, never an exception (engines on real loopback
sockets, `tests.unit.metrics.fakes`)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.metrics.fakes import CLOSE, HANG, Handler, Reply, Request, StartEngines, Streamed, response

from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.engines.preset import DerivedField
from tokenscale.metrics.scraper import Endpoint, PodMetricsSource, Scraper, ScrapeSettings
from tokenscale.metrics.source import MetricsSource, PodTarget, Unknown, UnknownReason

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
SGLANG_TEXT = (FIXTURES / "sglang-metrics.txt").read_bytes()
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
SGLANG = preset_for("sglang")
POD = PodTarget("pod-a", "127.0.0.2")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def make_scraper(**settings: Any) -> Scraper:
    return Scraper(ScrapeSettings(allowed_networks=LOOPBACK, **settings), clock=FakeClock())


async def scrape_one(
    start_engines: StartEngines, handler: Handler, *, pod: PodTarget = POD, **settings: Any
) -> EngineSample | Unknown:
    engines = await start_engines(handler)
    async with make_scraper(**settings) as scraper:
        return (await scraper.scrape([pod], Endpoint(preset=SGLANG, port=engines.port)))[pod.name]


def sglang(_: Request) -> bytes:
    return response(200, SGLANG_TEXT)


async def test_sample_is_read_and_stamped_by_the_injected_clock(start_engines: StartEngines) -> None:
    seen: list[Request] = []

    def handler(request: Request) -> bytes:
        seen.append(request)
        return response(200, SGLANG_TEXT)

    engines = await start_engines(handler)
    async with make_scraper() as scraper:
        result = (await scraper.scrape([POD], Endpoint(preset=SGLANG, port=engines.port)))[POD.name]
    assert isinstance(result, EngineSample)
    assert result.timestamp_seconds == 1001.0
    assert result.prompt_tokens_total == 8.128902e06
    assert seen[0].target == "/metrics"
    assert seen[0].header("host") == [f"127.0.0.2:{engines.port}"]
    assert seen[0].header("accept-encoding") == ["identity"]
    assert seen[0].header("cookie") == []


def _fixed(reply: Reply) -> Handler:
    return lambda _: reply


@pytest.mark.parametrize(
    ("handler", "reason", "message"),
    [
        pytest.param(_fixed(HANG), UnknownReason.TIMEOUT, "within 0.5 s", id="no-answer"),
        pytest.param(_fixed(CLOSE), UnknownReason.TRANSPORT_ERROR, "ServerDisconnected", id="closed-without-answer"),
        pytest.param(_fixed(b"garbage\r\n\r\n"), UnknownReason.TRANSPORT_ERROR, "garbage", id="not-http"),
        pytest.param(_fixed(response(500)), UnknownReason.HTTP_STATUS, "HTTP 500", id="http-500"),
        pytest.param(
            _fixed(response(302, headers={"Location": "/elsewhere"})),
            UnknownReason.HTTP_STATUS,
            "HTTP 302",
            id="redirect-not-followed",
        ),
        pytest.param(
            _fixed(response(200, b"\x00garbage\xff\nno families here")),
            UnknownReason.NO_MATCHING_FAMILY,
            "no sglang metric family",
            id="junk",
        ),
        pytest.param(
            _fixed(response(200, b'sglang:num_running_reqs{model_name="m} 1\n')),
            UnknownReason.PARSE_ERROR,
            "malformed",
            id="bad-text",
        ),
        pytest.param(
            _fixed(response(200, b"sglang:token_usage NaN\n")),
            UnknownReason.PARSE_ERROR,
            "finite",
            id="nan-gauge",
        ),
        pytest.param(
            _fixed(response(200, b"x", headers={"Content-Encoding": "gzip"})),
            UnknownReason.PARSE_ERROR,
            "content-encoding 'gzip'",
            id="compressed-body",
        ),
        pytest.param(
            _fixed(response(200, b"x", headers={"content-encoding": "identity", "Content-Encoding": "br"})),
            UnknownReason.PARSE_ERROR,
            "content-encoding 'identity, br'",
            id="repeated-coding-header",
        ),
        pytest.param(
            _fixed(response(200, b"x" * 2048)), UnknownReason.TOO_LARGE, "declared 2048 bytes", id="declared-too-large"
        ),
    ],
)
async def test_failure_makes_the_pod_unknown_with_its_reason(
    start_engines: StartEngines, handler: Handler, reason: UnknownReason, message: str
) -> None:
    result = await scrape_one(start_engines, handler, max_body_bytes=1024, timeout_seconds=0.5)
    assert isinstance(result, Unknown)
    assert result.reason == reason
    assert message in result.message
    assert result.timestamp_seconds == 1001.0


async def test_body_cut_short_of_its_length_is_a_transport_error(start_engines: StartEngines) -> None:
    cut = response(200, b"sglang:num_running_reqs 1\n", headers={"Content-Length": "999", "Connection": "close"})
    result = await scrape_one(start_engines, _fixed(cut))
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.TRANSPORT_ERROR
    assert "received 26 of 999 bytes" in result.message


async def test_refused_connection_is_connection_failed(start_engines: StartEngines) -> None:
    # The engines listen on 127.0.0.2 only: the same port on 127.0.0.5 refuses.
    result = await scrape_one(start_engines, sglang, pod=PodTarget("gone", "127.0.0.5"))
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.CONNECTION_FAILED
    assert "127.0.0.5" in result.message


async def test_a_failing_preset_makes_the_pod_unknown_not_the_call_fail(start_engines: StartEngines) -> None:
    def broken(*_: object) -> float:
        raise RuntimeError("boom")

    preset = dataclasses.replace(
        SGLANG, derived=(DerivedField("kv_cache_capacity_tokens", ("sglang:num_running_reqs",), broken),)
    )
    engines = await start_engines(sglang)
    async with make_scraper() as scraper:
        result = (await scraper.scrape([POD], Endpoint(preset=preset, port=engines.port)))[POD.name]
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.INTERNAL_ERROR
    assert "RuntimeError: boom" in result.message


async def test_streamed_body_past_the_cap_stops_being_read_and_closes_the_connection(
    start_engines: StartEngines,
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        for _ in range(100_000):
            yield b"y" * 1000

    engines = await start_engines(_fixed(Streamed(endless())))
    async with make_scraper(max_body_bytes=10_000) as scraper:
        result = (await scraper.scrape([POD], Endpoint(preset=SGLANG, port=engines.port)))[POD.name]
        assert isinstance(result, Unknown)
        assert result.reason == UnknownReason.TOO_LARGE
        assert "exceeds the cap of 10000 bytes" in result.message
        for _ in range(200):  # the server sees its connection end while the scraper is still open
            if engines.ended[POD.ip] == 1:
                break
            await asyncio.sleep(0.01)
        assert engines.ended[POD.ip] == 1


async def test_slow_body_hits_the_total_deadline(start_engines: StartEngines) -> None:
    async def trickle() -> AsyncIterator[bytes]:
        yield b"sglang:num_running_reqs 1\n"
        await asyncio.sleep(30)
        yield b"sglang:num_queue_reqs 1\n"

    result = await scrape_one(start_engines, _fixed(Streamed(trickle())), timeout_seconds=0.05)
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.TIMEOUT


@pytest.mark.parametrize(
    ("ip", "allowed"),
    [
        pytest.param("127.0.0.3", ("127.0.0.2/32",), id="loopback-listener-outside-allowed-network"),
        pytest.param("192.0.2.10", ("127.0.0.0/8",), id="outside-allowed-network"),
        pytest.param("2001:db8::1", ("127.0.0.0/8",), id="ipv6-outside"),
        pytest.param("pod.example", ("127.0.0.0/8",), id="not-an-ip"),
        pytest.param("127.0.0.1:80", ("127.0.0.0/8",), id="ip-with-port"),
    ],
)
async def test_pod_outside_the_allowed_networks_is_never_dialled(
    start_engines: StartEngines, ip: str, allowed: tuple[str, ...]
) -> None:
    dialled: list[Request] = []

    def handler(request: Request) -> bytes:
        dialled.append(request)
        return response(200, SGLANG_TEXT)

    engines = await start_engines(handler, ips=("127.0.0.2", "127.0.0.3"))
    networks = tuple(ipaddress.ip_network(network) for network in allowed)
    async with Scraper(ScrapeSettings(allowed_networks=networks)) as scraper:
        result = (await scraper.scrape([PodTarget("p", ip)], Endpoint(preset=SGLANG, port=engines.port)))["p"]
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.NOT_ALLOWED
    assert dialled == []
    assert engines.accepted == {"127.0.0.2": 0, "127.0.0.3": 0}


async def test_every_pod_gets_one_answer_per_call_and_failures_stay_per_pod(start_engines: StartEngines) -> None:
    def handler(request: Request) -> bytes:
        return response(503) if request.ip == "127.0.0.3" else response(200, SGLANG_TEXT)

    engines = await start_engines(handler, ips=("127.0.0.2", "127.0.0.3", "127.0.0.4"))
    pods = [PodTarget("a", "127.0.0.2"), PodTarget("b", "127.0.0.3"), PodTarget("c", "127.0.0.4")]
    async with make_scraper() as scraper:
        for _ in range(2):
            results = await scraper.scrape(pods, Endpoint(preset=SGLANG, port=engines.port))
            assert list(results) == ["a", "b", "c"]
            assert isinstance(results["a"], EngineSample)
            assert isinstance(results["b"], Unknown)
            assert isinstance(results["c"], EngineSample)


async def test_concurrency_is_bounded(start_engines: StartEngines) -> None:
    in_flight = 0
    peak = 0

    async def handler(request: Request) -> bytes:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return response(200, SGLANG_TEXT)

    ips = [f"127.0.1.{i}" for i in range(1, 21)]
    engines = await start_engines(handler, ips=ips)
    pods = [PodTarget(f"p{i}", ip) for i, ip in enumerate(ips)]
    async with make_scraper(max_concurrency=3) as scraper:
        results = await scraper.scrape(pods, Endpoint(preset=SGLANG, port=engines.port))
    assert all(isinstance(r, EngineSample) for r in results.values())
    assert peak == 3


async def test_cookies_from_pods_are_not_kept(start_engines: StartEngines) -> None:
    cookies_sent: list[list[str]] = []

    def handler(request: Request) -> bytes:
        cookies_sent.append(request.header("cookie"))
        return response(200, SGLANG_TEXT, headers={"Set-Cookie": "session=abc"})

    engines = await start_engines(handler)
    async with make_scraper() as scraper:
        for _ in range(2):
            await scraper.scrape([POD], Endpoint(preset=SGLANG, port=engines.port))
    assert cookies_sent == [[], []]


async def test_pod_source_implements_the_metrics_source_protocol(start_engines: StartEngines) -> None:
    engines = await start_engines(sglang)
    async with make_scraper() as scraper:
        source: MetricsSource = PodMetricsSource(scraper, Endpoint(preset=SGLANG, port=engines.port))
        results = await source.sample([POD])
    assert isinstance(results[POD.name], EngineSample)


async def test_model_name_filter_applies_to_scrapes(start_engines: StartEngines) -> None:
    engines = await start_engines(sglang)
    endpoint = Endpoint(preset=SGLANG, port=engines.port, model_name="another-model")
    async with make_scraper() as scraper:
        result = (await scraper.scrape([POD], endpoint))[POD.name]
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.NO_MATCHING_FAMILY
    assert "another-model" in result.message
