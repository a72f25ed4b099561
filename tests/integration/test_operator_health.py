"""The operator's liveness endpoint on a real stall: a decode engine that takes the scrape's connection and never
answers hangs the service's tick (the scrape timeout is longer than the stall limit), and /healthz answers 500,
the operator's log naming the service, until the engine answers and ticks complete again."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration import operator_process as op
from tests.integration import pd_pair as pd
from tests.integration.pd_pair import DECODE, SERVICE
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

STALL_SECONDS = 5
"""``--health-stall-seconds``: with 1 s ticks (`op.service`) a service stalls after max(5, 3 x 1) = 5 s."""
SCRAPE_TIMEOUT_SECONDS = 300
"""``--scrape-timeout-seconds``, far beyond the test's hang: the held scrape hangs the tick, it never times out."""
HEALTHY = (200, {"ticking": {"services": 1}})
STALLED = (500, None)
"""kopf's 500 carries aiohttp's generic body; the stalled service is named in kopf's log line for the probe."""


def _stall_logged(operator: op.OperatorProcess, service: str) -> bool:
    return f"{service}: no tick completed for" in operator.log_path.read_text(errors="replace")


def test_a_hung_scrape_fails_healthz_until_ticks_complete_again(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    service = f"{namespace}/{SERVICE}"
    with pd.running(
        dev_cluster,
        kubectl,
        namespace,
        tmp_path,
        prefill=1,
        decode=1,
        extra_args=(
            "--health-stall-seconds",
            str(STALL_SECONDS),
            "--scrape-timeout-seconds",
            str(SCRAPE_TIMEOUT_SECONDS),
        ),
    ) as (fleet, operator):
        op.apply(kubectl, namespace, pd.service())
        op.wait_ready(kubectl, namespace, SERVICE)
        assert wait_until(operator.health, what="the liveness endpoint") == HEALTHY

        fleet.update_load(DECODE, stalled=True)
        ticks_at_stall = operator.ticks()
        # Within the stall limit plus kopf's 10 s cache of the last healthy answer.
        wait_until(lambda: operator.health() == STALLED, what="/healthz failing", timeout_seconds=30)
        # Ticks stopped (the one under way when the engine hung may have finished its scrape already): without
        # the stall, ticks every second would have gone on.
        assert operator.ticks() <= ticks_at_stall + 1
        wait_until(lambda: _stall_logged(operator, service), what=f"the log naming {service}", timeout_seconds=5)
        assert operator.health() == STALLED  # a failing answer is not cached: each probe asks again

        fleet.update_load(DECODE, stalled=False)  # the held scrape is answered, and the tick completes
        wait_until(lambda: operator.health() == HEALTHY, what="/healthz passing again", timeout_seconds=15)
        assert operator.ticks() > ticks_at_stall + 1
