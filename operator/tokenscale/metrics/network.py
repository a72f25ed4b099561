"""httpcore's network layer on plain asyncio streams, for the scraper's per-request cost.

httpcore reaches the network through a backend (``httpcore.AsyncNetworkBackend``, its documented extension
point). Its default under asyncio is anyio, which wraps every read and write in a cancel scope
(``anyio.fail_after``, also when no timeout is set) and answers ``is_readable`` through typed-attribute
look-ups: measured here, about 60 µs of CPU per scrape, a quarter of the scrape's HTTP cost
(docs/benchmarks.md, issue 3). `AsyncioBackend` maps the same five operations onto
`asyncio.open_connection` streams; timeouts, when httpcore passes one, are `asyncio.timeout`, and errors
are raised as httpcore's own exception types, so everything above the backend (h11, keep-alive, the
connection's state machine) is httpcore's unchanged.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

__all__ = ["AsyncioBackend", "AsyncioStream"]

_EXTRA_INFO = {"ssl_object": "ssl_object", "client_addr": "sockname", "server_addr": "peername", "socket": "socket"}
"""httpcore's ``get_extra_info`` names and the asyncio transport's names for the same thing."""


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection as an asyncio stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 (httpcore's)
        try:
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as error:
            raise httpcore.ReadTimeout(str(error)) from error
        except OSError as error:
            raise httpcore.ReadError(str(error) or type(error).__name__) from error

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 (httpcore's)
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            if timeout is None:
                await self._writer.drain()
            else:
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
        except TimeoutError as error:
            raise httpcore.WriteTimeout(str(error)) from error
        except OSError as error:
            raise httpcore.WriteError(str(error) or type(error).__name__) from error

    async def aclose(self) -> None:
        # Not awaiting `wait_closed`: the transport closes the socket on its own after flushing, and a close
        # must not wait on a peer (httpcore closes connections under cancellation shields).
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> AsyncioStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except BaseException as error:
            self._writer.close()  # also when cancelled: nothing else holds this connection yet
            if isinstance(error, TimeoutError):
                raise httpcore.ConnectTimeout(str(error)) from error
            if isinstance(error, OSError):  # ssl.SSLError included: a certificate that does not verify
                raise httpcore.ConnectError(str(error) or type(error).__name__) from error
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of an idle kept-alive connection before reusing it: readable means the server
            # closed it. The transport reads eagerly, so a close shows as EOF in the reader, or as a closing
            # transport after a reset. (Bytes a server sends unasked on an idle connection are not seen here;
            # the next request on it then fails as a protocol error, as after any server fault.)
            return self._reader.at_eof() or self._writer.is_closing()
        name = _EXTRA_INFO.get(info)
        return None if name is None else self._writer.get_extra_info(name)


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """TCP connections for httpcore through `asyncio.open_connection` (TCP_NODELAY is asyncio's default)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> AsyncioStream:
        if socket_options:
            raise ValueError("socket options are not supported by this backend")
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=None if local_address is None else (local_address, 0)
                )
        except TimeoutError as error:
            raise httpcore.ConnectTimeout(str(error)) from error
        except OSError as error:
            raise httpcore.ConnectError(str(error) or type(error).__name__) from error
        return AsyncioStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
