"""Starting the operator: logging, the API client, the metrics listener, peering, then kopf until stopped."""

from __future__ import annotations

import gc
import logging

import kopf
import prometheus_client

from tokenscale.controller import handlers, health, peering, scraping, telemetry
from tokenscale.controller.settings import LogFormat, OperatorSettings
from tokenscale.kube import client as kube_client
from tokenscale.kube import cluster as kube_cluster
from tokenscale.kube import errors as kube_errors
from tokenscale.kube import objects

__all__ = ["FULL_COLLECTION_EVERY", "HEALTH_PATH", "run_operator", "tune_garbage_collector"]

HEALTH_PATH = "/healthz"

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


def _health_url(settings: OperatorSettings) -> str | None:
    """kopf's liveness endpoint: ``/healthz`` on the metrics address and the health port (None: off)."""
    if not settings.health_port:
        return None
    host = settings.metrics_address
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.health_port}{HEALTH_PATH}"


FULL_COLLECTION_EVERY = 100
"""Collections of generation 1 between full collections (CPython's default is 10); see `tune_garbage_collector`."""


def tune_garbage_collector() -> None:
    """Set up the cyclic garbage collector for a long-running operator: the start-up heap frozen, full
    collections ten times rarer.

    Every object alive now (modules, clients, registries: they live as long as the process) is moved out of the
    collector's reach, after collecting what is already garbage. A full (generation-2) collection walks every
    tracked object; with the start-up heap in it, one took 50–75 ms in the operator benchmark's 64-pod service,
    more than a tick, so the tick it fell in was the p99; frozen, the longest pause during its ticks is 1–17 ms.

    A tick keeps each pod's samples for the rate window (10 s), so they outlive the young generations and reach
    the old one, and with 1,600 pods a full collection still walks some 10^5 objects (100–250 ms) and, at
    CPython's default of one per 10 generation-1 collections, came every 2.5 s: about 2.4 s of every 50 s, 5% of
    the core. One per 100 generation-1 collections makes them ten times rarer; the ticks make almost no cyclic
    garbage (a few hundred objects over a whole benchmark run), so nothing waits longer to be freed
    (docs/benchmarks.md, issue 6).
    """
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


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
        api,
        field_manager=settings.field_manager,
        owners_ttl_seconds=settings.owners_refresh_seconds,
        scale_ttl_seconds=settings.scale_refresh_seconds,
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
        status_refresh_seconds=settings.status_refresh_seconds,
        heartbeats=health.Heartbeats(stall_seconds=settings.health_stall_seconds),
    )
    if settings.health_port:
        logger.info("operator liveness on %s", _health_url(settings))
    registry = handlers.build_registry(runtime)
    tune_garbage_collector()
    try:
        kopf.run(
            registry=registry,
            standalone=settings.peering_name is None,
            peering_name=settings.peering_name,
            priority=settings.priority,
            namespaces=settings.namespaces,
            clusterwide=not settings.namespaces,
            liveness_endpoint=_health_url(settings),
        )
    finally:
        cluster.close()
