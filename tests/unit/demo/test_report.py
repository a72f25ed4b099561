"""The demo's report and live view, from a recorded run (no cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from tokenscale.core.types import Role
from tokenscale.demo import report, view
from tokenscale.demo.session import DecisionRow, DemoFrame, DemoOptions, DemoResult
from tokenscale.twin.service import RoleCounts, ServiceSnapshot, TwinEvent
from tokenscale.twin.slo import SloSoFar

OPTIONS = DemoOptions()


def frame(t: float, *, prefill_desired: int, prefill_ready: int, converted: int, attained: int) -> DemoFrame:
    decisions = (DecisionRow(46.9, "convert", 2, 2, "PrefillVelocity", "BurstConversion: arrivals above capacity"),)
    events = (TwinEvent(50.3, "llama", "llama-decode-abc-x1", Role.DECODE, "converted"),)
    return DemoFrame(
        wall_seconds=t / OPTIONS.speedup,
        twin=ServiceSnapshot(
            namespace="tokenscale-demo",
            name="llama",
            simulated_seconds=t,
            load_started=True,
            prefill=RoleCounts(starting=prefill_desired - prefill_ready, ready=prefill_ready, draining=0),
            decode=RoleCounts(starting=0, ready=2, draining=0),
            converted=converted,
            withdrawn=0,
            arriving_prompt_tokens_per_second=80_000.0 if converted else 5_000.0,
            arriving_decode_tokens_per_second=82_000.0,
            prefill_queue=135,
            decode_queue=0,
            requests_arrived=470,
            requests_finished=300,
            slo=SloSoFar(
                attained=attained, missed=100, pending=5, ttft_attained=attained, tpot_attained=300, finished=300
            ),
            gpu_seconds=360.0,
        ),
        prefill_desired=prefill_desired,
        decode_desired=2,
        prefill_capacity_tokens_per_second=31_000.0 * prefill_ready,
        decode_capacity_tokens_per_second=780_000.0,
        operator_arriving_prompt_tokens_per_second=90_000.0,
        operator_arriving_decode_tokens_per_second=91_000.0,
        converted_pods=("llama-decode-abc-x1",) * converted,
        conditions={"Ready": "True/Reconciling", "MetricsAvailable": "False/MetricsUnavailable"},
        recent_decisions=decisions,
        recent_events=events,
    )


def recorded() -> DemoResult:
    result = DemoResult(options=OPTIONS, pod_cidr="127.1.0.0/16", load_requests=900, started_at="2026-01-01T00:00:00")
    result.frames = [
        frame(40.0, prefill_desired=1, prefill_ready=1, converted=0, attained=100),
        frame(55.0, prefill_desired=4, prefill_ready=1, converted=2, attained=120),
        frame(120.0, prefill_desired=2, prefill_ready=2, converted=0, attained=300),
    ]
    result.decisions = [
        DecisionRow(46.9, "convert", 2, 2, "PrefillVelocity", ""),
        DecisionRow(50.9, "scale", 4, 2, "PrefillVelocity", ""),
        DecisionRow(116.0, "scale", 2, 2, "PrefillVelocity", ""),
    ]
    result.events = [
        TwinEvent(50.3, "llama", "llama-decode-abc-x1", Role.DECODE, "converted"),
        TwinEvent(66.3, "llama", "llama-decode-abc-x1", Role.DECODE, "restored"),
    ]
    result.simulator = {"slo_attainment": 0.64, "gpu_hours": 0.2, "conversions": 5.0}
    return result


def test_the_report_holds_decisions_pod_events_and_the_twins_slo(tmp_path: Path) -> None:
    written = report.write_report(recorded(), tmp_path)
    assert {path.name for path in written} == {"report.json", "report.md", report.PLOT_FILE}
    document = json.loads((tmp_path / "report.json").read_text())
    assert [d["action"] for d in document["decisions"]] == ["convert", "scale", "scale"]
    assert [e["kind"] for e in document["pod_events"]] == ["converted", "restored"]
    assert document["twin"]["slo_attainment_decided"] == pytest.approx(300 / 400)
    assert document["twin"]["peak_prefill_desired"] == 4
    assert (document["twin"]["conversions"], document["twin"]["restores"]) == (1, 1)
    assert len(document["timeline"]) == 3
    markdown = (tmp_path / "report.md").read_text()
    assert "| 50.9 | scale | 4 | 2 | PrefillVelocity |" in markdown
    assert f"![load vs replicas]({report.PLOT_FILE})" in markdown
    assert "64.0%" in markdown  # the simulator's attainment on the same load
    assert (tmp_path / report.PLOT_FILE).read_bytes().startswith(b"\x89PNG")


def test_a_run_that_failed_before_the_load_still_reports_why(tmp_path: Path) -> None:
    result = DemoResult(options=OPTIONS, error="ClusterStartError: no openssl")
    written = report.write_report(result, tmp_path)
    assert report.PLOT_FILE not in {path.name for path in written}
    assert "**Incomplete run**: ClusterStartError: no openssl" in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "report.json").read_text())["twin"]["slo_attainment_decided"] is None


def test_the_live_view_fits_an_80_by_24_terminal_and_shows_the_burst() -> None:
    console = Console(width=80, record=True, color_system=None)
    console.print(view.render_frame(recorded().frames[1], options=OPTIONS))
    text = console.export_text()
    lines = text.splitlines()
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    assert "80.0k" in text  # prompt tokens/s arriving
    assert "2 decoder(s)" in text
    assert "MetricsAvailable False/MetricsUnavailable" in text  # an unhealthy condition is shown
    assert "convert → P 2 D 2" in text
