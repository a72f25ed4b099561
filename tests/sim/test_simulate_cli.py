"""`tokenscale simulate`: the scoreboard table, the stable JSON, Markdown and plots."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tokenscale.cli.main import app
from tokenscale.sim.scoreboard import JSON_FIELDS

runner = CliRunner()


def _simulate(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["simulate", *args])
    return result.exit_code, result.output


def test_simulate_writes_json_markdown_and_plots(tmp_path: Path) -> None:
    code, output = _simulate(
        "--trace", "azure-conv", "--trace", "azure-code", "--policy", "tokenscale,oracle",
        "--duration", "90", "--rate-scale", "2", "--cold-start", "10",
        "--json", str(tmp_path / "runs.json"), "--markdown", str(tmp_path / "runs.md"),
        "--plots", str(tmp_path / "png"),
    )  # fmt: skip
    assert code == 0, output
    assert "policy scoreboard" in output
    runs = json.loads((tmp_path / "runs.json").read_text())["runs"]
    assert [(r["trace"], r["policy"]) for r in runs] == [
        ("azure-conv", "tokenscale"),
        ("azure-conv", "oracle"),
        ("azure-code", "tokenscale"),
        ("azure-code", "oracle"),
    ]
    assert all(tuple(r) == JSON_FIELDS for r in runs)
    assert all(0.0 <= r["slo_attainment"] <= 1.0 and r["rate_scale"] == 2.0 for r in runs)
    assert (tmp_path / "runs.md").read_text().count("| azure-") == 4
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [
        "azure-code_llama-3.1-8b-h100_latency.png",
        "azure-code_llama-3.1-8b-h100_provisioning.png",
        "azure-conv_llama-3.1-8b-h100_latency.png",
        "azure-conv_llama-3.1-8b-h100_provisioning.png",
    ]


def test_simulate_json_is_byte_identical_for_the_same_inputs(tmp_path: Path) -> None:
    args = ["--trace", "azure-code", "--policy", "tokenscale", "--duration", "120", "--rate-scale", "3", "--seed", "5"]
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert _simulate(*args, "--json", str(first))[0] == 0
    assert _simulate(*args, "--json", str(second))[0] == 0
    assert first.read_bytes() == second.read_bytes()


def test_unknown_policy_lists_the_valid_ones() -> None:
    code, output = _simulate("--trace", "azure-conv", "--policy", "tokenscale,nope", "--duration", "10")
    assert code == 2
    assert "nope" in output
    assert "heteroscale" in output


def test_unknown_trace_is_refused() -> None:
    code, output = _simulate("--trace", "no-such-trace.csv", "--duration", "10")
    assert code == 2
    assert "azure-code" in output
