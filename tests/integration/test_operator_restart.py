"""The operator killed during a conversion: a new process reads the conversion back from the pods (label and
annotation), keeps it while it is young, and restores it once it is older than maxConversionSeconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.integration import operator_process as op
from tests.integration import pd_pair as pd
from tests.integration.fake_engine import EngineLoad, fake_engines
from tests.integration.pd_pair import DECODE, IDLE_DECODE, PREFILL, SERVICE
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl
from tokenscale.kube import pods as kube_pods

pytestmark = pytest.mark.integration

# Far beyond what the prefill bound (max 1) can absorb: the conversion stays wanted for the whole test.
BURST = EngineLoad(
    prompt_tokens_per_second=30_000.0, requests_per_second=30.0, waiting_growth_per_second=40.0, requests_waiting=5
)
MAX_CONVERSION_SECONDS = 12


def test_restarted_operator_recovers_conversions_and_restores_expired_ones(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    pd.apply_pair(kubectl, namespace, prefill=1, decode=2)
    spec = pd.service(
        prefill={"scaleTargetRef": {"name": PREFILL}, "minReplicas": 1, "maxReplicas": 1},
        decode={"scaleTargetRef": {"name": DECODE}, "minReplicas": 2, "maxReplicas": 2},
        policy={"tokenscale": {"convertibleDecodersMax": 1, "maxConversionSeconds": MAX_CONVERSION_SECONDS}},
    )
    with fake_engines(
        kubeconfig=dev_cluster.kubeconfig, namespace=namespace, port=8000, loads=[(DECODE, IDLE_DECODE)]
    ) as fleet:
        fleet.set_load(PREFILL, BURST)
        first = op.OperatorProcess(kubeconfig=dev_cluster.kubeconfig, namespace=namespace, log_path=tmp_path / "1.log")
        try:
            op.apply(kubectl, namespace, spec)
            (converted,) = wait_until(lambda: op.converted_pods(kubectl, namespace, DECODE), what="a conversion")
        finally:
            first.kill()  # mid-conversion, without a chance to clean up
        annotations = op.get(kubectl, namespace, "pod", converted)["metadata"]["annotations"]
        converted_at = kube_pods.parse_time(annotations[kube_pods.CONVERTED_AT_ANNOTATION])
        assert converted_at is not None

        with op.running_operator(
            kubeconfig=dev_cluster.kubeconfig, namespace=namespace, log_path=tmp_path / "2.log"
        ) as second:
            wait_until(lambda: second.ticks() >= 2, what="the new operator ticking")
            # Recovered from the pod: reported, kept (no second decoder converted, the cap is 1), not restored.
            assert op.status_of(kubectl, namespace, SERVICE)["convertedPods"] == [converted]
            assert op.converted_pods(kubectl, namespace, DECODE) == [converted]
            # Past the maximum conversion time, it is restored.
            wait_until(
                lambda: converted not in op.converted_pods(kubectl, namespace, DECODE),
                what="the expired conversion restored",
                timeout_seconds=MAX_CONVERSION_SECONDS + 15,
            )
            assert time.time() - converted_at >= MAX_CONVERSION_SECONDS - 1
            pod = op.get(kubectl, namespace, "pod", converted)
            assert pod["metadata"]["labels"]["tokenscale.io/role"] == "decode"
            assert kube_pods.CONVERTED_AT_ANNOTATION not in pod["metadata"].get("annotations", {})
