"""The scraper's connections on real loopback sockets: one kept alive per pod, replaced when the server ends it,
never reused after an unread body or a missed deadline, closed when idle too long; TLS verified."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.unit.metrics.fakes import HANG, Engines, Handler, Request, StartEngines, ThenClose, response

from tokenscale.core.types import EngineSample
from tokenscale.devcluster import pki
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.scraper import Endpoint, Scraper, ScrapeSettings
from tokenscale.metrics.source import PodTarget, SampleOrUnknown, Unknown, UnknownReason

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
ANSWER = response(200, (FIXTURES / "sglang-metrics.txt").read_bytes())
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
POD = PodTarget("a", "127.0.0.2")


def keep_alive(_: Request) -> bytes:
    return ANSWER


def announce_close(_: Request) -> bytes:
    return ANSWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)


def close_after_answer(_: Request) -> ThenClose:
    return ThenClose(ANSWER)


def scraper(**settings: Any) -> Scraper:
    return Scraper(ScrapeSettings(allowed_networks=LOOPBACK, **settings))


async def scrape(scraper_: Scraper, engines: Engines, pod: PodTarget = POD) -> SampleOrUnknown:
    return (await scraper_.scrape([pod], Endpoint(preset=preset_for("sglang"), port=engines.port)))[pod.name]


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 3 s")


@pytest.mark.parametrize(
    ("handler", "pause_seconds", "expected_connections"),
    [
        pytest.param(keep_alive, 0.0, 1, id="kept-alive-between-scrapes"),
        pytest.param(announce_close, 0.0, 3, id="server-says-connection-close"),
        pytest.param(close_after_answer, 0.1, 3, id="server-closes-idle-connection"),
    ],
)
async def test_each_pod_keeps_one_connection_until_the_server_ends_it(
    start_engines: StartEngines, handler: Handler, pause_seconds: float, expected_connections: int
) -> None:
    engines = await start_engines(handler)
    async with scraper() as scraper_:
        for _ in range(3):
            assert isinstance(await scrape(scraper_, engines), EngineSample)
            await asyncio.sleep(pause_seconds)
    assert engines.accepted[POD.ip] == expected_connections


async def test_a_connection_with_an_unread_body_is_closed_not_reused(start_engines: StartEngines) -> None:
    # 8 MB cannot have arrived with the headers: the body is still on the wire when the cap refuses it.
    engines = await start_engines(lambda _: response(200, b"#" * 8_000_000))
    async with scraper(max_body_bytes=100) as scraper_:
        for _ in range(2):
            result = await scrape(scraper_, engines)
            assert isinstance(result, Unknown)
            assert result.reason == UnknownReason.TOO_LARGE
        await eventually(lambda: engines.ended[POD.ip] == 2)
    assert engines.accepted[POD.ip] == 2


async def test_overlapping_scrapes_of_one_pod_each_get_a_connection_then_reuse_them(
    start_engines: StartEngines,
) -> None:
    engines = await start_engines(keep_alive)
    async with scraper() as scraper_:
        both = await asyncio.gather(scrape(scraper_, engines), scrape(scraper_, engines))
        assert all(isinstance(result, EngineSample) for result in both)
        for _ in range(3):
            assert isinstance(await scrape(scraper_, engines), EngineSample)
    assert engines.accepted[POD.ip] == 2


async def test_a_missed_deadline_closes_the_connection(start_engines: StartEngines) -> None:
    engines = await start_engines(lambda _: HANG)
    async with scraper(timeout_seconds=0.1) as scraper_:
        result = await scrape(scraper_, engines)
        assert isinstance(result, Unknown)
        assert result.reason == UnknownReason.TIMEOUT
        await eventually(lambda: engines.ended[POD.ip] == 1)


async def test_a_connection_idle_longer_than_the_keepalive_is_closed(start_engines: StartEngines) -> None:
    engines = await start_engines(keep_alive, ips=("127.0.0.2", "127.0.0.3"))
    other = PodTarget("b", "127.0.0.3")
    # A keep-alive ten times the other pod's scrape interval, so that a loaded machine cannot make its connection
    # look idle; the first pod's goes after 1–2 s (the connector checks once per keep-alive).
    async with scraper(keepalive_seconds=1.0) as scraper_:
        assert isinstance(await scrape(scraper_, engines), EngineSample)
        for _ in range(25):  # the other pod keeps being scraped, so its connection stays warm
            await asyncio.sleep(0.1)
            assert isinstance(await scrape(scraper_, engines, other), EngineSample)
        await eventually(lambda: engines.ended[POD.ip] == 1)
        assert engines.ended[other.ip] == 0
        assert isinstance(await scrape(scraper_, engines), EngineSample)
    assert engines.accepted == {POD.ip: 2, other.ip: 1}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    """A CA and a serving certificate for 127.0.0.1 (made with openssl, as the local control plane's)."""
    return pki.create_pki(tmp_path_factory.mktemp("pki"))


@pytest.mark.parametrize(
    ("trust_the_ca", "expected"),
    [
        pytest.param(True, None, id="trusted-certificate"),
        pytest.param(False, "certificate verify failed", id="untrusted-certificate"),
    ],
)
async def test_https_scrapes_verify_the_server_certificate(
    start_engines: StartEngines, certificates: pki.Pki, trust_the_ca: bool, expected: str | None
) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certificates.serving_cert, certificates.serving_key)
    engines = await start_engines(keep_alive, ips=("127.0.0.1",), tls=server_tls)
    client_tls = ssl.create_default_context(cafile=str(certificates.ca_cert)) if trust_the_ca else None
    endpoint = Endpoint(preset=preset_for("sglang"), port=engines.port, scheme="https")
    pod = PodTarget("tls", "127.0.0.1")
    async with Scraper(ScrapeSettings(allowed_networks=LOOPBACK), tls_context=client_tls) as scraper_:
        result = (await scraper_.scrape([pod], endpoint))[pod.name]
    if expected is None:
        assert isinstance(result, EngineSample), result
    else:
        assert isinstance(result, Unknown)
        assert result.reason == UnknownReason.CONNECTION_FAILED
        assert expected in result.message
