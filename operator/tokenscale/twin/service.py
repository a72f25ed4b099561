"""One service's twin: a cluster model whose instances are the pods of the service's two targets.

Each poll (`ServiceTwin.sync`) brings the model to the pods the cluster has now:

- a pod of the prefill (decode) target that is not terminating is a prefill (decode) instance from the moment it
  exists (it costs from its creation, as a scale-out decision does in the simulator); it takes work once the pod is
  Ready and ``warm_up_seconds`` more have passed (the demo's pods carry their cold start as KWOK's Ready delay, so
  the warm-up is 0 there);
- a decode pod whose role label has the spec's *converted* value takes prefill work (`Cluster.convert`); back to
  any other value, it is restored; a pod annotated ``tokenscale.io/withdrawn-at`` is out of routing (soft
  scale-in) until the annotation goes;
- a pod that is terminating or gone drains: it takes no new work and finishes what it holds
  (`Cluster.remove_instance`), and its metrics listener is closed at once (pod IPs are recycled).

Every pod with an IP gets a listener on ``podIP:spec.metrics.port`` whose scrape advances the model to the
instant of the scrape and serves the instance's `tokenscale.sim.exposition.engine_sample` as vLLM text. The load
starts the first time both roles have a Ready instance; arrivals are the load's times divided by the speed-up.

Times inside are the model's: seconds of the ``clock`` (wall-clock seconds of the sped-up world, see
`tokenscale.twin.speedup`); `ServiceSnapshot` reports in simulated seconds and tokens per simulated second.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tokenscale.api import v1alpha1
from tokenscale.core.profile import Profile
from tokenscale.core.types import EngineSample, Role
from tokenscale.kube import pods as kube_pods
from tokenscale.sim import cluster as sim_cluster
from tokenscale.sim import loop, traces
from tokenscale.sim.exposition import engine_sample
from tokenscale.sim.instances import DecodeInstance, InstanceState, PrefillInstance
from tokenscale.twin import listeners, slo

__all__ = ["RoleCounts", "ServiceSnapshot", "ServiceTwin", "TwinEvent"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Listen = Callable[..., listeners.PodListener]

RATE_WINDOW_SIMULATED_SECONDS = 10.0
"""Arriving token rates in snapshots are averaged over this much simulated time."""


@dataclass(frozen=True, slots=True)
class TwinEvent:
    """Something the twin saw happen to a pod, at a simulated time since the load started (negative before)."""

    simulated_seconds: float
    service: str
    pod: str
    role: Role
    kind: str
    """``added``, ``ready``, ``converted``, ``restored``, ``withdrawn``, ``rejoined`` or ``removed``."""


@dataclass(frozen=True, slots=True)
class RoleCounts:
    """Instances of one role by state (draining: the pod is gone, the instance finishes its work)."""

    starting: int
    ready: int
    draining: int


@dataclass(frozen=True, slots=True)
class ServiceSnapshot:
    """A service's twin at one instant, in simulated seconds and tokens per simulated second."""

    namespace: str
    name: str
    simulated_seconds: float
    """Simulated time since the load started; 0 before it starts."""
    load_started: bool
    prefill: RoleCounts
    decode: RoleCounts
    converted: int
    withdrawn: int
    arriving_prompt_tokens_per_second: float
    """Prompt tokens of the requests that arrived over the last `RATE_WINDOW_SIMULATED_SECONDS`, per second."""
    arriving_decode_tokens_per_second: float
    """Input + output tokens of those requests, per second: the KV work they bring to decode (TokenScale V_D)."""
    prefill_queue: int
    decode_queue: int
    requests_arrived: int
    requests_finished: int
    slo: slo.SloSoFar
    gpu_seconds: float
    """GPU-seconds provisioned since the service was bound, simulated."""


@dataclass(slots=True)
class _Pod:
    role: Role
    instance: PrefillInstance | DecodeInstance
    ready_seen_seconds: float | None = None
    listener: listeners.PodListener | None = None


class ServiceTwin:
    """The twin of one DisaggregatedInferenceService. Thread-safe: polls and scrapes share one lock."""

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        spec: v1alpha1.DisaggregatedInferenceServiceSpec,
        profile: Profile,
        load: traces.Trace,
        speedup: float,
        clock: Clock,
        warm_up_seconds: float = 0.0,
        listen: Listen = listeners.start_listener,
    ) -> None:
        settings = spec.to_core(profile=profile)
        self.namespace = namespace
        self.name = name
        self.spec = spec
        self.slo = settings.slo
        self.speedup = speedup
        self._clock = clock
        self._warm_up_seconds = warm_up_seconds
        self._listen = listen
        self._model_name = spec.model_name or profile.model
        config = dataclasses.replace(
            loop.cluster_config_for(settings),
            disaggregation_overhead_seconds=sim_cluster.DEFAULT_DISAGGREGATION_OVERHEAD_SECONDS / speedup,
        )
        self._lock = threading.Lock()
        self._bound_seconds = clock()
        self.cluster = sim_cluster.Cluster(perf=profile.perf, config=config, now_seconds=self._bound_seconds)
        self._load = load
        self._arrivals: np.ndarray = np.zeros(0)
        self._prompt_cumsum: np.ndarray = np.zeros(1)
        self._decode_cumsum: np.ndarray = np.zeros(1)
        self._load_start: float | None = None
        self._pods: dict[str, _Pod] = {}
        self._closing: list[threading.Thread] = []
        self.events: list[TwinEvent] = []

    # -- polling ------------------------------------------------------------------------------------------------

    def sync(
        self,
        *,
        spec: v1alpha1.DisaggregatedInferenceServiceSpec,
        prefill_pods: Sequence[kube_pods.PodInfo],
        decode_pods: Sequence[kube_pods.PodInfo],
    ) -> None:
        """Bring the model to the pods listed now (see the module doc); ``spec`` is the service's current spec
        (its role label and metrics port are re-read; the profile and SLO stay those it was bound with)."""
        with self._lock:
            self.spec = spec
            now = self._clock()
            self.cluster.advance_to(now)
            listed = {p.name: (Role.PREFILL, p) for p in prefill_pods if not p.deleting}
            listed.update({p.name: (Role.DECODE, p) for p in decode_pods if not p.deleting})
            gone = [n for n, pod in self._pods.items() if n not in listed or listed[n][0] is not pod.role]
            for name in gone:
                self._remove(name)
            for name, (role, info) in listed.items():
                self._sync_pod(name, role, info, now)
            if self._load_start is None and self._serving(Role.PREFILL) and self._serving(Role.DECODE):
                self._start_load(now)

    def _serving(self, role: Role) -> bool:
        return any(i.state == InstanceState.READY for i in self.cluster.instances(role))

    def _event(self, pod: str, role: Role, kind: str, now: float) -> None:
        self.events.append(TwinEvent(self._simulated(now), self.name, pod, role, kind))
        logger.debug("%s/%s: %s %s %s", self.namespace, self.name, role.value, pod, kind)

    def _sync_pod(self, name: str, role: Role, info: kube_pods.PodInfo, now: float) -> None:
        pod = self._pods.get(name)
        if pod is None:
            try:
                instance = self.cluster.add_instance(role, name)
            except ValueError:
                return  # an earlier pod of this name is still draining; it is added once that one has left
            pod = self._pods[name] = _Pod(role=role, instance=instance)
            self._event(name, role, "added", now)
        instance = pod.instance
        if info.ready and pod.ready_seen_seconds is None:
            pod.ready_seen_seconds = now
        if (
            instance.state == InstanceState.STARTING
            and pod.ready_seen_seconds is not None
            and now >= pod.ready_seen_seconds + self._warm_up_seconds
            and self.cluster.mark_ready(name)
        ):
            self._event(name, role, "ready", now)
        if isinstance(instance, DecodeInstance):
            key, _, _, converted_value = self.spec.role_label.resolved()
            wants_converted = info.labels.get(key) == converted_value
            if wants_converted and not instance.converted and self.cluster.convert(name):
                self._event(name, role, "converted", now)
            elif not wants_converted and instance.converted and self.cluster.restore(name):
                self._event(name, role, "restored", now)
        wants_withdrawn = kube_pods.WITHDRAWN_AT_ANNOTATION in info.annotations
        if wants_withdrawn and not instance.withdrawn and self.cluster.withdraw(name):
            self._event(name, role, "withdrawn", now)
        elif not wants_withdrawn and instance.withdrawn and self.cluster.rejoin(name):
            self._event(name, role, "rejoined", now)
        self._sync_listener(name, pod, info)

    def _sync_listener(self, name: str, pod: _Pod, info: kube_pods.PodInfo) -> None:
        port = self.spec.metrics.port
        listener = pod.listener
        if listener is not None and (listener.address, listener.port) == (info.pod_ip, port):
            return
        if listener is not None:
            self._close_later(listener)
            pod.listener = None
        if info.pod_ip is None:
            return
        try:
            pod.listener = self._listen(
                address=info.pod_ip, port=port, sample_of=lambda: self._sample(name), model_name=self._model_name
            )
        except OSError as error:
            # The IP's previous pod's listener may still be closing: the next poll tries again.
            logger.debug(
                "%s/%s: cannot serve %s on %s:%d yet: %s", self.namespace, self.name, name, info.pod_ip, port, error
            )

    def _close_later(self, listener: listeners.PodListener) -> None:
        # Closing waits for the server loop's poll (up to 0.5 s): not on the polling thread.
        closer = threading.Thread(target=listener.close, name=f"close-{listener.address}", daemon=True)
        closer.start()
        self._closing = [c for c in self._closing if c.is_alive()]
        self._closing.append(closer)

    def _remove(self, name: str) -> None:
        pod = self._pods.pop(name)
        if pod.listener is not None:
            self._close_later(pod.listener)
        self.cluster.remove_instance(name)
        self._event(name, pod.role, "removed", self.cluster.now_seconds)

    def _start_load(self, now: float) -> None:
        load = self._load
        self._load_start = now
        self._arrivals = now + load.arrival_seconds / self.speedup
        self._prompt_cumsum = np.concatenate(([0], np.cumsum(load.input_tokens)))
        self._decode_cumsum = np.concatenate(([0], np.cumsum(load.input_tokens + load.output_tokens)))
        self.cluster.submit_all(
            arrival_seconds=self._arrivals.tolist(),
            input_tokens=load.input_tokens.tolist(),
            output_tokens=load.output_tokens.tolist(),
        )
        logger.info(
            "%s/%s: load started: %d requests over %.0f simulated s",
            self.namespace,
            self.name,
            len(load),
            load.span_seconds,
        )

    # -- scrapes ------------------------------------------------------------------------------------------------

    def _sample(self, name: str) -> EngineSample | None:
        with self._lock:
            pod = self._pods.get(name)
            if pod is None:
                return None
            now = self._clock()
            self.cluster.advance_to(now)
            return engine_sample(pod.instance, now_seconds=now)

    # -- reading ------------------------------------------------------------------------------------------------

    def _simulated(self, now: float) -> float:
        start = self._load_start if self._load_start is not None else now
        return (now - start) * self.speedup

    def snapshot(self) -> ServiceSnapshot:
        """The twin now (see `ServiceSnapshot`)."""
        with self._lock:
            now = self._clock()
            cluster = self.cluster
            cluster.advance_to(now)
            window = RATE_WINDOW_SIMULATED_SECONDS / self.speedup
            first, last = np.searchsorted(self._arrivals, (now - window, now), side="right")
            outcomes = cluster.outcomes()
            so_far = slo.slo_so_far(outcomes=outcomes, slo=self.slo, now_seconds=now)
            return ServiceSnapshot(
                namespace=self.namespace,
                name=self.name,
                simulated_seconds=self._simulated(now),
                load_started=self._load_start is not None,
                prefill=self._counts(Role.PREFILL),
                decode=self._counts(Role.DECODE),
                converted=sum(1 for d in cluster.decoders if d.converted),
                withdrawn=sum(1 for i in (*cluster.prefillers, *cluster.decoders) if i.withdrawn),
                arriving_prompt_tokens_per_second=float(self._prompt_cumsum[last] - self._prompt_cumsum[first])
                / RATE_WINDOW_SIMULATED_SECONDS,
                arriving_decode_tokens_per_second=float(self._decode_cumsum[last] - self._decode_cumsum[first])
                / RATE_WINDOW_SIMULATED_SECONDS,
                prefill_queue=len(cluster.prefill_queue),
                decode_queue=len(cluster.decode_queue),
                requests_arrived=int(last),
                requests_finished=cluster.completed,
                slo=so_far,
                gpu_seconds=cluster.gpu_seconds(until_seconds=now) * self.speedup,
            )

    def _counts(self, role: Role) -> RoleCounts:
        states = [i.state for i in self.cluster.instances(role)]
        return RoleCounts(
            starting=states.count(InstanceState.STARTING),
            ready=states.count(InstanceState.READY),
            draining=states.count(InstanceState.DRAINING),
        )

    def close(self) -> None:
        """Close every listener (and wait for them to close); the model stays readable."""
        with self._lock:
            for pod in self._pods.values():
                if pod.listener is not None:
                    self._close_later(pod.listener)
                    pod.listener = None
            closing, self._closing = self._closing, []
        for closer in closing:
            closer.join(timeout=5)
