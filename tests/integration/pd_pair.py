"""The prefill/decode pair the operator tests run on: two Deployments of KWOK pods (one GPU each), fake engines on
the pods' IPs, the operator process, and the service over the pair."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration import operator_process as op
from tests.integration.fake_engine import EngineLoad, FakeEngineFleet, fake_engines
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl

PREFILL, DECODE, SERVICE = "llama-prefill", "llama-decode", "llama"
IDLE_PREFILL = EngineLoad(prompt_tokens_per_second=100.0, requests_per_second=0.1)
IDLE_DECODE = EngineLoad(generation_tokens_per_second=50.0, requests_per_second=0.1, requests_running=3)


def apply_pair(
    kubectl: Kubectl, namespace: str, *, prefill: int, decode: int, decode_selector_has_role: bool = False
) -> None:
    """Both Deployments applied, and waited for until all their pods are Ready."""
    op.apply(
        kubectl,
        namespace,
        op.deployment(PREFILL, replicas=prefill, role="prefill"),
        op.deployment(DECODE, replicas=decode, role="decode", selector_has_role=decode_selector_has_role),
    )
    wait_until(
        lambda: (
            op.ready_pods(kubectl, namespace, PREFILL) == prefill
            and op.ready_pods(kubectl, namespace, DECODE) == decode
        ),
        what=f"{prefill} prefill and {decode} decode pods Ready",
    )


def service(**spec: Any) -> dict[str, Any]:
    """The service over the pair, with ``spec`` merged in (`op.service`)."""
    return op.service(SERVICE, prefill_target=PREFILL, decode_target=DECODE, **spec)


@contextlib.contextmanager
def running(
    dev_cluster: cluster.DevCluster,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    *,
    prefill: int,
    decode: int,
    prefill_load: EngineLoad = IDLE_PREFILL,
    decode_selector_has_role: bool = False,
    **operator_args: Any,
) -> Iterator[tuple[FakeEngineFleet, op.OperatorProcess]]:
    """Both Deployments with Ready pods, fake engines on their IPs, and the operator running (``operator_args`` go
    to `op.running_operator`); the service is the test's to apply."""
    apply_pair(kubectl, namespace, prefill=prefill, decode=decode, decode_selector_has_role=decode_selector_has_role)
    with (
        fake_engines(
            kubeconfig=dev_cluster.kubeconfig,
            namespace=namespace,
            port=8000,
            loads=[(PREFILL, prefill_load), (DECODE, IDLE_DECODE)],
        ) as fleet,
        op.running_operator(
            kubeconfig=dev_cluster.kubeconfig, namespace=namespace, log_path=tmp_path / "op.log", **operator_args
        ) as operator,
    ):
        yield fleet, operator
