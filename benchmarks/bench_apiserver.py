"""API server requests per service per tick of the operator at steady state, counted by the API server itself.

A fresh local control plane; ``BENCH_APISERVER_SERVICES`` services (default 20) in one namespace, each over a
prefill and a decode Deployment of one KWOK pod, every pod's /metrics served by a fake vLLM engine on its
127.x IP with a steady load; replicas pinned (min = max) so that no tick writes /scale. The operator
(``python -m tokenscale run``, from ``BENCH_OPERATOR_SOURCE``, default this tree's ``operator/``, so that an
older tree can be measured the same way) runs until every service has ticked, then
``apiserver_request_total`` is read (``kubectl get --raw /metrics``) before and after
``BENCH_APISERVER_SECONDS`` (default 30) and divided by the service-ticks run meanwhile (the operator's own
``tokenscale_reconcile_duration_seconds_count``). Rows of the resources the operator touches; the control
plane's own traffic (leases, node status) is left out.

    BENCH_APISERVER_SERVICES=50 .venv/bin/python -m benchmarks apiserver
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.integration import apiserver_metrics
from tests.integration import operator_process as op
from tests.integration.fake_engine import EngineLoad, FakeEngineFleet
from tests.integration.waiting import wait_until

from tokenscale.api import v1alpha1
from tokenscale.devcluster import binaries, cluster, nodes

ROOT = Path(__file__).resolve().parents[1]
SERVICES = int(os.environ.get("BENCH_APISERVER_SERVICES", "20"))
SECONDS = float(os.environ.get("BENCH_APISERVER_SECONDS", "30"))
SOURCE = Path(os.environ.get("BENCH_OPERATOR_SOURCE", str(ROOT / "operator")))
NAMESPACE = "bench"
OPERATOR_RESOURCES = {
    "pods",
    "deployments",
    "horizontalpodautoscalers",
    "scaledobjects",
    v1alpha1.PLURAL,
    "events",
}
_ENGINE_PORT = 8000
_LOAD = {
    "prefill": EngineLoad(prompt_tokens_per_second=2_000.0, requests_per_second=2.0),
    "decode": EngineLoad(generation_tokens_per_second=500.0, requests_per_second=2.0, requests_running=4),
}


def _operator(kubeconfig: Path, log: Path, metrics_port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}}
    env["PYTHONPATH"] = str(SOURCE)
    # No liveness listener (its fixed default port could be taken); by environment, which an older tree ignores.
    env["TOKENSCALE_HEALTH_PORT"] = "0"
    args = [
        sys.executable,
        "-m",
        "tokenscale",
        "run",
        f"--kubeconfig={kubeconfig}",
        f"--namespace={NAMESPACE}",
        "--allowed-cidr=127.0.0.0/8",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        "--log-level=WARNING",
    ]
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def main() -> None:
    found = binaries.locate_binaries()
    gpu_nodes = math.ceil(2 * SERVICES / 8) + 1
    with tempfile.TemporaryDirectory(prefix="bench-apiserver-") as home:
        dev = cluster.start_cluster(
            home=Path(home), fake_nodes=nodes.fake_gpu_nodes(gpu_nodes), binaries=found, die_with_parent=True
        )
        operator: subprocess.Popen[bytes] | None = None
        fleet: FakeEngineFleet | None = None
        try:
            kubectl = dev.kubectl
            kubectl.run("apply", "--server-side", "-f", str(ROOT / "crds" / f"{v1alpha1.GROUP}_{v1alpha1.PLURAL}.yaml"))
            kubectl.run("wait", "--for=condition=Established", f"crd/{v1alpha1.PLURAL}.{v1alpha1.GROUP}")
            kubectl.run("create", "namespace", NAMESPACE)
            wait_until(
                lambda: kubectl.run("get", "serviceaccount", "default", "-n", NAMESPACE, check=False).returncode == 0,
                what="the default ServiceAccount",
            )
            documents = []
            for index in range(SERVICES):
                prefill, decode = f"s{index}-prefill", f"s{index}-decode"
                documents += [
                    op.deployment(prefill, replicas=1, role="prefill"),
                    op.deployment(decode, replicas=1, role="decode"),
                ]
            kubectl.apply_objects(documents, namespace=NAMESPACE)
            wait_until(
                lambda: (
                    sum(1 for p in kubectl.get_json("pods", "-n", NAMESPACE)["items"] if p["status"].get("podIP"))
                    == 2 * SERVICES
                ),
                what="every pod with an IP",
                timeout_seconds=180,
            )
            # One pod sync only: the fleet's periodic list would be counted as the operator's.
            fleet = FakeEngineFleet(kubeconfig=dev.kubeconfig, namespace=NAMESPACE, port=_ENGINE_PORT, poll_seconds=1e6)
            for index in range(SERVICES):
                for role, load in _LOAD.items():
                    fleet.set_load(f"s{index}-{role}", load)
            fleet.start()
            wait_until(lambda: len(fleet.serving()) == 2 * SERVICES, what="every engine served")
            services = [
                op.service(
                    f"s{index}",
                    prefill_target=f"s{index}-prefill",
                    decode_target=f"s{index}-decode",
                    prefill={"scaleTargetRef": {"name": f"s{index}-prefill"}, "minReplicas": 1, "maxReplicas": 1},
                    decode={"scaleTargetRef": {"name": f"s{index}-decode"}, "minReplicas": 1, "maxReplicas": 1},
                )
                for index in range(SERVICES)
            ]
            kubectl.apply_objects(services, namespace=NAMESPACE)
            metrics_port = op.free_port()
            operator = _operator(dev.kubeconfig, Path(home) / "operator.log", metrics_port)
            wait_until(
                lambda: op.operator_ticks(metrics_port) >= 5 * SERVICES,
                what="every service ticking",
                timeout_seconds=120,
            )
            time.sleep(5.0)
            before, ticks_before = apiserver_metrics.request_counts(kubectl), op.operator_ticks(metrics_port)
            started = time.monotonic()
            time.sleep(SECONDS)
            after, ticks_after = apiserver_metrics.request_counts(kubectl), op.operator_ticks(metrics_port)
            elapsed = time.monotonic() - started
        finally:
            if operator is not None:
                operator.terminate()
                operator.wait(timeout=30)
            if fleet is not None:
                fleet.stop()
            dev.stop()
    ticks = ticks_after - ticks_before
    rows = {k: v for k, v in apiserver_metrics.difference(before, after).items() if k[1] in OPERATOR_RESOURCES}
    print(f"operator source: {SOURCE}")
    print(
        f"{SERVICES} services, {elapsed:.0f} s: {ticks:.0f} service-ticks "
        f"({ticks / elapsed / SERVICES:.2f} ticks per service per second)"
    )
    print(f"{'verb':<7} {'resource':<34} {'requests':>9} {'per service-tick':>17} {'per second':>11}")
    for (verb, resource, subresource), count in sorted(rows.items(), key=lambda item: -item[1]):
        name = f"{resource}/{subresource}" if subresource else resource
        print(f"{verb:<7} {name:<34} {count:9.0f} {count / ticks:17.3f} {count / elapsed:11.1f}")
    total = sum(rows.values())
    print(f"{'all':<7} {'':<34} {total:9.0f} {total / ticks:17.3f} {total / elapsed:11.1f}")


if __name__ == "__main__":
    main()
