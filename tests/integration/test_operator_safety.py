"""What the operator refuses to do on a real cluster: scale in blind, fight another autoscaler, act in dry run,
orphan pods by flipping a selected label, or accept a bad resource; and what its finalizer undoes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.integration import operator_process as op
from tests.integration import pd_pair as pd
from tests.integration.fake_engine import EngineLoad
from tests.integration.pd_pair import DECODE, IDLE_PREFILL, PREFILL, SERVICE
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl, KubectlError

pytestmark = pytest.mark.integration

BUSY_PREFILL = EngineLoad(prompt_tokens_per_second=80_000.0, requests_per_second=80.0)
BURST = EngineLoad(
    prompt_tokens_per_second=30_000.0, requests_per_second=30.0, waiting_growth_per_second=40.0, requests_waiting=5
)
STATIC = {"name": "static", "static": {"prefillReplicas": 2, "decodeReplicas": 1}}


def test_metrics_outage_holds_and_never_scales_in(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    with pd.running(dev_cluster, kubectl, namespace, tmp_path, prefill=3, decode=1, prefill_load=BUSY_PREFILL) as (
        fleet,
        operator,
    ):
        op.apply(kubectl, namespace, pd.service(behavior={"scaleInStabilizationSeconds": 0}))
        op.wait_ready(kubectl, namespace, SERVICE)
        assert op.spec_replicas(kubectl, namespace, PREFILL) == 3  # 80k tokens/s needs 3 prefillers
        # The engines stop answering, and behind the outage the load falls.
        fleet.set_load(PREFILL, EngineLoad(prompt_tokens_per_second=100.0, healthy=False))
        wait_until(
            lambda: op.condition(kubectl, namespace, SERVICE, "MetricsAvailable") == ("False", "MetricsUnavailable"),
            what="MetricsAvailable False",
        )
        op.sleep_seconds(6)
        assert op.spec_replicas(kubectl, namespace, PREFILL) == 3
        assert op.condition(kubectl, namespace, SERVICE, "ScalingActive") == ("False", "MetricsUnavailable")
        assert "Hold" in op.event_reasons(kubectl, namespace, SERVICE)
        assert (operator.metric("tokenscale_scrape_errors_total", role="prefill") or 0) > 0
        assert operator.metric("tokenscale_metrics_available", name=SERVICE) == 0
        # Metrics come back: now the fall is seen, and prefill scales in.
        fleet.set_load(PREFILL, IDLE_PREFILL)
        wait_until(lambda: op.spec_replicas(kubectl, namespace, PREFILL) < 3, what="prefill scaled in once seen")


def test_hpa_on_a_target_is_a_conflict_and_nothing_is_actuated(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "decode-hpa"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DECODE},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                }
            ],
        },
    }
    with pd.running(dev_cluster, kubectl, namespace, tmp_path, prefill=1, decode=1):
        op.apply(kubectl, namespace, hpa, pd.service(policy=STATIC))
        wait_until(
            lambda: op.condition(kubectl, namespace, SERVICE, "ScalingConflict") == ("True", "OtherAutoscaler"),
            what="ScalingConflict",
        )
        op.sleep_seconds(3)
        assert op.spec_replicas(kubectl, namespace, PREFILL) == 1  # static wants 2
        assert op.condition(kubectl, namespace, SERVICE, "ScalingActive") == ("False", "ScalingConflict")
        assert "ScalingConflict" in op.event_reasons(kubectl, namespace, SERVICE)
        # The HPA goes: the operator takes over (after its owner-list refresh).
        kubectl.run("delete", "hpa", "decode-hpa", f"--namespace={namespace}")
        wait_until(
            lambda: op.spec_replicas(kubectl, namespace, PREFILL) == 2, what="actuation resumes", timeout_seconds=30
        )


def test_dry_run_reports_decisions_but_never_patches(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    with pd.running(dev_cluster, kubectl, namespace, tmp_path, prefill=1, decode=1):
        op.apply(kubectl, namespace, pd.service(policy=STATIC, dryRun=True))
        wait_until(
            lambda: op.status_of(kubectl, namespace, SERVICE).get("prefill", {}).get("desiredReplicas") == 2,
            what="desired prefill 2 in status",
        )
        op.sleep_seconds(3)
        assert op.spec_replicas(kubectl, namespace, PREFILL) == 1
        assert op.condition(kubectl, namespace, SERVICE, "ScalingActive") == ("False", "DryRun")
        assert "DryRun" in op.event_reasons(kubectl, namespace, SERVICE)


def test_role_label_in_the_selector_refuses_conversion(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    with pd.running(dev_cluster, kubectl, namespace, tmp_path, prefill=1, decode=2, decode_selector_has_role=True) as (
        fleet,
        _operator,
    ):
        op.apply(kubectl, namespace, pd.service(decode={"scaleTargetRef": {"name": DECODE}, "minReplicas": 2}))
        op.wait_ready(kubectl, namespace, SERVICE)
        fleet.set_load(PREFILL, BURST)
        wait_until(
            lambda: op.condition(kubectl, namespace, SERVICE, "ScalingLimited") == ("True", "RoleLabelInSelector"),
            what="conversion refused",
        )
        assert op.converted_pods(kubectl, namespace, DECODE) == []
        assert "RoleLabelInSelector" in op.event_reasons(kubectl, namespace, SERVICE)
        wait_until(lambda: op.spec_replicas(kubectl, namespace, PREFILL) > 1, what="prefill still scales")
        assert len(op.pods(kubectl, namespace, DECODE)) == 2  # no pod orphaned and replaced


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param(
            {"prefill": {"scaleTargetRef": {"name": PREFILL}, "minReplicas": 5, "maxReplicas": 2}},
            "minReplicas must be less than or equal to maxReplicas",
            id="min-above-max",
        ),
        pytest.param({"policy": {"name": "magic"}}, "Unsupported value", id="unknown-policy"),
        pytest.param({"metrics": {"scrapeIntervalSeconds": 5, "windowSeconds": 2}}, "windowSeconds", id="window"),
        pytest.param({"replicas": 3}, "unknown field", id="unknown-field"),
    ],
)
def test_api_server_refuses_bad_resources(kubectl: Kubectl, namespace: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(KubectlError) as refused:
        op.apply(kubectl, namespace, pd.service(**spec))
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        pytest.param({"profile": {"name": "gpt-9-on-abacus"}}, "InvalidSpec", id="unknown-profile"),
        pytest.param({"decode": {"scaleTargetRef": {"name": "missing"}}}, "TargetNotFound", id="missing-target"),
        pytest.param(
            {"decode": {"scaleTargetRef": {"apiVersion": "v1", "kind": "ConfigMap", "name": "x"}}},
            "TargetNotScalable",
            id="kind-without-scale",
        ),
    ],
)
def test_operator_refuses_what_the_schema_cannot(
    *,
    dev_cluster: cluster.DevCluster,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    spec: dict[str, Any],
    reason: str,
) -> None:
    with pd.running(dev_cluster, kubectl, namespace, tmp_path, prefill=1, decode=1):
        op.apply(kubectl, namespace, pd.service(**spec))
        wait_until(
            lambda: op.condition(kubectl, namespace, SERVICE, "Ready") == ("False", reason),
            what=f"Ready False {reason}",
        )
        assert op.condition(kubectl, namespace, SERVICE, "ScalingActive") == ("False", reason)
        assert op.spec_replicas(kubectl, namespace, PREFILL) == 1


def test_deleting_the_service_restores_converted_pods(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    with pd.running(dev_cluster, kubectl, namespace, tmp_path, prefill=1, decode=2) as (fleet, _operator):
        op.apply(kubectl, namespace, pd.service(decode={"scaleTargetRef": {"name": DECODE}, "minReplicas": 2}))
        op.wait_ready(kubectl, namespace, SERVICE)
        fleet.set_load(PREFILL, BURST)
        converted = wait_until(lambda: op.converted_pods(kubectl, namespace, DECODE), what="a conversion")
        started = time.monotonic()
        kubectl.run("delete", "dis", SERVICE, f"--namespace={namespace}", "--wait=true", "--timeout=30s")
        assert time.monotonic() - started < 30
        assert op.converted_pods(kubectl, namespace, DECODE) == []
        for name in converted:
            pod = op.get(kubectl, namespace, "pod", name)
            assert pod["metadata"]["labels"]["tokenscale.io/role"] == "decode"
            assert "tokenscale.io/converted-at" not in pod["metadata"].get("annotations", {})
