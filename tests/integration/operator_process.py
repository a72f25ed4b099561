"""The operator under test, as a subprocess (`python -m tokenscale run`), plus helpers that read the cluster.

The operator dials only the test cluster's apiserver (127.0.0.1) and pod IPs in 127.0.0.0/8
(``--allowed-cidr 127.0.0.0/8``); its own /metrics listens on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from tests.integration.waiting import wait_until

from tokenscale.api import v1alpha1
from tokenscale.devcluster.kubectl import Kubectl

ROOT = Path(__file__).resolve().parents[2]
ROLE_KEY = "tokenscale.io/role"
PEERING_CRDS = ROOT / "crds" / "kopf.dev_peerings.yaml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def operator_ticks(metrics_port: int) -> float:
    """Ticks the operator serving its metrics on ``metrics_port`` has run, over all services (the reconcile
    histogram's count); 0 before its listener is up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tokenscale_reconcile_duration_seconds_count"
    )


def read_health(url: str) -> tuple[int, Any] | None:
    """GET a kopf liveness endpoint: its HTTP status and JSON body (None for a 500's body); None if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), json.load(response)
    except urllib.error.HTTPError as error:
        return int(error.code), None
    except OSError:
        return None


class OperatorProcess:
    """One `tokenscale run` process; its log is kept in ``log_path`` and shown when a test fails."""

    def __init__(
        self,
        *,
        kubeconfig: Path,
        namespace: str,
        log_path: Path,
        peering: str | None = None,
        priority: int = 0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log_path = log_path
        args = [
            sys.executable,
            "-m",
            "tokenscale",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            namespace,
            "--allowed-cidr",
            "127.0.0.0/8",
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--health-port",
            str(self.health_port),
            "--log-format",
            "json",
            "--event-repeat-seconds",
            "30",
            *(("--peering", peering, "--priority", str(priority)) if peering else ()),
            *extra_args,
        ]
        env = {k: v for k, v in os.environ.items() if k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), env.get("PYTHONPATH", "")])
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def metric(self, metric_name: str, /, **labels: str) -> float | None:
        """The value of one series of the operator's /metrics, None if absent or unreachable."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == metric_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def health(self) -> tuple[int, Any] | None:
        """The liveness endpoint's HTTP status and JSON body; None while it does not answer."""
        return read_health(f"http://127.0.0.1:{self.health_port}/healthz")

    def ticks(self) -> float:
        """Ticks this process has run, over all services (0 before the first)."""
        return operator_ticks(self.metrics_port)

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops a pod; kopf exits cleanly (and leaves the peering)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL: the process dies mid-tick, as on a node failure or an OOM kill."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running_operator(*, kubeconfig: Path, namespace: str, log_path: Path, **kwargs: Any) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(kubeconfig=kubeconfig, namespace=namespace, log_path=log_path, **kwargs)
    try:
        yield operator
    except BaseException:
        sys.stderr.write(f"--- operator log tail ({log_path}) ---\n{operator.log_tail()}\n")
        raise
    finally:
        operator.stop()


# -- the cluster, read through kubectl -----------------------------------------------------------------------


def deployment(name: str, *, replicas: int, role: str, selector_has_role: bool = False) -> dict[str, Any]:
    """A Deployment of engine pods (1 GPU each) with the role label on its pods, and in its selector only if asked."""
    selector = {"app": name, **({ROLE_KEY: role} if selector_has_role else {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {"app": name, ROLE_KEY: role}},
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }


def service(name: str, *, prefill_target: str, decode_target: str, **spec: Any) -> dict[str, Any]:
    """A DisaggregatedInferenceService over the two Deployments, with ``spec`` merged in."""
    body: dict[str, Any] = {
        "prefill": {"scaleTargetRef": {"name": prefill_target}, "minReplicas": 1, "maxReplicas": 8},
        "decode": {"scaleTargetRef": {"name": decode_target}, "minReplicas": 1, "maxReplicas": 8},
        "metrics": {"scrapeIntervalSeconds": 1, "windowSeconds": 4},
    }
    body.update(spec)
    # KWOK pods serve the moment they are Ready and the tests steer the load themselves: no cold start to hold
    # scale-in for, and the demand quantile looks at the current demand (a test may still set either).
    body.setdefault("profile", {"name": "llama-3.1-8b-h100", "coldStartSeconds": 0})
    body.setdefault("policy", {}).setdefault("tokenscale", {}).setdefault("demandWindowSeconds", 0)
    return {"apiVersion": v1alpha1.API_VERSION, "kind": v1alpha1.KIND, "metadata": {"name": name}, "spec": body}


def apply(kubectl: Kubectl, namespace: str, *documents: dict[str, Any]) -> None:
    """``kubectl apply`` each document into ``namespace``."""
    for document in documents:
        kubectl.run("apply", f"--namespace={namespace}", "-f", "-", input_text=json.dumps(document))


def get(kubectl: Kubectl, namespace: str, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl.get_json(kind, name, f"--namespace={namespace}")
    return found


def status_of(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get(kubectl, namespace, v1alpha1.PLURAL, name).get("status") or {}
    return found


def condition(kubectl: Kubectl, namespace: str, name: str, kind: str) -> tuple[str, str] | None:
    for found in status_of(kubectl, namespace, name).get("conditions") or ():
        if found["type"] == kind:
            return found["status"], found["reason"]
    return None


def pods(kubectl: Kubectl, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.get_json("pods", f"--namespace={namespace}", f"--selector=app={app}")["items"]
    return [pod for pod in items if "deletionTimestamp" not in pod["metadata"]]


def converted_pods(kubectl: Kubectl, namespace: str, app: str) -> list[str]:
    return sorted(
        pod["metadata"]["name"]
        for pod in pods(kubectl, namespace, app)
        if pod["metadata"].get("labels", {}).get(ROLE_KEY) == "converted"
    )


def spec_replicas(kubectl: Kubectl, namespace: str, name: str) -> int:
    return int(get(kubectl, namespace, "deployment", name)["spec"]["replicas"])


def ready_pods(kubectl: Kubectl, namespace: str, app: str) -> int:
    return sum(
        1
        for pod in pods(kubectl, namespace, app)
        if any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    )


def event_reasons(kubectl: Kubectl, namespace: str, name: str) -> list[str]:
    items = kubectl.get_json("events", f"--namespace={namespace}", f"--field-selector=involvedObject.name={name}")[
        "items"
    ]
    return [item["reason"] for item in items]


def wait_ready(kubectl: Kubectl, namespace: str, name: str, *, timeout_seconds: float = 60.0) -> None:
    """Wait until the service is Ready and its metrics are available (the operator ticks and sees load)."""
    wait_until(
        lambda: (
            condition(kubectl, namespace, name, "Ready") == ("True", "Reconciling")
            and condition(kubectl, namespace, name, "MetricsAvailable") == ("True", "MetricsAvailable")
        ),
        what=f"{name} Ready with metrics",
        timeout_seconds=timeout_seconds,
    )


def sleep_seconds(seconds: float) -> None:
    """Let the operator run ``seconds`` of ticks (used where the test asserts that nothing happens)."""
    time.sleep(seconds)
