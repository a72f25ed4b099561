"""The Prometheus HTTP API source, against a real Prometheus server on loopback and against fakes for failures.

The real test starts ``prometheus`` (Debian package) on 127.0.0.1 with a generated config and a temporary
data directory, lets it scrape a fixture-serving endpoint, and checks that the source's sample of each pod
equals the direct parse of the exposition that pod served.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from benchmarks.vllm_payload import vllm_exposition

from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.engines.preset import sample_from_series
from tokenscale.metrics.exposition import SeriesParser
from tokenscale.metrics.prometheus_source import PrometheusSource, instant_query
from tokenscale.metrics.source import MetricsSource, PodTarget, Unknown, UnknownReason

VLLM = preset_for("vllm")
PAYLOADS = {
    "pod-a": vllm_exposition(engines=2, seed=1),
    "pod.b-1": vllm_exposition(engines=1, seed=2, model_name="other/model"),
}


def direct_parse(text: str, *, model_name: str | None = None) -> EngineSample:
    series = SeriesParser().parse(text, VLLM.series_filter)
    return sample_from_series(VLLM, series, timestamp_seconds=0.0, model_name=model_name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def exposition_server() -> Iterator[int]:
    """Serves each pod's payload at /<pod name> on 127.0.0.1; yields the port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = PAYLOADS.get(self.path.lstrip("/"), "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, exposition_server: int) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping every pod each second; yields its base URL once both are in.

    Module-scoped (one server for the tests below); its data directory is a temporary directory."""
    tmp_path = tmp_path_factory.mktemp("prometheus")
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (Debian package prometheus; .ci/run installs it)")
    jobs = [
        {
            "job_name": f"engine-{index}",
            "metrics_path": f"/{pod}",
            "static_configs": [
                {"targets": [f"127.0.0.1:{exposition_server}"], "labels": {"pod": pod, "namespace": "ns"}}
            ],
        }
        for index, pod in enumerate(PAYLOADS)
    ]
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}))  # JSON is YAML
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "prometheus.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            _wait_until_scraped(base_url, process, log_path)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _wait_until_scraped(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    query = "count(vllm:num_requests_running) by (pod)"
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                answer = client.get(f"{base_url}/api/v1/query", params={"query": query}).json()
                if len(answer.get("data", {}).get("result", [])) == len(PAYLOADS):
                    return
            except (httpx.HTTPError, ValueError):  # not listening yet, or "Service Unavailable" while starting
                pass
            time.sleep(0.2)
    pytest.fail(f"prometheus did not scrape both pods within 60 s: {log.read_text()[-2000:]}")


async def test_prometheus_source_sample_equals_the_direct_parse(prometheus: str) -> None:
    pods = [PodTarget("pod-a", "127.0.0.1"), PodTarget("pod.b-1", "127.0.0.1"), PodTarget("pod-gone", "127.0.0.1")]
    async with PrometheusSource(prometheus, preset=VLLM, namespace="ns") as prometheus_source:
        source: MetricsSource = prometheus_source
        before = time.time()
        results = await source.sample(pods)
    for pod in ("pod-a", "pod.b-1"):
        sample = results[pod]
        assert isinstance(sample, EngineSample), sample
        # Stamped with the scrape time Prometheus recorded, which lies in the last few seconds.
        assert before - 10 < sample.timestamp_seconds <= before + 1
        assert dataclasses.replace(sample, timestamp_seconds=0.0) == direct_parse(PAYLOADS[pod])
    gone = results["pod-gone"]
    assert isinstance(gone, Unknown)
    assert gone.reason == UnknownReason.NO_MATCHING_FAMILY


async def test_prometheus_source_applies_the_model_filter(prometheus: str) -> None:
    pods = [PodTarget("pod-a", "127.0.0.1"), PodTarget("pod.b-1", "127.0.0.1")]
    async with PrometheusSource(prometheus, preset=VLLM, model_name="other/model") as source:
        results = await source.sample(pods)
    assert isinstance(results["pod-a"], Unknown)
    assert results["pod-a"].reason == UnknownReason.NO_MATCHING_FAMILY
    only_b = results["pod.b-1"]
    assert isinstance(only_b, EngineSample)
    expected = direct_parse(PAYLOADS["pod.b-1"], model_name="other/model")
    assert dataclasses.replace(only_b, timestamp_seconds=0.0) == expected


def test_instant_query_escapes_regex_and_string_characters() -> None:
    query = instant_query(names=["vllm:a_total", "x.y"], pods=["p.1", 'we"ird'], pod_label="pod", namespace="n")
    assert query == '{__name__=~"vllm:a_total|x\\\\.y", pod=~"p\\\\.1|we\\"ird", namespace="n"}'


def _source(handler: httpx.MockTransport) -> PrometheusSource:
    return PrometheusSource("http://127.0.0.1:9", preset=VLLM, clock=lambda: 5.0, transport=handler)


def _raise_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


@pytest.mark.parametrize(
    ("handler", "reason", "message"),
    [
        pytest.param(
            lambda _: httpx.Response(400, json={"status": "error", "error": "parse error at char 3"}),
            UnknownReason.QUERY_FAILED,
            "parse error at char 3",
            id="promql-error",
        ),
        pytest.param(lambda _: httpx.Response(502, text="<html>"), UnknownReason.QUERY_FAILED, "not JSON", id="proxy"),
        pytest.param(
            lambda _: httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix", "result": []}}),
            UnknownReason.QUERY_FAILED,
            "instant vector",
            id="wrong-result-type",
        ),
        pytest.param(
            lambda _: httpx.Response(
                200, json={"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}
            ),
            UnknownReason.QUERY_FAILED,
            "unexpected series",
            id="malformed-series",
        ),
        pytest.param(_raise_timeout, UnknownReason.TIMEOUT, "timed out", id="timeout"),
    ],
)
async def test_failed_query_makes_every_pod_unknown(
    handler: httpx.MockTransport, reason: UnknownReason, message: str
) -> None:
    async with _source(httpx.MockTransport(handler)) as source:
        results = await source.sample([PodTarget("a", "127.0.0.1"), PodTarget("b", "127.0.0.1")])
    assert set(results) == {"a", "b"}
    for result in results.values():
        assert isinstance(result, Unknown)
        assert (result.reason, result.timestamp_seconds) == (reason, 5.0)
        assert message in result.message


async def test_copies_from_two_scrape_jobs_are_not_double_counted() -> None:
    def series(job: str, timestamp: float, value: str) -> dict[str, object]:
        metric = {"__name__": "vllm:prompt_tokens_total", "pod": "a", "job": job, "instance": "127.0.0.1:1"}
        return {"metric": metric, "value": [timestamp, value]}

    answer = {
        "status": "success",
        "data": {"resultType": "vector", "result": [series("one", 100.0, "10"), series("two", 101.0, "12")]},
    }
    async with _source(httpx.MockTransport(lambda _: httpx.Response(200, json=answer))) as source:
        result = (await source.sample([PodTarget("a", "127.0.0.1")]))["a"]
    assert isinstance(result, EngineSample)
    assert (result.prompt_tokens_total, result.timestamp_seconds) == (12.0, 101.0)
