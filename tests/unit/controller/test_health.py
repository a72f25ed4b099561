"""The liveness probe: stalled when a managed service's ticks stop completing, healthy when none is managed.

`Heartbeats` runs on an injected clock; the probe handler is then served by kopf's own health endpoint (the
code `kopf.run(liveness_endpoint=...)` starts) on 127.0.0.1, to show a stall answers HTTP 500 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import kopf
import pytest
from kopf._core.engines import indexing, probing  # kopf's health server as kopf.run starts it: no public entry
from prometheus_client import CollectorRegistry
from tests.unit.controller.fakes import FakeCluster, FakeScraper

from tokenscale.controller import handlers, health, telemetry
from tokenscale.kube.client import ConnectionCredentials

STALL_SECONDS = 30.0


@pytest.mark.parametrize(
    ("interval_seconds", "silent_seconds", "stalled"),
    [
        # limit = max(30 s, 3 x interval)
        pytest.param(1.0, 29.0, False, id="1s-tick-silent-29s-within-the-30s-floor"),
        pytest.param(1.0, 31.0, True, id="1s-tick-silent-31s-past-the-30s-floor"),
        pytest.param(20.0, 59.0, False, id="20s-tick-silent-59s-within-3-intervals"),
        pytest.param(20.0, 61.0, True, id="20s-tick-silent-61s-past-3-intervals"),
    ],
)
def test_a_service_stalls_after_the_larger_of_the_floor_and_three_intervals(
    interval_seconds: float, silent_seconds: float, stalled: bool
) -> None:
    beats = health.Heartbeats(stall_seconds=STALL_SECONDS)
    beats.start("uid", service="ns/svc", interval_seconds=5.0, now_seconds=100.0)
    beats.beat("uid", interval_seconds=interval_seconds, now_seconds=200.0)
    stalls = beats.stalled(now_seconds=200.0 + silent_seconds)
    assert [s.service for s in stalls] == (["ns/svc"] if stalled else [])


def test_a_started_daemon_has_the_full_limit_for_its_first_tick() -> None:
    beats = health.Heartbeats(stall_seconds=STALL_SECONDS)
    beats.start("uid", service="ns/svc", interval_seconds=1.0, now_seconds=100.0)
    assert beats.stalled(now_seconds=100.0 + STALL_SECONDS) == []
    assert [str(s) for s in beats.stalled(now_seconds=100.0 + STALL_SECONDS + 1)] == [
        "ns/svc: no tick completed for 31 s (limit 30 s)"
    ]


def test_only_the_silent_service_is_reported_and_a_stopped_one_is_forgotten() -> None:
    beats = health.Heartbeats(stall_seconds=STALL_SECONDS)
    for key, service in (("b", "ns/b"), ("a", "ns/a"), ("c", "ns/c")):
        beats.start(key, service=service, interval_seconds=1.0, now_seconds=0.0)
    beats.beat("c", interval_seconds=1.0, now_seconds=50.0)
    assert [s.service for s in beats.stalled(now_seconds=60.0)] == ["ns/a", "ns/b"]
    beats.stop("a")
    beats.stop("b")
    assert (beats.stalled(now_seconds=60.0), len(beats)) == ([], 1)


def test_no_managed_service_is_healthy_however_long_ago() -> None:
    beats = health.Heartbeats(stall_seconds=STALL_SECONDS)
    beats.start("uid", service="ns/svc", interval_seconds=1.0, now_seconds=0.0)
    beats.stop("uid")
    beats.beat("uid", interval_seconds=1.0, now_seconds=1.0)  # a late beat of a stopped daemon changes nothing
    assert (beats.stalled(now_seconds=1e9), len(beats)) == ([], 0)


# -- the probe, served by kopf -------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def _runtime(clock: _Clock) -> handlers.Runtime:
    async def close(_: object) -> None:
        return None

    return handlers.Runtime(
        cluster=FakeCluster(),
        credentials=ConnectionCredentials(
            server="https://127.0.0.1:6443",
            ca_path=None,
            insecure=True,
            token=None,
            scheme=None,
            certificate_path=None,
            private_key_path=None,
            username=None,
            password=None,
        ),
        metrics=telemetry.OperatorMetrics(CollectorRegistry()),
        make_scraper=FakeScraper,
        close_scraper=close,
        heartbeats=health.Heartbeats(stall_seconds=STALL_SECONDS),
        monotonic=clock,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def _health_server(runtime: handlers.Runtime) -> AsyncIterator[str]:
    url = f"http://127.0.0.1:{_free_port()}/healthz"
    ready = asyncio.Event()
    server = asyncio.create_task(
        probing.health_reporter(
            url,
            memo=kopf.Memo(),
            indices=indexing.OperatorIndexers().indices,
            registry=handlers.build_registry(runtime),
            settings=kopf.OperatorSettings(),
            ready_flag=ready,
        )
    )
    await ready.wait()
    try:
        yield url
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server


async def test_kopf_answers_500_for_a_stalled_service_and_200_otherwise() -> None:
    clock = _Clock()
    runtime = _runtime(clock)
    runtime.heartbeats.start("uid", service="ns/svc", interval_seconds=1.0, now_seconds=clock.seconds)
    async with _health_server(runtime) as url, httpx.AsyncClient(trust_env=False) as client:
        clock.seconds += STALL_SECONDS + 5
        stalled = await client.get(url, timeout=10)
        runtime.heartbeats.beat("uid", interval_seconds=1.0, now_seconds=clock.seconds)
        healthy = await client.get(url, timeout=10)
    assert stalled.status_code == 500
    assert (healthy.status_code, healthy.json()) == (200, {"ticking": {"services": 1}})
