"""Many engine ``/metrics`` endpoints in one process: one keep-alive HTTP/1.1 listener per loopback address.

``python -m benchmarks.exposition_server --count 500`` binds 127.203.0.1, 127.203.0.2, ... (one port for
all, like pods that share a container port), prints ``{"port": P, "addresses": [...]}`` as one JSON line
once listening, and serves the generated vLLM payload (`benchmarks.vllm_payload`) until stdin closes. A request
whose query names samples (``?name[]=…``, as the vLLM preset sends) is answered as vLLM's prometheus_client
exposition answers it: only those samples (`benchmarks.restricted_exposition`, rendered once per distinct
query). The server is plain asyncio protocols (no framework), so it costs little next to the scraper it feeds,
and it runs in its own process so the scraper's CPU time can be measured alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys

from benchmarks.restricted_exposition import requested_names, restricted
from benchmarks.vllm_payload import vllm_exposition

ADDRESS_PREFIX = "127.203"


def address(index: int) -> str:
    return f"{ADDRESS_PREFIX}.{index // 250}.{index % 250 + 1}"


def _response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


class _Responses:
    """The response to each request target: the whole payload, or its restricted view for a ``name[]`` query."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._whole = _response(text.encode())
        self._by_target: dict[bytes, bytes] = {}

    def for_request(self, head: bytes) -> bytes:
        target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
        found = self._by_target.get(target)
        if found is None:
            names = requested_names(target.decode("latin-1"))
            found = self._whole if names is None else _response(restricted(self._text, names))
            self._by_target[target] = found
        return found


class _MetricsProtocol(asyncio.Protocol):
    def __init__(self, responses: _Responses) -> None:
        self._responses = responses
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
            assert self._transport is not None
            self._transport.write(self._responses.for_request(head))


async def serve(count: int, text: str) -> None:
    responses = _Responses(text)
    loop = asyncio.get_running_loop()
    with socket.socket() as probe:  # one free port, then the same port on every address
        probe.bind((address(0), 0))
        port = probe.getsockname()[1]
    servers = [
        await loop.create_server(lambda: _MetricsProtocol(responses), address(index), port, backlog=1024)
        for index in range(count)
    ]
    print(json.dumps({"port": port, "addresses": [address(i) for i in range(count)]}), flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # serve until the parent closes our stdin
    for server in servers:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--engines", type=int, default=1, help="data-parallel engines in the payload")
    arguments = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a listener and a connection per endpoint
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * arguments.count + 64)), hard))
    asyncio.run(serve(arguments.count, vllm_exposition(engines=arguments.engines)))


if __name__ == "__main__":
    main()
