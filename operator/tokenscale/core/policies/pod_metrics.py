"""Per-pod metrics of one role, as the utilisation baselines (HPA, KPA, APA) read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tokenscale.core.types import PodView, RoleView

__all__ = ["MetricName", "RoleMetric", "role_metric"]

MetricName = Literal["kv_cache_usage", "requests_running", "concurrency"]


def _value(pod: PodView, metric: MetricName) -> float:
    if metric == "kv_cache_usage":
        return pod.kv_cache_usage_ratio
    if metric == "requests_running":
        return pod.requests_running
    # Knative's concurrency: requests in the pod, queued or running.
    return pod.requests_running + pod.requests_waiting


@dataclass(frozen=True, slots=True)
class RoleMetric:
    """A metric over one role's Ready pods with fresh metrics (``known``), and the pods without a value."""

    total: float
    known_pods: int
    unknown_ready_pods: int
    unready_pods: int

    @property
    def mean(self) -> float:
        """Mean over the known pods (0 when there is none)."""
        return self.total / self.known_pods if self.known_pods else 0.0

    @property
    def extrapolated_total(self) -> float:
        """The total with each unknown Ready pod at the known pods' mean."""
        return self.mean * (self.known_pods + self.unknown_ready_pods)


def role_metric(view: RoleView, metric: MetricName) -> RoleMetric:
    """Sum of ``metric`` over the role's Ready pods with fresh metrics, and counts of the others."""
    total = 0.0
    known = unknown = unready = 0
    for pod in view.pods:
        if not pod.ready:
            unready += 1
        elif pod.load_known:
            total += _value(pod, metric)
            known += 1
        else:
            unknown += 1
    return RoleMetric(total=total, known_pods=known, unknown_ready_pods=unknown, unready_pods=unready)
