"""``tokenscale demo``: the whole system on one machine, with a live view and a report (docs/demo.md)."""

from __future__ import annotations

import logging
import signal
import types
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from tokenscale.api import v1alpha1
from tokenscale.demo import report, session, view
from tokenscale.twin import speedup as twin_speedup

__all__ = ["demo"]


def _interrupt(signum: int, frame: types.FrameType | None) -> None:
    del frame
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def demo(
    *,
    trace: Annotated[
        str,
        typer.Option(
            help="Bundled trace (azure-code, azure-conv), a trace file, or a synthetic "
            "load such as burst:rps=2,factor=8."
        ),
    ] = "azure-code",
    policy: Annotated[
        str,
        typer.Option(
            help="Scaling policy of the service (not distserve or static: they need settings the demo does not give)."
        ),
    ] = "tokenscale",
    speedup: Annotated[
        float, typer.Option(min=1.0, max=twin_speedup.MAX_SPEEDUP, help="Simulated seconds per wall second.")
    ] = 4.0,
    duration: Annotated[float, typer.Option(min=5.0, help="Wall-clock seconds of load.")] = 120.0,
    profile: Annotated[str, typer.Option(help="Performance profile (bundled name or YAML path).")] = (
        "llama-3.1-8b-h100"
    ),
    trace_start: Annotated[
        float | None,
        typer.Option(
            help="Seconds into the trace where the slice starts; default: the demo's slice for a bundled trace, else 0."
        ),
    ] = None,
    rate_scale: Annotated[
        float | None, typer.Option(help="Request-rate factor; default: the demo's for a bundled trace, else 1.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the rate scaling and synthetic loads.")] = 0,
    report_dir: Annotated[Path, typer.Option(help="Where the report goes.")] = Path("demo-report"),
    home: Annotated[
        Path | None, typer.Option(help="Home of the demo's own cluster; default: ~/.cache/tokenscale/demo-cluster.")
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(help="Use this cluster (KWOK fake GPU nodes with pod IPs in --pod-cidr) instead of starting one."),
    ] = None,
    pod_cidr: Annotated[str | None, typer.Option(help="Pod range of the --kubeconfig cluster, in 127.0.0.0/8.")] = None,
    live: Annotated[bool, typer.Option(help="Live terminal view; --no-live prints a line every 5 wall s.")] = True,
) -> None:
    """Start a local control plane, the example service, the twin and the operator; show it live; write a report."""
    if policy not in {p.value for p in v1alpha1.PolicyName}:
        raise typer.BadParameter(f"unknown policy {policy!r}", param_hint="--policy")
    options = session.DemoOptions(
        trace=trace,
        policy=policy,
        speedup=speedup,
        duration_seconds=duration,
        profile=profile,
        trace_start_seconds=trace_start,
        rate_scale=rate_scale,
        seed=seed,
        report_dir=report_dir,
        home=home,
        kubeconfig=kubeconfig,
        pod_cidr=pod_cidr,
    )
    report_dir.mkdir(parents=True, exist_ok=True)
    # Logs go to a file: the terminal belongs to the live view.
    logging.basicConfig(
        filename=report_dir / "demo.log", level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    console = Console()
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    console.print(
        f"[bold]tokenscale demo[/]: {trace}, policy {policy}, {speedup:g}× speed, {duration:g} s of load "
        f"({duration * speedup:,.0f} simulated s). Starting the control plane, the twin and the operator... "
        f"(Ctrl-C stops and tears down)"
    )
    last: list[session.DemoFrame] = []
    try:
        if live:
            with Live(console=console, refresh_per_second=4, transient=False) as display:

                def show(frame: session.DemoFrame) -> None:
                    last[:] = [frame]
                    display.update(view.render_frame(frame, options=options))

                result = session.run_demo(options, on_frame=show)
        else:

            def show_line(frame: session.DemoFrame) -> None:
                if not last or frame.wall_seconds - last[0].wall_seconds >= 5.0:
                    last[:] = [frame]
                    twin = frame.twin
                    console.print(
                        f"t={twin.simulated_seconds:6.0f} s  prompt {twin.arriving_prompt_tokens_per_second:8.0f} "
                        f"tok/s vs {frame.prefill_capacity_tokens_per_second:8.0f}  prefill "
                        f"{frame.prefill_desired}/{twin.prefill.ready}  decode {frame.decode_desired}/"
                        f"{twin.decode.ready}  converted {twin.converted}  SLO {_percent(twin.slo.attainment)}"
                    )

            result = session.run_demo(options, on_frame=show_line)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    written = report.write_report(result, report_dir)
    headline = report.summary(result)
    console.print(
        f"SLO attainment {_percent(headline['slo_attainment_decided'])} of decided requests "
        f"({_percent(headline['slo_attainment_all_arrived'])} of all arrived); peak prefill "
        f"{headline['peak_prefill_desired']}, conversions {headline['conversions']}, "
        f"{headline['gpu_hours']:.2f} GPU-h simulated."
    )
    console.print("report: " + ", ".join(str(path) for path in written))
    if result.leftover_pids:
        console.print(f"[red]processes still running after teardown: {result.leftover_pids}[/]")
    if result.error:
        console.print(f"[red]demo failed: {result.error}[/]")
        raise typer.Exit(1)
    if result.interrupted:
        console.print("interrupted: torn down, partial report written")
        raise typer.Exit(130)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
