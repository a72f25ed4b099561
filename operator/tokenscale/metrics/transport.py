"""The scraper's HTTP transport: one kept-alive httpcore connection per origin (pod IP and port).

Every tick scrapes each pod once, so what a pod needs is one warm HTTP/1.1 connection between ticks. httpcore's
own `AsyncConnectionPool` is built for many requests sharing connections: it assigns each request by scanning
every connection it holds (encode/httpcore#1035; with 500 pods in one pool, about 20 ms of CPU per request)
and, even as one small pool per origin, its request queue, events and shielded closes (with the lazily
connecting `AsyncHTTPConnection` it holds) cost about 80 µs of CPU per request, over a third of the scrape's
HTTP cost here (docs/benchmarks.md, issue 3). `KeptConnections` holds instead one idle
`httpcore.AsyncHTTP11Connection` per origin:

- a request takes its origin's idle connection out (or opens a new one if there is none, or if the kept one
  has expired or the server closed it), so a second request to the same origin while the first is in flight
  simply gets a connection of its own;
- when the response is closed, the connection goes back as the origin's idle one if it can carry another
  request (the body was read to its end) and the origin has none; otherwise it is closed. A body that is not
  read to its end (the size cap) or a failed request therefore closes its connection, as httpcore does;
- at most ``max_origins`` idle connections are kept; beyond that the least recently used is closed (pods come
  and go).

HTTP itself (h11, the connection's state, keep-alive expiry, noticing a connection the server closed) is
httpcore's `AsyncHTTP11Connection`; connecting and TLS are the asyncio network backend's
(`tokenscale.metrics.network`). httpcore's `AsyncHTTPConnection` would connect lazily under a lock of its own,
which costs a loop round trip per request and buys nothing when the connection is made just before use.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

import httpcore

from tokenscale.metrics.network import AsyncioBackend

__all__ = ["KeptConnections", "Transport"]

OriginKey = tuple[bytes, bytes, int | None]


class Transport(Protocol):
    """What the scraper sends requests through (httpcore's request interface, plus closing)."""

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        """Send ``request``; the response's body is read from its stream, and the response must be closed."""
        ...

    async def aclose(self) -> None: ...


class KeptConnections:
    """One idle kept-alive connection per origin, LRU-bounded; see the module docstring.

    ``ssl_context`` verifies https origins (default: the system's trust store, loaded on the first https
    request); ``keepalive_expiry_seconds`` closes an idle connection that old rather than reuse it.
    """

    def __init__(
        self,
        *,
        max_origins: int = 4096,
        keepalive_expiry_seconds: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._idle: OrderedDict[OriginKey, httpcore.AsyncHTTP11Connection] = OrderedDict()
        self._max_origins = max_origins
        self._keepalive_expiry_seconds = keepalive_expiry_seconds
        self._ssl_context = ssl_context
        self._backend = network_backend or AsyncioBackend()
        self._closed = False

    @property
    def idle_count(self) -> int:
        """Idle connections kept now."""
        return len(self._idle)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        if url.scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        key = (url.scheme, url.host, url.port)
        connection = self._idle.pop(key, None)
        if connection is not None and (not connection.is_idle() or connection.has_expired()):
            await connection.aclose()
            connection = None
        if connection is None:
            connection = await self._connect(url.origin)
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            await connection.aclose()
            raise
        body = response.stream
        assert isinstance(body, AsyncIterable)  # an async connection's body
        response.stream = _ReturnOnClose(body, owner=self, key=key, connection=connection)
        return response

    async def aclose(self) -> None:
        self._closed = True
        idle = list(self._idle.values())
        self._idle.clear()
        for connection in idle:
            await connection.aclose()

    async def _give_back(self, key: OriginKey, connection: httpcore.AsyncHTTP11Connection) -> None:
        """Keep ``connection`` as the origin's idle one if it can carry another request, else close it."""
        if self._closed or not connection.is_idle() or key in self._idle:
            await connection.aclose()
            return
        self._idle[key] = connection
        if len(self._idle) > self._max_origins:
            _, evicted = self._idle.popitem(last=False)
            await evicted.aclose()

    async def _connect(self, origin: httpcore.Origin) -> httpcore.AsyncHTTP11Connection:
        """A new HTTP/1.1 connection to ``origin``, over TLS for https (the context verifies the certificate
        and that it names the host)."""
        host = origin.host.decode("ascii")
        stream = await self._backend.connect_tcp(host, origin.port)
        if origin.scheme == b"https":
            stream = await stream.start_tls(self._tls(), server_hostname=host)
        return httpcore.AsyncHTTP11Connection(origin, stream, keepalive_expiry=self._keepalive_expiry_seconds)

    def _tls(self) -> ssl.SSLContext:
        # One context for every connection: building one loads the CA bundle (tens of ms).
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
            self._ssl_context.set_alpn_protocols(["http/1.1"])
        return self._ssl_context


class _ReturnOnClose:
    """A response body that hands its connection back to `KeptConnections` when the response is closed."""

    def __init__(
        self,
        body: AsyncIterable[bytes],
        *,
        owner: KeptConnections,
        key: OriginKey,
        connection: httpcore.AsyncHTTP11Connection,
    ) -> None:
        self._body = body
        self._owner = owner
        self._key = key
        self._connection = connection
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body.__aiter__()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        inner_close = getattr(self._body, "aclose", None)
        if inner_close is not None:
            await inner_close()
        await self._owner._give_back(self._key, self._connection)
