"""``tokenscale run``: start the operator. Every flag also reads a ``TOKENSCALE_*`` environment variable."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from tokenscale.controller import runner
from tokenscale.controller.settings import ANY_ADDRESS, LogFormat, OperatorSettings

__all__ = ["run"]


def _networks(values: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(v.strip(), strict=False) for value in values for v in value.split(",") if v)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--allowed-cidr") from exc


def run(
    *,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace", "-n", envvar="TOKENSCALE_NAMESPACES", help="Namespace to watch (repeatable); none: all."
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(envvar="TOKENSCALE_KUBECONFIG", help="Kubeconfig; default: in-cluster, else $KUBECONFIG."),
    ] = None,
    context: Annotated[str | None, typer.Option(envvar="TOKENSCALE_CONTEXT", help="Kubeconfig context.")] = None,
    log_format: Annotated[
        LogFormat, typer.Option(envvar="TOKENSCALE_LOG_FORMAT", help="text or json (one object per line).")
    ] = LogFormat.TEXT,
    log_level: Annotated[str, typer.Option(envvar="TOKENSCALE_LOG_LEVEL", help="DEBUG, INFO, WARNING.")] = "INFO",
    metrics_address: Annotated[
        str, typer.Option(envvar="TOKENSCALE_METRICS_ADDRESS", help="Listen address of the operator's /metrics.")
    ] = "0.0.0.0",
    metrics_port: Annotated[
        int, typer.Option(envvar="TOKENSCALE_METRICS_PORT", help="Port of the operator's /metrics; 0: off.")
    ] = 8080,
    health_port: Annotated[
        int,
        typer.Option(
            envvar="TOKENSCALE_HEALTH_PORT",
            help="Port of the liveness endpoint /healthz (on the metrics address); 0: off.",
        ),
    ] = 8081,
    health_stall_seconds: Annotated[
        float,
        typer.Option(
            envvar="TOKENSCALE_HEALTH_STALL_SECONDS",
            help="/healthz fails when a service has completed no tick for this long (and 3 of its intervals).",
        ),
    ] = 30.0,
    peering: Annotated[
        str | None,
        typer.Option(
            envvar="TOKENSCALE_PEERING",
            help="kopf peering name shared by the operator's replicas (only the highest priority acts); "
            "unset: standalone.",
        ),
    ] = None,
    priority: Annotated[
        int, typer.Option(envvar="TOKENSCALE_PRIORITY", help="Peering priority; give replicas distinct ones.")
    ] = 0,
    allowed_cidr: Annotated[
        list[str] | None,
        typer.Option(
            envvar="TOKENSCALE_ALLOWED_CIDRS",
            help="Pod IP ranges the operator may scrape (repeatable or comma-separated); default: any.",
        ),
    ] = None,
    scrape_timeout_seconds: Annotated[
        float, typer.Option(envvar="TOKENSCALE_SCRAPE_TIMEOUT_SECONDS", help="Per-pod scrape timeout.")
    ] = 0.5,
    event_repeat_seconds: Annotated[
        float,
        typer.Option(envvar="TOKENSCALE_EVENT_REPEAT_SECONDS", help="Least seconds between identical Events."),
    ] = 60.0,
    status_refresh_seconds: Annotated[
        float,
        typer.Option(
            envvar="TOKENSCALE_STATUS_REFRESH_SECONDS",
            help="Least seconds between status writes that change only live numbers (velocities, arrival "
            "rates); other changes are written at once. 0: every change.",
        ),
    ] = 10.0,
) -> None:
    """Run the operator: reconcile every DisaggregatedInferenceService in the watched namespaces."""
    settings = OperatorSettings(
        namespaces=tuple(n for value in namespace or () for n in value.split(",") if n),
        kubeconfig=kubeconfig,
        context=context,
        log_format=log_format,
        log_level=log_level,
        metrics_address=metrics_address,
        metrics_port=metrics_port,
        health_port=health_port,
        health_stall_seconds=health_stall_seconds,
        peering_name=peering,
        priority=priority,
        scrape_timeout_seconds=scrape_timeout_seconds,
        event_repeat_seconds=event_repeat_seconds,
        status_refresh_seconds=status_refresh_seconds,
        allowed_scrape_cidrs=_networks(allowed_cidr) if allowed_cidr else ANY_ADDRESS,
    )
    runner.run_operator(settings)
