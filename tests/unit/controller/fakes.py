"""In-memory adapters for reconcile tests and the benchmark: a cluster, engine pods and an event list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenscale.controller.service import MetricsEndpoint
from tokenscale.core.types import EngineSample, Histogram
from tokenscale.kube import errors
from tokenscale.kube.pods import PodInfo
from tokenscale.kube.scale import Scale, ScaleRef
from tokenscale.metrics.source import PodTarget, Unknown, UnknownReason

LENGTH_BOUNDS = (100.0, 500.0, 1000.0, 2000.0, 5000.0, float("inf"))


@dataclass
class FakeCluster:
    """Scale targets and pods in memory; every write is recorded in ``writes``."""

    scales: dict[str, Scale] = field(default_factory=dict)
    pods: dict[str, list[PodInfo]] = field(default_factory=dict)
    """Pods by the selector that lists them."""
    owners: dict[ScaleRef, list[str]] = field(default_factory=dict)
    writes: list[tuple[str, Any]] = field(default_factory=list)
    statuses: list[Mapping[str, Any]] = field(default_factory=list)
    fail_scale_writes: int = 0
    """The next this many /scale writes fail with an API error."""

    def add_target(self, name: str, *, replicas: int, selector: str, pods: Sequence[PodInfo]) -> None:
        self.scales[name] = Scale(
            spec_replicas=replicas, status_replicas=replicas, selector=selector, resource_version="1"
        )
        self.pods[selector] = list(pods)

    async def read_scale(self, *, namespace: str, ref: ScaleRef) -> Scale:
        del namespace
        if ref.name not in self.scales:
            raise errors.NotFoundError(f"{ref} not found", status=404)
        return self.scales[ref.name]

    async def write_scale(self, *, namespace: str, ref: ScaleRef, replicas: int) -> Scale:
        del namespace
        if self.fail_scale_writes:
            self.fail_scale_writes -= 1
            raise errors.ApiError("the API server is on fire", status=500)
        old = self.scales[ref.name]
        self.scales[ref.name] = Scale(
            spec_replicas=replicas, status_replicas=old.status_replicas, selector=old.selector, resource_version="2"
        )
        self.writes.append(("scale", (ref.name, replicas)))
        return self.scales[ref.name]

    async def list_pods(self, *, namespace: str, selector: str) -> Sequence[PodInfo]:
        del namespace
        return list(self.pods.get(selector, ()))

    async def patch_pod(
        self,
        *,
        namespace: str,
        name: str,
        labels: Mapping[str, str | None] | None = None,
        annotations: Mapping[str, str | None] | None = None,
    ) -> None:
        del namespace
        self.writes.append(("pod", (name, dict(labels or {}), dict(annotations or {}))))
        for selector, pods in self.pods.items():
            for index, pod in enumerate(pods):
                if pod.name == name:
                    pods[index] = PodInfo(
                        name=pod.name,
                        pod_ip=pod.pod_ip,
                        ready=pod.ready,
                        ready_since_seconds=pod.ready_since_seconds,
                        deleting=pod.deleting,
                        labels=_merged(pod.labels, labels),
                        annotations=_merged(pod.annotations, annotations),
                    )
                    self.pods[selector] = pods

    async def find_scale_owners(
        self, *, namespace: str, refs: tuple[ScaleRef, ...]
    ) -> Mapping[ScaleRef, Sequence[str]]:
        del namespace
        return {ref: self.owners.get(ref, []) for ref in refs}

    async def patch_status(self, *, namespace: str, name: str, status_: Mapping[str, Any]) -> None:
        del namespace, name
        self.statuses.append(status_)

    def scale_writes(self) -> list[tuple[str, int]]:
        return [value for kind, value in self.writes if kind == "scale"]

    def pod_writes(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        return [value for kind, value in self.writes if kind == "pod"]


def _merged(current: Mapping[str, str], changes: Mapping[str, str | None] | None) -> dict[str, str]:
    merged = dict(current)
    for key, value in (changes or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


@dataclass
class EngineModel:
    """One engine's counters, advanced at constant rates between samples."""

    prompt_tokens_per_second: float = 0.0
    generation_tokens_per_second: float = 0.0
    requests_per_second: float = 0.0
    requests_waiting: float = 0.0
    waiting_growth_per_second: float = 0.0
    requests_running: float = 0.0
    kv_cache_usage_ratio: float = 0.0
    prompt_tokens_per_request: float = 1000.0
    generation_tokens_per_request: float = 100.0
    healthy: bool = True
    _prompt: float = 0.0
    _generation: float = 0.0
    _requests: float = 0.0
    _last: float | None = None

    def sample(self, now_seconds: float) -> EngineSample:
        elapsed = 0.0 if self._last is None else now_seconds - self._last
        self._last = now_seconds
        self._prompt += self.prompt_tokens_per_second * elapsed
        self._generation += self.generation_tokens_per_second * elapsed
        self._requests += self.requests_per_second * elapsed
        self.requests_waiting = max(0.0, self.requests_waiting + self.waiting_growth_per_second * elapsed)
        return EngineSample(
            timestamp_seconds=now_seconds,
            prompt_tokens_total=self._prompt,
            generation_tokens_total=self._generation,
            requests_waiting=self.requests_waiting,
            requests_running=self.requests_running,
            kv_cache_usage_ratio=self.kv_cache_usage_ratio,
            kv_cache_capacity_tokens=440_000,
            requests_finished_total=self._requests,
            request_prompt_tokens=_point_histogram(self.prompt_tokens_per_request, self._requests),
            request_generation_tokens=_point_histogram(self.generation_tokens_per_request, self._requests),
        )


def _point_histogram(value: float, count: float) -> Histogram:
    cumulative = tuple(count if value <= bound else 0.0 for bound in LENGTH_BOUNDS)
    return Histogram(bucket_upper_bounds=LENGTH_BOUNDS, cumulative_counts=cumulative, sum=value * count, count=count)


@dataclass
class FakeScraper:
    """Samples each pod's `EngineModel` at the clock's time; unhealthy or unknown pods fail."""

    engines: dict[str, EngineModel] = field(default_factory=dict)
    now_seconds: float = 0.0
    calls: int = 0

    async def scrape(
        self, *, targets: Sequence[PodTarget], endpoint: MetricsEndpoint
    ) -> Mapping[str, EngineSample | Unknown]:
        del endpoint
        self.calls += 1
        results: dict[str, EngineSample | Unknown] = {}
        for target in targets:
            model = self.engines.get(target.name)
            if model is None or not model.healthy:
                results[target.name] = Unknown(self.now_seconds, UnknownReason.HTTP_STATUS, "answered HTTP 503")
            else:
                results[target.name] = model.sample(self.now_seconds)
        return results


@dataclass
class EventList:
    """Events posted, in order."""

    events: list[tuple[str, str, str]] = field(default_factory=list)

    def post(self, *, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]
