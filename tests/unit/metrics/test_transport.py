"""The scraper's own transport on real loopback sockets: one kept connection per pod, replaced when the server
closes it, never reused after an unread body or a missed deadline, TLS verified, idle connections bounded."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tokenscale.core.types import EngineSample
from tokenscale.devcluster import pki
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.scraper import Endpoint, Scraper, ScrapeSettings
from tokenscale.metrics.source import PodTarget, Unknown, UnknownReason
from tokenscale.metrics.transport import KeptConnections

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
BODY = (FIXTURES / "sglang-metrics.txt").read_bytes()
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
POD_A = PodTarget("a", "127.0.0.2")
POD_B = PodTarget("b", "127.0.0.3")

Connection = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A well-behaved engine: answers every request on the connection."""
    while await reader.readuntil(b"\r\n\r\n"):
        writer.write(ANSWER)
        await writer.drain()


async def close_after_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one request, then closes the idle connection without saying so (a keep-alive timeout)."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(ANSWER)
    await writer.drain()
    writer.close()


async def announce_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers one request with ``Connection: close``."""
    await reader.readuntil(b"\r\n\r\n")
    writer.write(ANSWER.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
    await writer.drain()


@dataclass
class Servers:
    """Engines on several loopback IPs, one port; counts the connections each IP accepted and their ends."""

    port: int = 0
    accepted: dict[str, int] = field(default_factory=dict)
    ended: dict[str, int] = field(default_factory=dict)
    servers: list[asyncio.Server] = field(default_factory=list)
    handlers: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, ips: list[str], connection: Connection, *, tls: ssl.SSLContext | None = None) -> None:
        for ip in ips:
            self.accepted[ip] = self.ended[ip] = 0
            server = await asyncio.start_server(self._counting(ip, connection), ip, self.port, ssl=tls)
            self.port = server.sockets[0].getsockname()[1]
            self.servers.append(server)

    def _counting(self, ip: str, connection: Connection) -> Connection:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted[ip] += 1
            task = asyncio.current_task()
            assert task is not None
            self.handlers.append(task)
            try:
                await connection(reader, writer)
                if not writer.is_closing():
                    await reader.read()  # until the client closes
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            finally:
                self.ended[ip] += 1
                writer.close()

        return handle

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        for server in self.servers:
            await server.wait_closed()


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    started = Servers()
    try:
        yield started
    finally:
        await started.stop()


def scraper_for(transport: KeptConnections, **settings: Any) -> Scraper:
    return Scraper(ScrapeSettings(allowed_networks=LOOPBACK, **settings), transport=transport)


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 2 s")


@pytest.mark.parametrize(
    ("connection", "pause_seconds", "expected_connections"),
    [
        pytest.param(keep_alive, 0.0, 1, id="kept-alive-between-scrapes"),
        pytest.param(announce_close, 0.0, 3, id="server-says-connection-close"),
        pytest.param(close_after_answer, 0.1, 3, id="server-closes-idle-connection"),
    ],
)
async def test_each_pod_keeps_one_connection_until_the_server_ends_it(
    servers: Servers, connection: Connection, pause_seconds: float, expected_connections: int
) -> None:
    await servers.start([POD_A.ip], connection)
    endpoint = Endpoint(preset=preset_for("sglang"), port=servers.port)
    transport = KeptConnections()
    async with scraper_for(transport) as scraper:
        for _ in range(3):
            result = (await scraper.scrape([POD_A], endpoint))[POD_A.name]
            assert isinstance(result, EngineSample), result
            await asyncio.sleep(pause_seconds)
    assert servers.accepted[POD_A.ip] == expected_connections


async def test_a_connection_whose_body_was_not_read_is_never_reused(servers: Servers) -> None:
    await servers.start([POD_A.ip], keep_alive)
    endpoint = Endpoint(preset=preset_for("sglang"), port=servers.port)
    transport = KeptConnections()
    async with scraper_for(transport, max_body_bytes=100) as scraper:
        for _ in range(2):
            result = (await scraper.scrape([POD_A], endpoint))[POD_A.name]
            assert isinstance(result, Unknown)
            assert result.reason == UnknownReason.TOO_LARGE
        assert transport.idle_count == 0
        await eventually(lambda: servers.ended[POD_A.ip] == 2)
    assert servers.accepted[POD_A.ip] == 2


async def test_overlapping_scrapes_of_one_pod_each_get_a_connection_and_one_is_kept(servers: Servers) -> None:
    await servers.start([POD_A.ip], keep_alive)
    endpoint = Endpoint(preset=preset_for("sglang"), port=servers.port)
    transport = KeptConnections()
    async with scraper_for(transport) as scraper:
        both = await asyncio.gather(scraper.scrape([POD_A], endpoint), scraper.scrape([POD_A], endpoint))
        assert all(isinstance(results[POD_A.name], EngineSample) for results in both)
        assert transport.idle_count == 1
        await eventually(lambda: servers.ended[POD_A.ip] == 1)  # the surplus one is closed
        assert isinstance((await scraper.scrape([POD_A], endpoint))[POD_A.name], EngineSample)
    assert servers.accepted[POD_A.ip] == 2


async def test_a_missed_deadline_closes_the_connection(servers: Servers) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")

    await servers.start([POD_A.ip], never_answer)
    endpoint = Endpoint(preset=preset_for("sglang"), port=servers.port)
    transport = KeptConnections()
    async with scraper_for(transport, timeout_seconds=0.1) as scraper:
        result = (await scraper.scrape([POD_A], endpoint))[POD_A.name]
        assert isinstance(result, Unknown)
        assert result.reason == UnknownReason.TIMEOUT
        assert transport.idle_count == 0
        await eventually(lambda: servers.ended[POD_A.ip] == 1)


async def _truncated_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(ANSWER[: len(ANSWER) // 2])
    writer.close()


async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        pytest.param(_truncated_body, "RemoteProtocolError", id="body-cut-short"),
        pytest.param(_not_http, "RemoteProtocolError", id="not-http"),
    ],
)
async def test_a_server_breaking_http_is_a_transport_error(
    servers: Servers, connection: Connection, message: str
) -> None:
    await servers.start([POD_A.ip], connection)
    endpoint = Endpoint(preset=preset_for("sglang"), port=servers.port)
    async with scraper_for(KeptConnections()) as scraper:
        result = (await scraper.scrape([POD_A], endpoint))[POD_A.name]
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.TRANSPORT_ERROR
    assert message in result.message


async def test_idle_connections_beyond_the_bound_are_closed_least_recent_first(servers: Servers) -> None:
    await servers.start([POD_A.ip, POD_B.ip], keep_alive)
    endpoint = Endpoint(preset=preset_for("sglang"), port=servers.port)
    transport = KeptConnections(max_origins=1)
    async with scraper_for(transport) as scraper:
        for pod in (POD_A, POD_B):
            assert isinstance((await scraper.scrape([pod], endpoint))[pod.name], EngineSample)
        assert transport.idle_count == 1
        await eventually(lambda: servers.ended == {POD_A.ip: 1, POD_B.ip: 0})


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
    servers: Servers, certificates: pki.Pki, trust_the_ca: bool, expected: str | None
) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(certificates.serving_cert, certificates.serving_key)
    await servers.start(["127.0.0.1"], keep_alive, tls=server_tls)
    client_tls = ssl.create_default_context(cafile=str(certificates.ca_cert)) if trust_the_ca else None
    endpoint = Endpoint(preset=preset_for("sglang"), port=servers.port, scheme="https")
    pod = PodTarget("tls", "127.0.0.1")
    async with scraper_for(KeptConnections(ssl_context=client_tls)) as scraper:
        result = (await scraper.scrape([pod], endpoint))[pod.name]
    if expected is None:
        assert isinstance(result, EngineSample), result
    else:
        assert isinstance(result, Unknown)
        assert result.reason == UnknownReason.CONNECTION_FAILED
        assert expected in result.message
