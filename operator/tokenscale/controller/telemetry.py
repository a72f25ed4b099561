"""The operator's own Prometheus metrics: names, label names and the one place that updates them.

Every name here is documented in ``docs/metrics.md`` (section "Operator metrics"). Rules (style.md §12):
units in names, counters end in ``_total``, label names are the constants below, and no label carries a
pod name (pods come and go; a series per pod would grow without bound).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "ACTION",
    "BLOCKED_REASONS",
    "NAME",
    "NAMESPACE",
    "OPERATION",
    "POLICY",
    "REASON",
    "ROLE",
    "SERVICE_ROLE",
    "STAGE",
    "OperatorMetrics",
]

NAMESPACE = "namespace"
"""Namespace of the DisaggregatedInferenceService."""
NAME = "name"
"""Name of the DisaggregatedInferenceService."""
ROLE = "role"
"""``prefill`` or ``decode``: the workload; ``service`` (`SERVICE_ROLE`) for a decision that changes neither."""
SERVICE_ROLE = "service"
STAGE = "stage"
"""``prefill``, ``network`` (KV transfer) or ``decode``: a stage of the PD pipeline."""
POLICY = "policy"
"""Scaling policy name (``tokenscale``, ``heteroscale``, ...)."""
ACTION = "action"
"""``scale``, ``convert``, ``restore``, ``hold`` or ``none``."""
REASON = "reason"
"""A stable CamelCase reason code (the decision's, the failure's, or why a decision was blocked)."""
OPERATION = "operation"
"""A write the operator makes: ``scale``, ``convert``, ``restore``, ``withdraw``, ``rejoin``, ``deletion_cost``,
``status``."""

BLOCKED_REASONS = ("ScalingConflict", "RoleLabelInSelector", "ActuationFailed")
"""Why a decision was not actuated (``tokenscale_scaling_blocked``'s reasons; every one has a series)."""

_SERVICE = (NAMESPACE, NAME)

# Tick durations from 1 ms to 2.5 s: the goal is tens of milliseconds per tick at a 1 s interval.
_TICK_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class OperatorMetrics:
    """All operator metrics, registered in their own registry (several operators can share a test process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.desired_replicas = Gauge(
            "tokenscale_desired_replicas",
            "Replicas the last decision asked of the role.",
            [*_SERVICE, ROLE],
            registry=r,
        )
        self.current_replicas = Gauge(
            "tokenscale_current_replicas",
            "Replicas of the role's scale target (/scale status).",
            [*_SERVICE, ROLE],
            registry=r,
        )
        self.ready_replicas = Gauge(
            "tokenscale_ready_replicas", "Ready pods of the role.", [*_SERVICE, ROLE], registry=r
        )
        self.converted_decoders = Gauge(
            "tokenscale_converted_decoders", "Decode pods now also taking prefill work.", [*_SERVICE], registry=r
        )
        self.token_velocity = Gauge(
            "tokenscale_token_velocity_tokens_per_second",
            "Ready capacity of the stage: the token rate it can sustain (velocity times Ready pods).",
            [*_SERVICE, STAGE],
            registry=r,
        )
        self.arrival_rate = Gauge(
            "tokenscale_arrival_rate_tokens_per_second",
            "Token rate arriving at the stage over the rate window.",
            [*_SERVICE, STAGE],
            registry=r,
        )
        self.metrics_available = Gauge(
            "tokenscale_metrics_available",
            "1 when the last tick had the load inputs it needs, 0 when it held for unknown input.",
            [*_SERVICE],
            registry=r,
        )
        self.decisions = Counter(
            "tokenscale_decisions_total",
            "Decisions by what they do to which workload, and why.",
            [*_SERVICE, POLICY, ROLE, ACTION, REASON],
            registry=r,
        )
        self.scrape_errors = Counter(
            "tokenscale_scrape_errors_total",
            "Pod scrapes that gave no sample, by role and reason.",
            [*_SERVICE, ROLE, REASON],
            registry=r,
        )
        self.actuation_errors = Counter(
            "tokenscale_actuation_errors_total",
            "Writes to the cluster that failed, by operation and reason.",
            [*_SERVICE, OPERATION, REASON],
            registry=r,
        )
        self.scaling_blocked = Gauge(
            "tokenscale_scaling_blocked",
            "1 when the last tick's decision wanted a change the operator could not make, by why "
            "(ScalingConflict, RoleLabelInSelector, ActuationFailed); dryRun is not blocked.",
            [*_SERVICE, REASON],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "tokenscale_reconcile_duration_seconds",
            "Duration of one tick: observe, decide, act, report.",
            [*_SERVICE],
            buckets=_TICK_BUCKETS_SECONDS,
            registry=r,
        )

    def forget_service(self, *, namespace: str, name: str) -> None:
        """Drop every series of a deleted service (gauges would otherwise report it forever)."""
        for metric in (
            self.desired_replicas,
            self.current_replicas,
            self.ready_replicas,
            self.converted_decoders,
            self.token_velocity,
            self.arrival_rate,
            self.metrics_available,
            self.decisions,
            self.scrape_errors,
            self.actuation_errors,
            self.scaling_blocked,
            self.reconcile_duration,
        ):
            metric.remove_by_labels({NAMESPACE: namespace, NAME: name})
