"""``tokenscale twin``: simulated vLLM engines for the pods of a live cluster (docs/demo.md "The twin")."""

from __future__ import annotations

import logging
import signal
import time
import types
from pathlib import Path
from typing import Annotated

import typer

from tokenscale.kube import client as kube_client
from tokenscale.kube import services as kube_services
from tokenscale.twin import load as twin_load
from tokenscale.twin import speedup as twin_speedup
from tokenscale.twin.runner import Twin

__all__ = ["twin"]


def _stop(signum: int, frame: types.FrameType | None) -> None:
    del frame
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def twin(
    *,
    namespace: Annotated[list[str], typer.Option("--namespace", "-n", help="Namespace to watch (repeatable).")],
    kubeconfig: Annotated[Path | None, typer.Option(help="Kubeconfig; default: $KUBECONFIG.")] = None,
    service: Annotated[list[str] | None, typer.Option(help="Only these services (repeatable); default: all.")] = None,
    trace: Annotated[
        str,
        typer.Option(
            help="Bundled trace, trace file, or synthetic load (poisson:rps=5, "
            "burst:rps=2,factor=8,burst=30,period=120, diurnal:rps=4)."
        ),
    ] = "azure-code",
    trace_start: Annotated[float, typer.Option(help="Seconds into the trace where the replay starts.")] = 0.0,
    trace_duration: Annotated[float | None, typer.Option(help="Seconds of trace to replay; default: all.")] = None,
    rate_scale: Annotated[float, typer.Option(min=0.001, help="Request-rate factor (same span).")] = 1.0,
    time_compression: Annotated[
        float, typer.Option(min=0.001, help="Divide the trace's times by this (same requests, faster).")
    ] = 1.0,
    speedup: Annotated[
        float,
        typer.Option(
            min=1.0,
            max=twin_speedup.MAX_SPEEDUP,
            help="Simulated seconds per wall second. The services must name a "
            "profile and spec sped up as much (tokenscale demo does).",
        ),
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the rate scaling and synthetic loads.")] = 0,
    warm_up_seconds: Annotated[
        float,
        typer.Option(
            min=0.0, help="Seconds from a pod's Ready to serving (0: the pod's own Ready delay is the cold start)."
        ),
    ] = 0.0,
    poll_seconds: Annotated[float, typer.Option(min=0.05, help="How often pods are listed.")] = 0.2,
    status_seconds: Annotated[float, typer.Option(min=0.5, help="Print each service's state this often.")] = 5.0,
    run_seconds: Annotated[
        float | None, typer.Option("--for", help="Stop after this many seconds; default: until Ctrl-C.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING.")] = "INFO",
) -> None:
    """Serve vLLM /metrics for every pod of the services' prefill and decode targets from a cluster model."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        load = twin_load.build_load(
            twin_load.LoadSpec(
                source=trace,
                start_seconds=trace_start,
                duration_seconds=trace_duration,
                rate_scale=rate_scale,
                time_compression=time_compression,
                seed=seed,
            )
        )
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--trace") from None
    reader = kube_services.ServiceReader(kube_client.build_api_client(kubeconfig=kubeconfig))
    runner = Twin(
        source=reader,
        namespaces=namespace,
        load=load,
        speedup=speedup,
        warm_up_seconds=warm_up_seconds,
        poll_seconds=poll_seconds,
        only=service or (),
    )
    previous = signal.signal(signal.SIGTERM, _stop)
    started = time.monotonic()
    typer.echo(f"twin: {len(load)} requests over {load.span_seconds:,.0f} s, {speedup:g}x; Ctrl-C stops")
    runner.start()
    try:
        while run_seconds is None or time.monotonic() - started < run_seconds:
            time.sleep(status_seconds)
            for snapshot in runner.snapshots():
                typer.echo(
                    f"{snapshot.namespace}/{snapshot.name} t={snapshot.simulated_seconds:,.0f}s "
                    f"prefill {snapshot.prefill.ready}+{snapshot.prefill.starting} decode "
                    f"{snapshot.decode.ready}+{snapshot.decode.starting} converted {snapshot.converted} "
                    f"arriving {snapshot.arriving_prompt_tokens_per_second:,.0f} prompt tok/s "
                    f"queue {snapshot.prefill_queue} SLO so far "
                    + ("–" if snapshot.slo.attainment is None else f"{100 * snapshot.slo.attainment:.1f}%")
                )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        runner.stop()
        reader.close()
