"""`tokenscale run` builds the operator's settings from flags and from ``TOKENSCALE_*`` environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenscale.cli import main
from tokenscale.controller import runner
from tokenscale.controller.settings import ANY_ADDRESS, LogFormat, OperatorSettings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[OperatorSettings]:
    """The settings `run_operator` was called with (the operator itself is not started)."""
    calls: list[OperatorSettings] = []
    monkeypatch.setattr(runner, "run_operator", calls.append)
    return calls


def test_flags_become_settings(started: list[OperatorSettings]) -> None:
    result = CliRunner().invoke(
        main.app,
        [
            "run",
            "-n", "a", "-n", "b,c",
            "--kubeconfig", "/tmp/kc",
            "--log-format", "json",
            "--metrics-port", "0",
            "--peering", "tokenscale",
            "--priority", "7",
            "--allowed-cidr", "127.0.0.0/8",
            "--health-port", "9000",
            "--status-refresh-seconds", "2.5",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert settings.namespaces == ("a", "b", "c")
    assert settings.kubeconfig == Path("/tmp/kc")
    assert settings.log_format is LogFormat.JSON
    assert (settings.metrics_port, settings.peering_name, settings.priority) == (0, "tokenscale", 7)
    assert settings.allowed_scrape_cidrs == (ipaddress.ip_network("127.0.0.0/8"),)
    assert (settings.health_port, settings.status_refresh_seconds) == (9000, 2.5)


def test_environment_fills_what_flags_leave_out(started: list[OperatorSettings]) -> None:
    env = {
        "TOKENSCALE_NAMESPACES": "serving",
        "TOKENSCALE_ALLOWED_CIDRS": "127.1.0.0/16,127.2.0.0/16",
        "TOKENSCALE_LOG_FORMAT": "json",
        "TOKENSCALE_HEALTH_STALL_SECONDS": "45",
    }
    result = CliRunner().invoke(main.app, ["run"], env=env)
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert settings.namespaces == ("serving",)
    assert settings.allowed_scrape_cidrs == (
        ipaddress.ip_network("127.1.0.0/16"),
        ipaddress.ip_network("127.2.0.0/16"),
    )
    assert settings.log_format is LogFormat.JSON
    assert settings.health_stall_seconds == 45.0


def test_defaults_watch_everything_standalone(started: list[OperatorSettings]) -> None:
    result = CliRunner().invoke(main.app, ["run"], env={})
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert (settings.namespaces, settings.peering_name, settings.allowed_scrape_cidrs) == ((), None, ANY_ADDRESS)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--allowed-cidr", "not-a-network"], "not-a-network", id="bad-cidr"),
        pytest.param(["--log-format", "xml"], "xml", id="bad-log-format"),
    ],
)
def test_bad_flags_are_refused(started: list[OperatorSettings], args: list[str], message: str) -> None:
    result = CliRunner().invoke(main.app, ["run", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert started == []
