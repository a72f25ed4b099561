"""The kopf handlers: the only module that imports kopf.

- create/update/resume: parse and validate the spec, resolve both scale targets, say so in status and Events;
- a daemon per resource: one tick (`tokenscale.controller.reconcile.run_tick`) every
  ``spec.metrics.scrapeIntervalSeconds`` (kopf's timers take a fixed interval, a daemon reads the live spec);
- delete (with a finalizer): restore the converted decode pods, so no pod keeps taking prefill work after
  its autoscaler is gone;
- a liveness probe (kopf's health endpoint, `tokenscale run --health-port`): fails while a service's daemon
  has not completed a tick in time (`tokenscale.controller.health`).

Handlers are registered on a registry built per operator (`build_registry`), closing over a `Runtime`
that holds the adapters, so several operators can run in one test process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import kopf

from tokenscale.api import v1alpha1
from tokenscale.controller import health, pools, reconcile, report, telemetry
from tokenscale.controller.service import InvalidSpecError, ServiceConfig, ServiceMemory, parse_service
from tokenscale.core.types import Role
from tokenscale.kube import client as kube_client
from tokenscale.kube import errors as kube_errors
from tokenscale.kube import pods as kube_pods

__all__ = ["FINALIZER", "Runtime", "build_registry"]

logger = logging.getLogger(__name__)

FINALIZER = "tokenscale.io/finalizer"
_ANNOTATION_PREFIX = "tokenscale.io"
_INVALID_SPEC_RECHECK_SECONDS = 5.0
"""An invalid spec is parsed again this often (its generation may have changed meanwhile)."""


@dataclass
class Runtime:
    """What the handlers share: the cluster, the scraper (made on startup, in the operator's loop), metrics."""

    cluster: reconcile.Cluster
    credentials: kube_client.ConnectionCredentials
    metrics: telemetry.OperatorMetrics
    make_scraper: Callable[[], reconcile.PodScraper]
    close_scraper: Callable[[reconcile.PodScraper], Awaitable[None]]
    event_repeat_seconds: float = 60.0
    status_refresh_seconds: float = 10.0
    clock: Callable[[], float] = time.time
    scraper: reconcile.PodScraper | None = None
    placement: pools.PlacementCluster | None = None
    """Nodes, templates and deployment groups (spec.placement, variants' free GPUs); None: not readable."""
    memories: dict[str, ServiceMemory] = field(default_factory=dict)
    """Per resource uid: a deleted and re-created resource of the same name starts afresh."""
    heartbeats: health.Heartbeats = field(default_factory=lambda: health.Heartbeats(stall_seconds=30.0))
    """Each running daemon's last completed tick, read by the liveness probe."""
    monotonic: Callable[[], float] = time.monotonic
    """The heartbeats' clock."""


class _KopfEvents:
    """Events on the custom resource, through kopf's asynchronous poster."""

    def __init__(self, body: kopf.Body) -> None:
        self._body = body

    def post(self, *, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        kopf.event(self._body, type=type_, reason=reason, message=message)


def _status_dict(status: kopf.Status) -> dict[str, Any]:
    return dict(status) if status else {}


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """A kopf registry with the operator's handlers bound to ``runtime``."""
    registry = kopf.OperatorRegistry()
    resource = (v1alpha1.GROUP, v1alpha1.VERSION, v1alpha1.PLURAL)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=_ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=_ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        # Events are posted explicitly (every scale, convert, restore, hold); log lines only when they warn.
        settings.posting.level = logging.WARNING
        settings.networking.error_backoffs = [1, 2, 5, 10]
        runtime.scraper = runtime.make_scraper()

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        if runtime.scraper is not None:
            await runtime.close_scraper(runtime.scraper)

    # A stall raises kopf.PermanentError: kopf answers HTTP 500 at once. PERMANENT makes any other exception do
    # the same (by default kopf would retry the probe after its backoff, a minute, while the prober waits).
    @kopf.on.probe(id="ticking", registry=registry, errors=kopf.ErrorsMode.PERMANENT)
    async def ticking(**_: Any) -> dict[str, int]:  # async: kopf runs a plain function in a worker thread
        stalls = runtime.heartbeats.stalled(now_seconds=runtime.monotonic())
        if stalls:
            raise kopf.PermanentError("; ".join(map(str, stalls)))
        return {"services": len(runtime.heartbeats)}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        c = runtime.credentials
        return kopf.ConnectionInfo(
            server=c.server,
            ca_path=c.ca_path,
            insecure=c.insecure,
            username=c.username,
            password=c.password,
            scheme=c.scheme,
            token=c.token,
            certificate_path=c.certificate_path,
            private_key_path=c.private_key_path,
            trust_env=False,  # never through a proxy
        )

    @kopf.on.resume(*resource, registry=registry)
    @kopf.on.create(*resource, registry=registry)
    @kopf.on.update(*resource, field="spec", registry=registry)
    async def validate(
        *, body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, namespace: str | None, **_: Any
    ) -> None:
        namespace = namespace or ""
        generation = int(meta.get("generation") or 0)
        events = _KopfEvents(body)
        try:
            config = parse_service(spec=dict(spec), generation=generation)
        except InvalidSpecError as exc:
            await _report_invalid(runtime, body=body, status=status, message=str(exc), generation=generation)
            raise kopf.PermanentError(f"invalid spec: {exc}") from exc
        for ref in config.template_refs(Role.PREFILL) + config.template_refs(Role.DECODE):
            try:
                scale = await runtime.cluster.read_scale(namespace=namespace, ref=ref)
            except (kube_errors.ApiError, kube_errors.NotScalableError) as exc:
                # The daemon keeps reporting it in status; the target may appear later.
                events.post(type_="Warning", reason="TargetNotResolved", message=f"{ref}: {exc}")
                continue
            logger.info("%s resolved: %d replicas, selector %r", ref, scale.spec_replicas, scale.selector)
        events.post(
            type_="Normal",
            reason="Configured",
            message=f"policy {config.spec.policy.name.value}, prefill {config.prefill_ref}, "
            f"decode {config.decode_ref}, tick {config.tick_seconds:g} s"
            + (", dry run" if config.spec.dry_run else ""),
        )

    @kopf.daemon(*resource, registry=registry, cancellation_timeout=10.0)
    async def ticks(
        *,
        stopped: kopf.DaemonStopped,
        body: kopf.Body,
        meta: kopf.Meta,
        spec: kopf.Spec,
        status: kopf.Status,
        namespace: str | None,
        name: str,
        uid: str,
        **_: Any,
    ) -> None:
        namespace = namespace or ""
        memory = runtime.memories.setdefault(uid, ServiceMemory())
        events = _KopfEvents(body)
        config: ServiceConfig | None = None
        invalid_generation: int | None = None
        loop = asyncio.get_running_loop()
        heartbeats = runtime.heartbeats
        heartbeats.start(
            uid,
            service=f"{namespace}/{name}",
            interval_seconds=_INVALID_SPEC_RECHECK_SECONDS,
            now_seconds=runtime.monotonic(),
        )
        try:
            while not stopped:
                started = loop.time()
                generation = int(meta.get("generation") or 0)  # body, meta and spec are live views of the resource
                if config is None or config.generation != generation:
                    try:
                        config = parse_service(spec=dict(spec), generation=generation)
                    except InvalidSpecError as exc:
                        config = None
                        if invalid_generation != generation:  # once per generation: the spec is what must change
                            invalid_generation = generation
                            await _report_invalid(
                                runtime, body=body, status=status, message=str(exc), generation=generation
                            )
                        heartbeats.beat(
                            uid, interval_seconds=_INVALID_SPEC_RECHECK_SECONDS, now_seconds=runtime.monotonic()
                        )
                        await stopped.wait(_INVALID_SPEC_RECHECK_SECONDS)
                        continue
                if runtime.scraper is None:
                    raise kopf.TemporaryError("the scraper is not started yet", delay=1.0)
                ports = reconcile.TickPorts(
                    cluster=runtime.cluster,
                    scraper=runtime.scraper,
                    events=events,
                    metrics=runtime.metrics,
                    event_repeat_seconds=runtime.event_repeat_seconds,
                    status_refresh_seconds=runtime.status_refresh_seconds,
                    may_write=lambda: not stopped,
                    placement=runtime.placement,
                )
                try:
                    await reconcile.run_tick(
                        namespace=namespace,
                        name=name,
                        config=config,
                        memory=memory,
                        ports=ports,
                        now_seconds=runtime.clock(),
                        previous_status=_status_dict(status),
                        uid=uid,
                    )
                except Exception:
                    # A bug must not stop the service's ticks (kopf would back the daemon off for a minute): log it
                    # with its traceback and try again next tick.
                    logger.exception("%s/%s: tick failed; retrying next tick", namespace, name)
                heartbeats.beat(uid, interval_seconds=config.tick_seconds, now_seconds=runtime.monotonic())
                await stopped.wait(max(config.tick_seconds - (loop.time() - started), 0.0))
        finally:
            heartbeats.stop(uid)

    @kopf.on.delete(*resource, registry=registry)
    async def restore_on_delete(
        *, body: kopf.Body, spec: kopf.Spec, namespace: str | None, name: str, uid: str, **_: Any
    ) -> None:
        namespace = namespace or ""
        runtime.memories.pop(uid, None)
        runtime.metrics.forget_service(namespace=namespace, name=name)
        try:
            config = parse_service(spec=dict(spec), generation=0)
        except InvalidSpecError:
            return  # never reconciled, so nothing was converted
        restored = await restore_converted(runtime.cluster, namespace=namespace, config=config)
        if restored:
            _KopfEvents(body).post(
                type_="Normal", reason="Restore", message=f"deleted: restored {', '.join(restored)} to decode only"
            )

    return registry


async def _report_invalid(
    runtime: Runtime, *, body: kopf.Body, status: kopf.Status, message: str, generation: int
) -> None:
    events = _KopfEvents(body)
    events.post(type_="Warning", reason="InvalidSpec", message=message[:1000])
    status_ = report.invalid_spec_status(
        previous_status=_status_dict(status), message=message, now_seconds=runtime.clock(), generation=generation
    )
    try:
        await runtime.cluster.patch_status(
            namespace=body.metadata.namespace or "", name=body.metadata.name or "", status_=status_
        )
    except kube_errors.ApiError as exc:
        logger.warning("status not written: %s", exc)


async def restore_converted(cluster: reconcile.Cluster, *, namespace: str, config: ServiceConfig) -> list[str]:
    """Flip every converted pod of the decode workload back to decode; returns their names.

    Raises `kopf.TemporaryError` (kopf retries, the finalizer stays) when the API fails, so a resource is
    never gone while one of its pods still takes prefill work.
    """
    label = config.role_label
    decode_pods: list[kube_pods.PodInfo] = []
    # Every decode workload: its one target, or each variant's template (whose selector its groups' pods match).
    for ref in config.template_refs(Role.DECODE):
        try:
            scale = await cluster.read_scale(namespace=namespace, ref=ref)
            decode_pods.extend(await cluster.list_pods(namespace=namespace, selector=scale.selector))
        except kube_errors.NotFoundError:
            continue  # the decode workload is gone, and its pods with it
        except (kube_errors.ApiError, kube_errors.NotScalableError) as exc:
            raise kopf.TemporaryError(f"cannot list the decode pods to restore them: {exc}", delay=2.0) from exc
    restored = []
    for pod in decode_pods:
        if pod.labels.get(label.key) != label.converted and kube_pods.CONVERTED_AT_ANNOTATION not in pod.annotations:
            continue
        try:
            await cluster.patch_pod(
                namespace=namespace,
                name=pod.name,
                labels={label.key: label.decode},
                annotations={kube_pods.CONVERTED_AT_ANNOTATION: None, kube_pods.DELETION_COST_ANNOTATION: None},
            )
        except kube_errors.NotFoundError:
            continue
        except kube_errors.ApiError as exc:
            raise kopf.TemporaryError(f"cannot restore {pod.name}: {exc}", delay=2.0) from exc
        restored.append(pod.name)
    return restored
