"""Two operator processes in one kopf peering never both actuate: the one of higher priority ticks, the other
pauses (its daemons stopped), and takes over when the first leaves."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration import operator_process as op
from tests.integration.fake_engine import EngineLoad, fake_engines
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

PREFILL, DECODE, SERVICE = "llama-prefill", "llama-decode", "llama"
IDLE = EngineLoad(prompt_tokens_per_second=100.0, generation_tokens_per_second=50.0, requests_per_second=0.1)
PEERING = "tokenscale-test"


def _ticking(operator: op.OperatorProcess, *, seconds: float) -> bool:
    """Whether ``operator`` ran a tick within ``seconds``."""
    before = operator.ticks()
    op.sleep_seconds(seconds)
    return operator.ticks() > before


def test_only_the_highest_priority_replica_acts(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    kubectl.run("apply", "--server-side", "-f", str(op.PEERING_CRDS))
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s", "crd/kopfpeerings.kopf.dev")
    op.apply(
        kubectl,
        namespace,
        op.deployment(PREFILL, replicas=1, role="prefill"),
        op.deployment(DECODE, replicas=1, role="decode"),
        op.service(SERVICE, prefill_target=PREFILL, decode_target=DECODE),
    )
    peering = {"kubeconfig": dev_cluster.kubeconfig, "namespace": namespace, "peering": PEERING}
    with (
        fake_engines(
            kubeconfig=dev_cluster.kubeconfig, namespace=namespace, port=8000, loads=[(PREFILL, IDLE), (DECODE, IDLE)]
        ),
        op.running_operator(log_path=tmp_path / "low.log", priority=10, **peering) as low,
    ):
        wait_until(lambda: low.ticks() >= 2, what="the only replica ticking")
        with op.running_operator(log_path=tmp_path / "high.log", priority=20, **peering) as high:
            wait_until(lambda: high.ticks() >= 2, what="the higher-priority replica ticking")
            # From now on only one replica acts, tick after tick.
            low_before, high_before = low.ticks(), high.ticks()
            op.sleep_seconds(5)
            assert low.ticks() == low_before
            assert high.ticks() >= high_before + 3
            # Both are healthy (so both are Ready in a Deployment): the acting one ticks its service, the
            # standby manages none (kopf caches a healthy answer for 10 s, hence the wait).
            assert high.health() == (200, {"ticking": {"services": 1}})
            wait_until(
                lambda: low.health() == (200, {"ticking": {"services": 0}}),
                what="the standby healthy with no service",
                timeout_seconds=15,
            )
        # The higher one left the peering on a clean exit: the other resumes.
        wait_until(lambda: _ticking(low, seconds=1.5), what="the remaining replica resuming", timeout_seconds=30)
        op.wait_ready(kubectl, namespace, SERVICE)
