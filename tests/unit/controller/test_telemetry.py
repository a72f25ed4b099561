"""The operator's metrics: a deleted service's series go, the others stay."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from tokenscale.controller import telemetry


def test_forget_service_removes_only_that_services_series() -> None:
    metrics = telemetry.OperatorMetrics(CollectorRegistry())
    for name in ("kept", "gone"):
        metrics.desired_replicas.labels("ns", name, "prefill").set(3)
        metrics.decisions.labels("ns", name, "tokenscale", "prefill", "scale", "PrefillVelocity").inc()
        metrics.reconcile_duration.labels("ns", name).observe(0.01)
    metrics.forget_service(namespace="ns", name="gone")
    registry = metrics.registry
    assert (
        registry.get_sample_value("tokenscale_desired_replicas", {"namespace": "ns", "name": "gone", "role": "prefill"})
        is None
    )
    assert (
        registry.get_sample_value("tokenscale_reconcile_duration_seconds_count", {"namespace": "ns", "name": "gone"})
        is None
    )
    assert (
        registry.get_sample_value("tokenscale_desired_replicas", {"namespace": "ns", "name": "kept", "role": "prefill"})
        == 3
    )
    assert (
        registry.get_sample_value("tokenscale_reconcile_duration_seconds_count", {"namespace": "ns", "name": "kept"})
        == 1
    )
