"""Engines on real loopback sockets for the scraper's tests: each request is answered by a handler.

A handler receives the `Request` (the loopback IP it came to, its target and headers) and returns what the
server does: `response(...)` bytes written as they are (a well-formed answer, or anything else), a `Streamed`
body written chunk by chunk, `ThenClose` (an answer, then the connection ended without saying so, as a
keep-alive timeout does), `HANG` (never answer), or `CLOSE` (end the connection without an answer). The
server is raw asyncio rather than an HTTP framework, because the tests need answers no framework would send:
lying lengths, broken framing, bodies that never end.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    ip: str
    target: str
    headers: dict[str, list[str]]
    """Lower-cased names, each with its values in the order sent."""

    def header(self, name: str) -> list[str]:
        return self.headers.get(name.lower(), [])


class Action(enum.Enum):
    HANG = "hang"
    CLOSE = "close"


HANG = Action.HANG
CLOSE = Action.CLOSE


@dataclass(frozen=True)
class Streamed:
    """A 200 answer without a length, its body the chunks (the connection closes after the last one)."""

    chunks: AsyncIterator[bytes]
    status: int = 200


@dataclass(frozen=True)
class ThenClose:
    """``answer`` written, then the connection closed without a ``Connection: close`` header."""

    answer: bytes


Reply = bytes | Streamed | ThenClose | Action
Handler = Callable[[Request], Reply | Awaitable[Reply]]


def response(status: int, content: bytes = b"", *, headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 answer with ``content`` and its Content-Length (unless ``headers`` gives one)."""
    fields = {"Content-Length": str(len(content)), **(headers or {})}
    head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return head.encode("latin-1") + b"\r\n" + content


@dataclass
class Engines:
    """HTTP servers on loopback IPs sharing one port, answering with ``handler``; counts the connections each IP
    accepted and the ones that ended."""

    handler: Handler
    port: int = 0
    accepted: dict[str, int] = field(default_factory=dict)
    ended: dict[str, int] = field(default_factory=dict)
    _servers: list[asyncio.Server] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, ips: Sequence[str], *, tls: ssl.SSLContext | None = None) -> Engines:
        for ip in ips:
            self.accepted[ip] = self.ended[ip] = 0
            server = await asyncio.start_server(self._connection(ip), ip, self.port, ssl=tls)
            self.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        return self

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def _connection(self, ip: str) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted[ip] += 1
            task = asyncio.current_task()
            assert task is not None
            self._tasks.append(task)
            try:
                while await self._answer(ip, await reader.readuntil(b"\r\n\r\n"), reader, writer):
                    pass
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            finally:
                self.ended[ip] += 1
                writer.close()

        return handle

    async def _answer(self, ip: str, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection carries another."""
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
        reply = self.handler(Request(ip=ip, target=request_line.split(" ")[1], headers=headers))
        if inspect.isawaitable(reply):
            reply = await reply
        if reply is HANG:
            await reader.read()  # until the client gives up and closes
        if isinstance(reply, Action):
            return False
        if isinstance(reply, ThenClose):
            writer.write(reply.answer)
            await writer.drain()
            return False
        if isinstance(reply, Streamed):
            writer.write(f"HTTP/1.1 {reply.status} X\r\nConnection: close\r\n\r\n".encode())
            async for chunk in reply.chunks:
                writer.write(chunk)
                await writer.drain()
            return False
        writer.write(reply)
        await writer.drain()
        return b"connection: close" not in reply.split(b"\r\n\r\n", 1)[0].lower()


StartEngines = Callable[..., Awaitable[Engines]]
