"""The demo's report in ``demo-report/``: ``report.json`` (decisions, pod events, the twin's SLO attainment, the
sampled timeline), ``report.md`` (the same, for people) and PNG plots of load against replicas over time.

Times are simulated seconds since the load started and rates are tokens per simulated second (see
`tokenscale.twin.speedup`). matplotlib is optional and imported lazily; without it the report says how to get the
plots and the rest is written.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from tokenscale.demo.session import DemoFrame, DemoResult
from tokenscale.twin.service import TwinEvent

__all__ = ["report_json", "summary", "write_report"]

PLOT_FILE = "load-vs-replicas.png"


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


def _event(event: TwinEvent) -> dict[str, Any]:
    return {
        "simulated_seconds": event.simulated_seconds,
        "pod": event.pod,
        "role": event.role.value,
        "kind": event.kind,
    }


def _timeline_row(frame: DemoFrame) -> dict[str, Any]:
    twin = frame.twin
    return {
        "simulated_seconds": twin.simulated_seconds,
        "arriving_prompt_tokens_per_second": twin.arriving_prompt_tokens_per_second,
        "arriving_decode_tokens_per_second": twin.arriving_decode_tokens_per_second,
        "operator_arriving_prompt_tokens_per_second": frame.operator_arriving_prompt_tokens_per_second,
        "prefill_capacity_tokens_per_second": frame.prefill_capacity_tokens_per_second,
        "decode_capacity_tokens_per_second": frame.decode_capacity_tokens_per_second,
        "prefill_desired": frame.prefill_desired,
        "prefill_ready": twin.prefill.ready,
        "prefill_starting": twin.prefill.starting,
        "decode_desired": frame.decode_desired,
        "decode_ready": twin.decode.ready,
        "converted": twin.converted,
        "prefill_queue": twin.prefill_queue,
        "slo_attainment_so_far": twin.slo.attainment,
    }


def summary(result: DemoResult) -> dict[str, Any]:
    """Headline numbers: SLO attainment, requests, GPU time, and counts of what the operator did."""
    last = result.frames[-1].twin if result.frames else None
    decisions = result.decisions
    slo = last.slo if last is not None else None
    return {
        "simulated_seconds": last.simulated_seconds if last else 0.0,
        "requests_in_load": result.load_requests,
        "requests_arrived": last.requests_arrived if last else 0,
        "requests_finished": last.requests_finished if last else 0,
        "slo_attainment_decided": slo.attainment if slo else None,
        "slo_attainment_all_arrived": slo.final_attainment if slo else None,
        "slo": dataclasses.asdict(slo) if slo else None,
        "gpu_hours": (last.gpu_seconds / 3600) if last else 0.0,
        "peak_prefill_desired": max((f.prefill_desired for f in result.frames), default=0),
        "peak_decode_desired": max((f.decode_desired for f in result.frames), default=0),
        "conversions": sum(1 for e in result.events if e.kind == "converted"),
        "restores": sum(1 for e in result.events if e.kind == "restored"),
        "scale_decisions": sum(1 for d in decisions if d.action == "scale"),
    }


def report_json(result: DemoResult) -> dict[str, Any]:
    """Everything the report holds, JSON-ready."""
    options = result.options
    document: dict[str, Any] = _round(
        {
            "options": {
                "trace": options.trace,
                "trace_start_seconds": options.slice_start_seconds,
                "rate_scale": options.slice_rate_scale,
                "policy": options.policy,
                "profile": options.profile,
                "speedup": options.speedup,
                "duration_wall_seconds": options.duration_seconds,
                "simulated_seconds": options.simulated_seconds,
                "seed": options.seed,
            },
            "started_at": result.started_at,
            "pod_cidr": result.pod_cidr,
            "interrupted": result.interrupted,
            "error": result.error,
            "operator_exit_code": result.operator_exit_code,
            "leftover_pids": result.leftover_pids,
            "twin": summary(result),
            "simulator": result.simulator,
            "decisions": [dataclasses.asdict(d) for d in result.decisions],
            "pod_events": [_event(e) for e in result.events],
            "timeline": [_timeline_row(f) for f in result.frames],
        }
    )
    return document


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _markdown(result: DemoResult, document: dict[str, Any], plot: str | None) -> str:
    options, twin = result.options, document["twin"]
    lines = [
        "# tokenscale demo report",
        "",
        f"Trace `{options.trace}` from {options.slice_start_seconds:g} s at {options.slice_rate_scale:g}× rate, "
        f"policy `{options.policy}`, profile `{options.profile}`, {options.speedup:g}× speed: "
        f"{twin['simulated_seconds']:,.0f} simulated seconds in {options.duration_seconds:g} wall seconds "
        f"(started {result.started_at}). Times below are simulated seconds since the load started.",
        "",
    ]
    if result.error or result.interrupted:
        lines += [f"**Incomplete run**: {result.error or 'interrupted (Ctrl-C)'}.", ""]
    slo = twin["slo"] or {}
    lines += [
        "| | |",
        "|---|---|",
        f"| SLO attainment (decided requests) | {_percent(twin['slo_attainment_decided'])} |",
        f"| SLO attainment (all arrived; pending count as missed) | {_percent(twin['slo_attainment_all_arrived'])} |",
        f"| requests | {twin['requests_arrived']} arrived, {twin['requests_finished']} finished, "
        f"{slo.get('pending', 0)} pending |",
        f"| TTFT / TPOT within objective (finished) | {slo.get('ttft_attained', 0)} / {slo.get('tpot_attained', 0)} "
        f"of {slo.get('finished', 0)} |",
        f"| peak replicas desired | prefill {twin['peak_prefill_desired']}, decode {twin['peak_decode_desired']} |",
        f"| conversions / restores (twin) | {twin['conversions']} / {twin['restores']} |",
        f"| GPU time | {twin['gpu_hours']:.2f} GPU-h |",
    ]
    reference = document["simulator"]
    if reference:
        lines += [
            f"| the same load in the simulator (no API, scrape or tick latency) | SLO "
            f"{_percent(reference['slo_attainment'])}, {reference['gpu_hours']:.2f} GPU-h, "
            f"{reference['conversions']:g} conversions |",
        ]
    lines += [
        "",
    ]
    if plot:
        lines += [f"![load vs replicas]({plot})", ""]
    lines += [
        "## Decisions (service status)",
        "",
        "| t (s) | action | prefill | decode | reason |",
        "|--:|---|--:|--:|---|",
    ]
    lines += [
        f"| {d.simulated_seconds:,.1f} | {d.action} | {d.prefill_replicas} | {d.decode_replicas} | {d.reason} |"
        for d in result.decisions
    ]
    lines += ["", "## Pods (what the twin saw)", "", "| t (s) | role | event | pod |", "|--:|---|---|---|"]
    lines += [
        f"| {e.simulated_seconds:,.1f} | {e.role.value} | {e.kind} | `{e.pod}` |"
        for e in result.events
        if e.kind != "added" or e.simulated_seconds > 0
    ]
    lines += ["", f"Operator log: `{result.operator_log}`. Machine-readable: `report.json`.", ""]
    return "\n".join(lines)


def _plot(result: DemoResult, path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional dependency, imported only when a report is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [_timeline_row(f) for f in result.frames]
    t = [r["simulated_seconds"] for r in rows]
    figure, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True, height_ratios=(3, 2, 1.2))
    load_axis = axes[0]
    load_axis.plot(t, [r["arriving_prompt_tokens_per_second"] / 1000 for r in rows], label="prompt tokens/s arriving")
    load_axis.plot(
        t, [r["prefill_capacity_tokens_per_second"] / 1000 for r in rows], label="Ready prefill capacity", ls="--"
    )
    load_axis.set_ylabel("k tokens/s")
    replicas = load_axis.twinx()
    replicas.step(t, [r["prefill_desired"] for r in rows], where="post", color="tab:red", label="prefill desired")
    replicas.step(t, [r["prefill_ready"] for r in rows], where="post", color="tab:purple", label="prefill Ready")
    replicas.step(t, [r["converted"] for r in rows], where="post", color="tab:green", label="converted decoders")
    replicas.set_ylabel("pods")
    replicas.set_ylim(bottom=0)
    handles = load_axis.get_legend_handles_labels()[0] + replicas.get_legend_handles_labels()[0]
    load_axis.legend(handles=handles, loc="upper right", fontsize=8)
    load_axis.set_title("prefill: load vs replicas")
    decode_axis = axes[1]
    decode_axis.plot(t, [r["arriving_decode_tokens_per_second"] / 1000 for r in rows], label="KV tokens/s arriving")
    decode_axis.plot(
        t, [r["decode_capacity_tokens_per_second"] / 1000 for r in rows], label="Ready decode capacity", ls="--"
    )
    decode_axis.set_ylabel("k tokens/s")
    decode_replicas = decode_axis.twinx()
    decode_replicas.step(t, [r["decode_desired"] for r in rows], where="post", color="tab:red", label="desired")
    decode_replicas.step(t, [r["decode_ready"] for r in rows], where="post", color="tab:purple", label="Ready")
    decode_replicas.set_ylim(bottom=0)
    decode_replicas.set_ylabel("pods")
    handles = decode_axis.get_legend_handles_labels()[0] + decode_replicas.get_legend_handles_labels()[0]
    decode_axis.legend(handles=handles, loc="upper right", fontsize=8)
    decode_axis.set_title("decode: load vs replicas")
    slo_axis = axes[2]
    # Before any request is decided there is no attainment: a gap, not a 0.
    so_far = [math.nan if r["slo_attainment_so_far"] is None else 100 * r["slo_attainment_so_far"] for r in rows]
    slo_axis.plot(t, so_far, color="tab:blue")
    slo_axis.set_ylim(0, 105)
    slo_axis.set_ylabel("SLO so far %")
    slo_axis.set_xlabel("simulated seconds since the load started")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(result: DemoResult, directory: Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and the plot into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    document = report_json(result)
    written = [directory / "report.json"]
    written[0].write_text(json.dumps(document, indent=2) + "\n")
    plot: str | None = None
    if result.frames:
        try:
            _plot(result, directory / PLOT_FILE)
        except ImportError:
            document["plots"] = "not written: install matplotlib (pip install 'tokenscale[plots]')"
        else:
            plot = PLOT_FILE
            written.append(directory / PLOT_FILE)
    markdown = directory / "report.md"
    markdown.write_text(_markdown(result, document, plot))
    written.append(markdown)
    return written
