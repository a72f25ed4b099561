"""Fixtures of the metrics tests."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence

import pytest
from tests.unit.metrics.fakes import Engines, Handler, StartEngines


@pytest.fixture
async def start_engines() -> AsyncIterator[StartEngines]:
    """Starts `Engines` on loopback IPs (default 127.0.0.2) with a handler, over TLS with ``tls``; all are stopped
    at teardown."""
    started: list[Engines] = []

    async def start(
        handler: Handler, ips: Sequence[str] = ("127.0.0.2",), *, tls: ssl.SSLContext | None = None
    ) -> Engines:
        engines = await Engines(handler).start(ips, tls=tls)
        started.append(engines)
        return engines

    try:
        yield start
    finally:
        for engines in started:
            await engines.stop()
