"""One tick of one service: observe, decide, act, report.

1. **Observe**: both targets' /scale (replicas and pod selector), other autoscalers on them, the pods of
   each role (by the target's selector, read for podIP, readiness, role label and conversion annotation),
   and one metrics scrape of every pod, appended to each pod's sample history.
2. **Decide**: `tokenscale.core.observe.build_observation` turns histories into rates (a pod without a
   fresh sample is unknown, and unknown input holds); `tokenscale.core.decide.decide` runs the policy.
3. **Act** unless ``dryRun`` or another autoscaler owns a target: restore, convert (role label and
   annotation on the pod), mark scale-in victims with a pod-deletion-cost, write /scale (scale-ins before
   scale-outs, so an opposing move never holds more replicas in between than before or after).
4. **Report**: Events and the operator's metrics every tick; the status when a reader-relevant part of it
   changed, or its live numbers every ``status_refresh_seconds`` (`tokenscale.controller.report`).

The adapters are `typing.Protocol` arguments, so tests and the benchmark run a tick without a cluster.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tokenscale.api import v1alpha1
from tokenscale.controller import pools, report, telemetry
from tokenscale.controller.service import MetricsEndpoint, ServiceConfig, ServiceMemory
from tokenscale.controller.victims import CONVERTED_DELETION_COST, VICTIM_DELETION_COST, scale_in_victims
from tokenscale.core import decide, observe
from tokenscale.core.types import Decision, EngineSample, Observation, PodView, Role, ServingRole
from tokenscale.kube import deployments, selectors
from tokenscale.kube import errors as kube_errors
from tokenscale.kube import pods as kube_pods
from tokenscale.kube.scale import Scale, ScaleRef
from tokenscale.metrics import source as metrics_source

__all__ = [
    "CONVERTED_DELETION_COST",
    "VICTIM_DELETION_COST",
    "Cluster",
    "EventSink",
    "PodScraper",
    "TickPorts",
    "run_tick",
    "scale_in_victims",
]

logger = logging.getLogger(__name__)

_HISTORY_SLACK_TICKS = 3
"""Samples are kept for the rate window plus this many ticks, so the window is always covered."""


class Cluster(pools.PoolCluster, Protocol):
    """The cluster as a tick uses it (implemented by `tokenscale.kube.cluster.KubeCluster`): what a pool needs
    (/scale and pods), plus the scale owners and the status."""

    async def find_scale_owners(
        self, *, namespace: str, refs: tuple[ScaleRef, ...]
    ) -> Mapping[ScaleRef, Sequence[str]]: ...

    async def patch_status(self, *, namespace: str, name: str, status_: Mapping[str, Any]) -> None: ...


class PodScraper(Protocol):
    """Reads every pod's engine metrics: one answer per pod name, a sample or `Unknown` (never an exception)."""

    async def scrape(
        self, *, targets: Sequence[metrics_source.PodTarget], endpoint: MetricsEndpoint
    ) -> Mapping[str, EngineSample | metrics_source.Unknown]: ...


class EventSink(Protocol):
    """Posts Kubernetes Events about the service (kopf's in the operator, a list in tests)."""

    def post(self, *, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class TickPorts:
    """Everything a tick talks to."""

    cluster: Cluster
    scraper: PodScraper
    events: EventSink
    metrics: telemetry.OperatorMetrics
    event_repeat_seconds: float = 60.0
    may_write: Callable[[], bool] = lambda: True
    """False once this operator must stop writing (its daemon is stopping: the resource is being deleted, the
    operator exits, or a peer of higher priority took over). Checked before actuating and before the status."""
    placement: pools.PlacementCluster | None = None
    """Nodes, templates and deployment groups, for a service with variants or spec.placement; None: such a
    service's pools are scaled without reading free GPUs, and placement cannot act."""
    status_refresh_seconds: float = 10.0
    """A status whose only change is live numbers (velocities, arrival rates, condition messages) is written at
    most this often; any other change is written at once (`tokenscale.controller.report.status_write_due`)."""


def _timestamp(sample: EngineSample) -> float:
    return sample.timestamp_seconds


def _serving_role(*, config: ServiceConfig, role: Role, labels: Mapping[str, str]) -> ServingRole:
    if role is Role.PREFILL:
        return ServingRole.PREFILL
    if labels.get(config.role_label.key) == config.role_label.converted:
        return ServingRole.CONVERTED
    return ServingRole.DECODE


def _pod_view(*, config: ServiceConfig, role: Role, pod: kube_pods.PodInfo, failure: str | None) -> PodView:
    serving_role = _serving_role(config=config, role=role, labels=pod.labels)
    converted_since = None
    if serving_role is ServingRole.CONVERTED:
        stamp = pod.annotations.get(kube_pods.CONVERTED_AT_ANNOTATION)
        converted_since = kube_pods.parse_time(stamp) if stamp else None
    return PodView(
        name=pod.name,
        role=role,
        serving_role=serving_role,
        # A terminating pod is draining: not Ready capacity, whatever its condition still says.
        ready=pod.ready and not pod.deleting,
        ready_since_seconds=pod.ready_since_seconds if pod.ready else None,
        converted_since_seconds=converted_since,
        unknown_reason=failure,
    )


@dataclass(slots=True)
class _Tick:
    """The context and the findings of one tick."""

    namespace: str
    name: str
    config: ServiceConfig
    memory: ServiceMemory
    ports: TickPorts
    now_seconds: float
    scales: dict[Role, Scale] = field(default_factory=dict)
    pods: dict[Role, list[kube_pods.PodInfo]] = field(default_factory=dict)
    owners: list[str] = field(default_factory=list)
    actions: list[report.Action] = field(default_factory=list)
    failures: list[report.Failure] = field(default_factory=list)
    conversion_refused: bool = False
    pooled: pools.PooledTick | None = None
    """The service's pools (variants, deployment groups); None for one target per role."""

    @property
    def refs(self) -> dict[Role, ScaleRef]:
        return {Role.PREFILL: self.config.prefill_ref, Role.DECODE: self.config.decode_ref}

    async def read_targets(self) -> None:
        cluster = self.ports.cluster
        if self.pooled is not None:
            self.scales = await self.pooled.read()
            return
        prefill, decode = await asyncio.gather(
            cluster.read_scale(namespace=self.namespace, ref=self.config.prefill_ref),
            cluster.read_scale(namespace=self.namespace, ref=self.config.decode_ref),
        )
        self.scales = {Role.PREFILL: prefill, Role.DECODE: decode}

    async def observe(self) -> Observation:
        cluster, metrics = self.ports.cluster, self.ports.metrics
        if self.pooled is not None:
            refs = self.config.template_refs(Role.PREFILL) + self.config.template_refs(Role.DECODE)
            owners_by_ref, self.pods = await asyncio.gather(
                cluster.find_scale_owners(namespace=self.namespace, refs=refs), self.pooled.list_pods()
            )
        else:
            refs = (self.config.prefill_ref, self.config.decode_ref)
            owners_by_ref, prefill_pods, decode_pods = await asyncio.gather(
                cluster.find_scale_owners(namespace=self.namespace, refs=refs),
                cluster.list_pods(namespace=self.namespace, selector=self.scales[Role.PREFILL].selector),
                cluster.list_pods(namespace=self.namespace, selector=self.scales[Role.DECODE].selector),
            )
            self.pods = {Role.PREFILL: list(prefill_pods), Role.DECODE: list(decode_pods)}
        self.owners = [f"{owner} targets {ref}" for ref, found in owners_by_ref.items() for owner in found]

        results = await self.ports.scraper.scrape(
            targets=[
                metrics_source.PodTarget(name=pod.name, ip=pod.pod_ip)
                for role_pods in self.pods.values()
                for pod in role_pods
                if pod.pod_ip
            ],
            endpoint=self.config.metrics_endpoint(namespace=self.namespace),
        )
        views: list[PodView] = []
        for role, role_pods in self.pods.items():
            for pod in role_pods:
                result = results.get(pod.name)
                failure: str | None = None
                if isinstance(result, EngineSample):
                    self.memory.histories.setdefault(pod.name, []).append(result)
                else:
                    code, failure = (
                        (result.reason.value, result.message)
                        if result is not None
                        else ("NoPodIP", "the pod has no IP yet")
                        if not pod.pod_ip
                        else ("NotScraped", "the scraper gave no answer for the pod")
                    )
                    metrics.scrape_errors.labels(self.namespace, self.name, role.value, code).inc()
                views.append(_pod_view(config=self.config, role=role, pod=pod, failure=failure))

        keep_seconds = self.config.settings.window_seconds + _HISTORY_SLACK_TICKS * self.config.tick_seconds
        self._trim_histories(names={view.name for view in views}, oldest_seconds=self.now_seconds - keep_seconds)
        return observe.build_observation(
            now_seconds=self.now_seconds,
            settings=self.config.settings,
            prefill_spec_replicas=self.scales[Role.PREFILL].spec_replicas,
            decode_spec_replicas=self.scales[Role.DECODE].spec_replicas,
            pods=views,
            histories=self.memory.histories,
        )

    def _trim_histories(self, *, names: set[str], oldest_seconds: float) -> None:
        histories = self.memory.histories
        for pod in list(histories):
            if pod not in names:
                del histories[pod]
                continue
            history = histories[pod]
            stale = bisect.bisect_left(history, oldest_seconds, key=_timestamp)
            if stale:
                del history[:stale]

    async def _write(self, operation: str, target: str, coroutine: Awaitable[object]) -> bool:
        """Await one write; a failure is recorded (condition, Event, metric) and retried by the next tick."""
        try:
            await coroutine
        except (kube_errors.ApiError, kube_errors.NotScalableError) as exc:
            code = f"{operation.title().replace('_', '')}Failed"
            description = f"{operation.replace('_', ' ')} {target}"
            self.failures.append(report.Failure(code=code, target=target, message=f"{description}: {exc}"))
            self.ports.metrics.actuation_errors.labels(self.namespace, self.name, operation, code).inc()
            logger.warning("%s/%s: %s failed, retried next tick: %s", self.namespace, self.name, description, exc)
            return False
        return True

    async def act(self, *, decision: Decision, observation: Observation) -> None:
        """Apply ``decision``: restores, conversions, deletion costs, then /scale (scale-ins first)."""
        label = self.config.role_label
        cluster = self.ports.cluster
        if (decision.convert_pods or decision.restore_pods) and label.key in selectors.selector_keys(
            self.scales[Role.DECODE].selector
        ):
            # Flipping a label the workload selects on would orphan the pod (its ReplicaSet would replace it).
            self.conversion_refused = True
        else:
            for pod in decision.restore_pods:
                patch = cluster.patch_pod(
                    namespace=self.namespace,
                    name=pod,
                    labels={label.key: label.decode},
                    annotations={kube_pods.CONVERTED_AT_ANNOTATION: None, kube_pods.DELETION_COST_ANNOTATION: None},
                )
                if await self._write("restore", pod, patch):
                    self.actions.append(report.Action(kind="restore", role=Role.DECODE, pod=pod))
            for pod in decision.convert_pods:
                patch = cluster.patch_pod(
                    namespace=self.namespace,
                    name=pod,
                    labels={label.key: label.converted},
                    annotations={
                        kube_pods.CONVERTED_AT_ANNOTATION: kube_pods.format_time(self.now_seconds),
                        kube_pods.DELETION_COST_ANNOTATION: str(CONVERTED_DELETION_COST),
                    },
                )
                if await self._write("convert", pod, patch):
                    self.actions.append(report.Action(kind="convert", role=Role.DECODE, pod=pod))

        await self._withdraw_and_rejoin(decision)

        if self.pooled is not None:
            views_by_role = {Role.PREFILL: observation.prefill.pods, Role.DECODE: observation.decode.pods}
            await self.pooled.actuate(decision=decision, views=views_by_role, keep=frozenset(decision.convert_pods))
            self.actions.extend(self.pooled.actions)
            return

        wanted = {Role.PREFILL: decision.prefill_replicas, Role.DECODE: decision.decode_replicas}
        views = {Role.PREFILL: observation.prefill.pods, Role.DECODE: observation.decode.pods}
        changing = [role for role in (Role.PREFILL, Role.DECODE) if wanted[role] != self.scales[role].spec_replicas]
        changing.sort(key=lambda role: wanted[role] > self.scales[role].spec_replicas)  # scale-ins first
        for role in changing:
            current = self.scales[role].spec_replicas
            if wanted[role] < current:
                # Terminating pods are already leaving and no longer count in the ReplicaSet's replicas.
                leaving = frozenset(p.name for p in self.pods[role] if p.deleting)
                victims = scale_in_victims(
                    pods=views[role],
                    count=current - wanted[role],
                    keep=frozenset(decision.convert_pods) | leaving,
                    withdrawn=self._withdrawn(role) | frozenset(decision.withdraw_pods),
                )
                await self._mark_victims(role=role, victims=frozenset(victims))
            write = cluster.write_scale(namespace=self.namespace, ref=self.refs[role], replicas=wanted[role])
            if await self._write("scale", str(self.refs[role]), write):
                self.actions.append(
                    report.Action(kind="scale", role=role, from_replicas=current, to_replicas=wanted[role])
                )

    def _role_of(self, pod: str) -> Role:
        return Role.PREFILL if any(p.name == pod for p in self.pods[Role.PREFILL]) else Role.DECODE

    def _withdrawn(self, role: Role) -> frozenset[str]:
        return frozenset(p.name for p in self.pods[role] if kube_pods.WITHDRAWN_AT_ANNOTATION in p.annotations)

    async def _withdraw_and_rejoin(self, decision: Decision) -> None:
        """Soft scale-in: a withdrawn pod is marked (time and lowest deletion cost) so that it is the first one
        removed; a rejoining pod is unmarked. Taking it out of the router's rotation is the router's part: the
        operator publishes the mark, it does not reconfigure routers."""
        for pod in decision.rejoin_pods:
            patch = self.ports.cluster.patch_pod(
                namespace=self.namespace,
                name=pod,
                annotations={kube_pods.WITHDRAWN_AT_ANNOTATION: None, kube_pods.DELETION_COST_ANNOTATION: None},
            )
            if await self._write("rejoin", pod, patch):
                self.actions.append(report.Action(kind="rejoin", role=self._role_of(pod), pod=pod))
        for pod in decision.withdraw_pods:
            patch = self.ports.cluster.patch_pod(
                namespace=self.namespace,
                name=pod,
                annotations={
                    kube_pods.WITHDRAWN_AT_ANNOTATION: kube_pods.format_time(self.now_seconds),
                    kube_pods.DELETION_COST_ANNOTATION: str(VICTIM_DELETION_COST),
                },
            )
            if await self._write("withdraw", pod, patch):
                self.actions.append(report.Action(kind="withdraw", role=self._role_of(pod), pod=pod))

    async def _mark_victims(self, *, role: Role, victims: frozenset[str]) -> None:
        """Give the victims the lowest deletion cost, and take it back from earlier victims still there (but
        withdrawn pods, which keep theirs until they rejoin)."""
        victim_cost = str(VICTIM_DELETION_COST)
        withdrawn = self._withdrawn(role)
        for pod in self.pods[role]:
            marked = pod.annotations.get(kube_pods.DELETION_COST_ANNOTATION) == victim_cost
            if (pod.name in victims) == marked or pod.name in withdrawn:
                continue
            value = victim_cost if pod.name in victims else None
            patch = self.ports.cluster.patch_pod(
                namespace=self.namespace, name=pod.name, annotations={kube_pods.DELETION_COST_ANNOTATION: value}
            )
            await self._write("deletion_cost", pod.name, patch)


async def run_tick(
    *,
    namespace: str,
    name: str,
    config: ServiceConfig,
    memory: ServiceMemory,
    ports: TickPorts,
    now_seconds: float,
    previous_status: Mapping[str, Any],
    uid: str | None = None,
) -> None:
    """Run one tick of the service ``namespace/name`` and write its status.

    ``uid`` is the resource's, for the owner reference of the deployment groups it creates (spec.placement).
    Never raises for what the cluster or the pods do (a missing target, an API error, a failed scrape):
    those become conditions and Events, and the next tick tries again.
    """
    started = time.perf_counter()
    tick = _Tick(namespace=namespace, name=name, config=config, memory=memory, ports=ports, now_seconds=now_seconds)
    if config.pools is not None:
        tick.pooled = pools.PooledTick(
            namespace=namespace,
            name=name,
            config=config,
            cluster=ports.cluster,
            placement_cluster=ports.placement,
            owner=None
            if uid is None
            else deployments.OwnerRef(api_version=v1alpha1.API_VERSION, kind=v1alpha1.KIND, name=name, uid=uid),
            now_seconds=now_seconds,
            write=tick._write,
            domain_priorities=memory.domain_priorities,
        )
    builder = report.StatusBuilder(
        namespace=namespace,
        name=name,
        config=config,
        memory=memory,
        ports=ports,
        now_seconds=now_seconds,
        previous_status=previous_status,
    )
    try:
        await tick.read_targets()
    except kube_errors.NotFoundError as exc:
        builder.target_problem(reason="TargetNotFound", message=str(exc))
    except kube_errors.NotScalableError as exc:
        builder.target_problem(reason="TargetNotScalable", message=str(exc))
    except kube_errors.ApiError as exc:
        builder.target_problem(reason="ApiError", message=str(exc))
    else:
        missing = (
            tick.pooled.missing_selectors()
            if tick.pooled is not None
            else [str(tick.refs[role]) for role, scale in tick.scales.items() if not scale.selector]
        )
        if missing:
            builder.target_problem(
                reason="NoSelector",
                message=f"{', '.join(missing)} report no pod selector in /scale status; its pods cannot be found",
            )
        else:
            await _decide_and_act(tick, builder)
    status_ = builder.build(scales=tick.scales)
    due = report.status_write_due(
        status_=status_,
        previous_status=previous_status,
        written_seconds=memory.status_written_seconds,
        now_seconds=now_seconds,
        refresh_seconds=ports.status_refresh_seconds,
    )
    if due and ports.may_write():
        try:
            await ports.cluster.patch_status(namespace=namespace, name=name, status_=status_)
        except kube_errors.ApiError as exc:
            ports.metrics.actuation_errors.labels(namespace, name, "status", "StatusFailed").inc()
            logger.warning("%s/%s: status not written, written next tick: %s", namespace, name, exc)
        else:
            memory.status_written_seconds = now_seconds
    ports.metrics.reconcile_duration.labels(namespace, name).observe(time.perf_counter() - started)


async def _decide_and_act(tick: _Tick, builder: report.StatusBuilder) -> None:
    try:
        observation = await tick.observe()
    except kube_errors.ApiError as exc:
        builder.target_problem(reason="ApiError", message=str(exc))
        return
    decision, tick.memory.state = decide.decide(
        settings=tick.config.settings, observation=observation, state=tick.memory.state_for(tick.config)
    )
    blocked: str | None = None
    if tick.config.spec.dry_run:
        blocked = "DryRun"
    elif tick.owners:
        blocked = "ScalingConflict"
    if blocked is None and tick.ports.may_write():
        await tick.act(decision=decision, observation=observation)
    builder.decided(
        observation=observation,
        decision=decision,
        blocked=blocked,
        owners=tick.owners,
        actions=tick.actions,
        failures=tick.failures,
        conversion_refused=tick.conversion_refused,
        decode_selector=tick.scales[Role.DECODE].selector,
    )
    if tick.pooled is not None:
        views = {Role.PREFILL: observation.prefill.pods, Role.DECODE: observation.decode.pods}
        builder.pools(tick.pooled.build_report(views=views))
