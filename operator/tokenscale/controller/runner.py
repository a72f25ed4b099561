"""Starting the operator: logging, the API client, the metrics listener, peering, then kopf until stopped."""

from __future__ import annotations

import gc
import logging

import kopf
import prometheus_client

from tokenscale.controller import handlers, peering, scraping, telemetry
from tokenscale.controller.settings import LogFormat, OperatorSettings
from tokenscale.kube import client as kube_client
from tokenscale.kube import cluster as kube_cluster
from tokenscale.kube import errors as kube_errors
from tokenscale.kube import objects

__all__ = ["freeze_startup_heap", "run_operator"]

logger = logging.getLogger(__name__)


def _configure_logging(settings: OperatorSettings) -> None:
    kopf.configure(
        log_format=kopf.LogFormat.JSON if settings.log_format is LogFormat.JSON else kopf.LogFormat.FULL,
        log_refkey="object" if settings.log_format is LogFormat.JSON else None,
    )
    logging.getLogger().setLevel(settings.log_level.upper())
    # The HTTP clients log every request (httpx at INFO: one line per pod per tick); never what a reader wants.
    for noisy in ("urllib3", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def freeze_startup_heap() -> None:
    """Move every object alive now (modules, clients, registries: they live as long as the process) out of the
    cyclic garbage collector's reach, after collecting what is already garbage.

    A full (generation-2) collection walks every tracked object; with the start-up heap in it, one took 70–150 ms
    in the operator benchmark, longer than a 64-pod tick, so the tick it fell in was the p99. Frozen, the full
    collections walk only what the ticks keep (sample windows, histories): 15–20 ms (docs/benchmarks.md, issue 6).
    """
    gc.collect()
    gc.freeze()


def run_operator(settings: OperatorSettings) -> None:
    """Run the operator in this thread until SIGINT/SIGTERM."""
    _configure_logging(settings)
    api = kube_client.build_api_client(kubeconfig=settings.kubeconfig, context=settings.context)
    metrics = telemetry.OperatorMetrics()
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.metrics_address, metrics.registry)
        logger.info("operator metrics on %s:%d/metrics", settings.metrics_address, settings.metrics_port)
    for namespace in settings.namespaces or (None,):
        if settings.peering_name is None:
            break
        plural, body = peering.peering_object(name=settings.peering_name, namespace=namespace)
        try:
            objects.create_if_missing(
                api, api_version=peering.PEERING_API_VERSION, plural=plural, namespace=namespace, body=body
            )
        except kube_errors.NotFoundError as exc:
            raise SystemExit(
                f"peering {settings.peering_name!r} needs the kopf peering CRDs: install crds/kopf.dev_peerings.yaml "
                f"or run standalone ({exc})"
            ) from exc
    cluster = kube_cluster.KubeCluster(
        api, field_manager=settings.field_manager, owners_ttl_seconds=settings.owners_refresh_seconds
    )
    runtime = handlers.Runtime(
        cluster=cluster,
        placement=cluster,
        credentials=kube_client.connection_credentials(api),
        metrics=metrics,
        make_scraper=lambda: scraping.MetricsScraper(
            allowed_cidrs=settings.allowed_scrape_cidrs, timeout_seconds=settings.scrape_timeout_seconds
        ),
        close_scraper=scraping.close,
        event_repeat_seconds=settings.event_repeat_seconds,
    )
    registry = handlers.build_registry(runtime)
    freeze_startup_heap()
    kopf.run(
        registry=registry,
        standalone=settings.peering_name is None,
        peering_name=settings.peering_name,
        priority=settings.priority,
        namespaces=settings.namespaces,
        clusterwide=not settings.namespaces,
    )
