"""``tokenscale metrics parse|scrape`` print the normalised sample as JSON, or the unknown reason and exit 1."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenscale.cli.main import app

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
runner = CliRunner()


def test_parse_prints_the_sample_of_a_fixture() -> None:
    result = runner.invoke(app, ["metrics", "parse", "--engine", "trtllm", str(FIXTURES / "trtllm-dynamo-metrics.txt")])
    assert result.exit_code == 0, result.output
    sample = json.loads(result.output)
    assert sample["requests_finished_total"] == 155.0
    assert sample["time_to_first_token_seconds"] == {
        "buckets": {"0.01": 0.0, "0.05": 12.0, "+Inf": 150.0},
        "sum": 8.75,
        "count": 150.0,
    }
    assert sample["prompt_tokens_total"] is None


def test_parse_applies_the_model_filter() -> None:
    fixture = str(FIXTURES / "sglang-metrics.txt")
    result = runner.invoke(app, ["metrics", "parse", "--engine", "sglang", "--model-name", "nope", fixture])
    assert result.exit_code == 1
    assert json.loads(result.output)["unknown"] == "NoMatchingFamily"


def test_parse_of_the_wrong_engine_exits_1_with_the_reason() -> None:
    result = runner.invoke(app, ["metrics", "parse", str(FIXTURES / "sglang-metrics.txt")])
    assert result.exit_code == 1
    assert json.loads(result.output)["unknown"] == "NoMatchingFamily"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fixture_server() -> Iterator[int]:
    """Serves tests/fixtures/metrics on 127.0.0.1; yields the port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=FIXTURES))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_scrape_reads_a_live_endpoint(fixture_server: int) -> None:
    url = f"http://127.0.0.1:{fixture_server}/sglang-metrics.txt"
    result = runner.invoke(app, ["metrics", "scrape", "--engine", "sglang", url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["requests_waiting"] == 2826.0


def test_scrape_of_a_missing_path_reports_the_http_status(fixture_server: int) -> None:
    result = runner.invoke(app, ["metrics", "scrape", f"http://127.0.0.1:{fixture_server}/missing"])
    assert result.exit_code == 1
    assert json.loads(result.output)["unknown"] == "HTTPStatus"
