"""The operator with ``spec.metrics.source: prometheus``: its observations come from a real Prometheus that
scrapes the fake engines (every pod on its 127.1.x.y IP, the pod's namespace and name attached as a
PodMonitor would), and it scales and converts from them.

``spec.metrics.port`` names a port no engine listens on: a direct scrape would find every pod unknown, so
the load the operator reports and acts on can only have come through Prometheus.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration import operator_process as op
from tests.integration import pd_pair as pd
from tests.integration.fake_engine import EngineLoad, fake_engines
from tests.integration.pd_pair import DECODE, IDLE_DECODE, IDLE_PREFILL, PREFILL, SERVICE
from tests.integration.prometheus import EngineTargets, running_prometheus
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

ENGINE_PORT = 8000
UNUSED_PORT = 9
"""The discard port: nothing listens there on 127.0.0.0/8."""
# About 70k prompt tokens/s arriving: over twice what one llama-3.1-8b-h100 prefiller sustains (V_P ~31k/s).
BURST = EngineLoad(
    prompt_tokens_per_second=30_000.0, requests_per_second=30.0, waiting_growth_per_second=40.0, requests_waiting=5
)


def _prometheus_config(engine_targets: Path) -> dict[str, object]:
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [
            {
                "job_name": "vllm",
                "file_sd_configs": [{"files": [str(engine_targets)], "refresh_interval": "1s"}],
            }
        ],
    }


def test_operator_scales_and_converts_from_prometheus_observations(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    pd.apply_pair(kubectl, namespace, prefill=1, decode=3)
    with fake_engines(
        kubeconfig=dev_cluster.kubeconfig,
        namespace=namespace,
        port=ENGINE_PORT,
        loads=[(PREFILL, IDLE_PREFILL), (DECODE, IDLE_DECODE)],
    ) as fleet:
        targets = EngineTargets(fleet=fleet, namespace=namespace, port=ENGINE_PORT, path=tmp_path / "engines.json")
        try:
            with (
                running_prometheus(config=_prometheus_config(targets.path), workdir=tmp_path / "prometheus") as prom,
                op.running_operator(
                    kubeconfig=dev_cluster.kubeconfig, namespace=namespace, log_path=tmp_path / "op.log"
                ) as operator,
            ):
                wait_until(lambda: prom.healthy_targets("vllm") == 4, what="Prometheus scraping the 4 engines")
                op.apply(
                    kubectl,
                    namespace,
                    pd.service(
                        decode={"scaleTargetRef": {"name": DECODE}, "minReplicas": 3, "maxReplicas": 8},
                        metrics={
                            "source": "prometheus",
                            "prometheusURL": prom.url,
                            "port": UNUSED_PORT,
                            "scrapeIntervalSeconds": 1,
                            "windowSeconds": 4,
                        },
                    ),
                )
                op.wait_ready(kubectl, namespace, SERVICE)

                def arriving() -> float:
                    velocities = op.status_of(kubectl, namespace, SERVICE)["velocities"]
                    return float(velocities["arrivingPromptTokensPerSecond"])

                # The first rates may span a single Prometheus scrape (0); the status' live numbers are
                # refreshed within 10 s.
                wait_until(lambda: 0 < arriving() < 1_000, what="the idle arrival rate in status", timeout_seconds=30)
                assert op.spec_replicas(kubectl, namespace, PREFILL) == 1
                assert operator.metric("tokenscale_scrape_errors_total") is None  # no pod was ever unknown

                fleet.set_load(PREFILL, BURST)
                converted = wait_until(
                    lambda: op.converted_pods(kubectl, namespace, DECODE),
                    what="a decoder converted",
                    timeout_seconds=20,
                )
                wait_until(
                    lambda: op.spec_replicas(kubectl, namespace, PREFILL) >= 3,
                    what="prefill raised to 3",
                    timeout_seconds=20,
                )
                status = op.status_of(kubectl, namespace, SERVICE)
                assert converted[0] in status["convertedPods"]
                assert status["prefill"]["desiredReplicas"] >= 3
                # The first decisions see the queue jump; the processed-token counters reach the rate window a
                # Prometheus scrape later, and the status' live numbers follow within its refresh (10 s).
                wait_until(lambda: arriving() > 30_000, what="the burst's arrival rate in status", timeout_seconds=30)
        finally:
            targets.stop()
