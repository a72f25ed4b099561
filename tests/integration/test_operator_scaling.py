"""The operator end to end on the local control plane: a burst of prompt tokens converts decoders at once and
raises prefill; when the load falls the conversions are restored and prefill scales in after the
stabilisation window. Every pod's /metrics is a fake vLLM engine on its own 127.1.x.y IP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.integration import operator_process as op
from tests.integration import pd_pair as pd
from tests.integration.fake_engine import EngineLoad
from tests.integration.pd_pair import DECODE, IDLE_PREFILL, PREFILL, SERVICE
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

# 30k prompt tokens/s processed and the queue growing by 40 requests/s of 1000 tokens: about 70k tokens/s
# arriving, over twice what one llama-3.1-8b-h100 prefiller sustains (V_P about 31k tokens/s).
BURST = EngineLoad(
    prompt_tokens_per_second=30_000.0, requests_per_second=30.0, waiting_growth_per_second=40.0, requests_waiting=5
)
STABILIZATION_SECONDS = 6
RESTORE_STABILIZATION_SECONDS = 4


def test_burst_converts_decoders_raises_prefill_then_both_unwind(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    with pd.running(dev_cluster, kubectl, namespace, tmp_path, prefill=1, decode=3) as (fleet, operator):
        op.apply(
            kubectl,
            namespace,
            pd.service(
                decode={"scaleTargetRef": {"name": DECODE}, "minReplicas": 3, "maxReplicas": 8},
                behavior={"scaleInStabilizationSeconds": STABILIZATION_SECONDS},
                policy={
                    "tokenscale": {
                        "demandWindowSeconds": 0,
                        "restoreStabilizationSeconds": RESTORE_STABILIZATION_SECONDS,
                    }
                },
            ),
        )
        op.wait_ready(kubectl, namespace, SERVICE)
        assert op.spec_replicas(kubectl, namespace, PREFILL) == 1
        assert op.converted_pods(kubectl, namespace, DECODE) == []

        burst_at = time.monotonic()
        fleet.set_load(PREFILL, BURST)
        converted = wait_until(
            lambda: op.converted_pods(kubectl, namespace, DECODE), what="a converted decoder", timeout_seconds=15
        )
        converted_after = time.monotonic() - burst_at
        # The first tick after the onset sees a fraction of a second of burst; the next sees a full one.
        assert converted_after < 3.0, f"conversion took {converted_after:.1f} s"
        wait_until(lambda: op.spec_replicas(kubectl, namespace, PREFILL) >= 3, what="prefill raised to 3")
        pod = op.get(kubectl, namespace, "pod", converted[0])
        assert "tokenscale.io/converted-at" in pod["metadata"]["annotations"]
        assert pod["metadata"]["annotations"]["controller.kubernetes.io/pod-deletion-cost"] == "1000"
        status = op.status_of(kubectl, namespace, SERVICE)
        assert status["prefill"]["desiredReplicas"] >= 3
        # The window rate (status) trails the recent rate and the backlog the policy sizes with, so prefill can be
        # raised a tick before the status shows the burst; it then reads far above idle (100/s).
        wait_until(
            lambda: op.status_of(kubectl, namespace, SERVICE)["velocities"]["arrivingPromptTokensPerSecond"] > 10_000,
            what="the burst's arrival rate in status",
            timeout_seconds=10,
        )
        assert any(d["action"] == "convert" for d in status["lastDecisions"])
        wait_until(
            lambda: {"Convert", "Scale"} <= set(op.event_reasons(kubectl, namespace, SERVICE)),
            what="Convert and Scale events",
        )
        assert (operator.metric("tokenscale_decisions_total", role="decode", action="convert") or 0) >= 1

        calm_at = time.monotonic()
        fleet.set_load(PREFILL, IDLE_PREFILL)
        wait_until(
            lambda: op.converted_pods(kubectl, namespace, DECODE) == [], what="conversions restored", timeout_seconds=20
        )
        restored_after = time.monotonic() - calm_at
        # The burst pressed until the calm (a tick of slack): the restore waits the stabilisation from there.
        assert restored_after >= RESTORE_STABILIZATION_SECONDS - 1, f"restored after {restored_after:.1f} s"
        restored = op.get(kubectl, namespace, "pod", converted[0])
        assert restored["metadata"]["labels"]["tokenscale.io/role"] == "decode"
        assert "tokenscale.io/converted-at" not in restored["metadata"].get("annotations", {})
        wait_until(
            lambda: op.spec_replicas(kubectl, namespace, PREFILL) == 1,
            what="prefill scaled in to 1",
            timeout_seconds=STABILIZATION_SECONDS + 20,
        )
        scaled_in_after = time.monotonic() - calm_at
        # Scale-in waits for the stabilisation window (the highest recommendation in it was the burst's).
        assert scaled_in_after >= STABILIZATION_SECONDS - 1, f"scaled in after {scaled_in_after:.1f} s"
        assert op.spec_replicas(kubectl, namespace, DECODE) == 3
        assert op.status_of(kubectl, namespace, SERVICE)["convertedPods"] == []
