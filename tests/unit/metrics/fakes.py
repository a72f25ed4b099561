"""A scraper transport without sockets: every request is answered by a handler, as httpx's MockTransport does."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import httpcore

Handler = Callable[[httpcore.Request], httpcore.Response | Awaitable[httpcore.Response]]


class MockTransport:
    """Implements `tokenscale.metrics.transport.Transport` by calling ``handler`` (plain or async)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.closed = False

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        response = self._handler(request)
        if inspect.isawaitable(response):
            response = await response
        return response

    async def aclose(self) -> None:
        self.closed = True


def response(status: int, content: bytes = b"", *, headers: dict[str, str] | None = None) -> httpcore.Response:
    """A response with ``content`` and its Content-Length, as a server sends it."""
    fields = [("Content-Length", str(len(content))), *(headers or {}).items()]
    return httpcore.Response(status, headers=fields, content=content)
