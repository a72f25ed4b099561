"""The operator as the chart deploys it, end to end on the local control plane, watched by a real Prometheus.

The chart is installed with two replicas (peering) watching one namespace; the vLLM prefill/decode example
(deploy/examples/vllm-pd) runs there as KWOK pods whose /metrics are fake vLLM engines on their 127.1.x.y IPs.
The operator runs as a local process with the installed Deployment's own command, arguments and environment,
authenticated as the chart's ServiceAccount (a token from the TokenRequest API), so the chart's RBAC is what
it gets. A Prometheus on 127.0.0.1 scrapes the operator and the engine pods (file-based discovery of the pods
the fake fleet serves, with their namespace attached as a PodMonitor would); it evaluates the chart's alert
rules, rendered with short windows.

Shown here: the operator reconciles and scales with exactly the chart's permissions, is refused everything
else (Secrets first), every dashboard query returns data, and each alert fires on the condition it watches.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration import operator_process as op
from tests.integration.fake_engine import MODEL_NAME, EngineLoad, FakeEngineFleet, fake_engines
from tests.integration.helm import ROOT, Helm, find
from tests.integration.prometheus import EngineTargets, Prometheus, running_prometheus
from tests.integration.waiting import wait_until

from tokenscale.controller import dashboards
from tokenscale.devcluster import cluster, kubeconfig, pki
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

EXAMPLE = ROOT / "deploy" / "examples" / "vllm-pd"
PREFILL, DECODE, SERVICE = "llama-prefill", "llama-decode", "llama"
ENGINE_PORT = 8000
RELEASE = "tse2e"
FULLNAME = f"{RELEASE}-tokenscale"
IDLE_PREFILL = EngineLoad(prompt_tokens_per_second=100.0, requests_per_second=0.5)
IDLE_DECODE = EngineLoad(generation_tokens_per_second=50.0, requests_per_second=0.5, requests_running=3)
# About 70k prompt tokens/s arriving: over twice what one llama-3.1-8b-h100 prefiller sustains (V_P ~31k/s).
BURST = EngineLoad(
    prompt_tokens_per_second=30_000.0, requests_per_second=30.0, waiting_growth_per_second=40.0, requests_waiting=5
)
# About 200k prompt tokens/s: more prefillers than BURST needs.
BIG_BURST = EngineLoad(
    prompt_tokens_per_second=60_000.0, requests_per_second=60.0, waiting_growth_per_second=140.0, requests_waiting=20
)
RATE_INTERVAL = "20s"
# The chart's alerts with windows and pending times a test can wait for. The TTFT objective (40 ms) is below
# the fake engines' 100 ms, so the TTFT budget burns; their 20 ms ITL meets the 100 ms ITL objective.
RULE_VALUES: dict[str, Any] = {
    "prometheusRule": {
        "enabled": True,
        "for": {"metricsUnavailable": "3s", "scalingConflict": "5s"},
        "slo": {
            "ttftObjectiveSeconds": "0.04",
            "itlObjectiveSeconds": "0.1",
            "longWindow": "30s",
            "shortWindow": "10s",
        },
    }
}


class ChartOperator:
    """The installed Deployment's container, run here: its command and arguments, its environment (fieldRefs
    resolved for the pod ``pod_name``), plus a kubeconfig and a loopback metrics listener."""

    def __init__(self, *, container: dict[str, Any], pod_name: str, kubeconfig_path: Path, log_path: Path) -> None:
        self.container = container
        self.metrics_port = op.free_port()
        self.health_port = op.free_port()
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        for variable in container.get("env", ()):
            field = (variable.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
            env[variable["name"]] = pod_name if field == "metadata.name" else variable["value"]
        argv = [
            *container["command"],
            *container["args"],
            f"--kubeconfig={kubeconfig_path}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            f"--health-port={self.health_port}",
            "--allowed-cidr=127.0.0.0/8",
        ]
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@dataclass
class Stack:
    kubectl: Kubectl
    account: Kubectl
    """kubectl as the chart's ServiceAccount."""
    namespace: str
    """Where the example runs and the operator watches."""
    release_namespace: str
    fleet: FakeEngineFleet
    operator: ChartOperator
    operator_pod: str
    prometheus: Prometheus


def _account_kubeconfig(dev_cluster: cluster.DevCluster, *, namespace: str, account: str, path: Path) -> Path:
    token = dev_cluster.kubectl.run(
        "create", "token", account, f"--namespace={namespace}", "--duration=3600s"
    ).stdout.strip()
    document = kubeconfig.kubeconfig_document(
        server_url=dev_cluster.server_url,
        ca_cert=pki.Pki.at(dev_cluster.layout.pki_dir).ca_cert,
        user=f"system:serviceaccount:{namespace}:{account}",
        token=token,
        namespace=namespace,
    )
    return kubeconfig.write_kubeconfig(path, document)


def _prometheus_config(*, operator_port: int, engine_targets: Path, rules: Path) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                # As the chart's ServiceMonitor: the series keep their own namespace label.
                "job_name": "tokenscale-operator",
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}],
            },
            {
                # As a PodMonitor on the engines: every engine pod's /metrics, the pod's namespace attached
                # (the Debian build of Prometheus has no Kubernetes discovery; `EngineTargets` writes the file).
                "job_name": "vllm",
                "file_sd_configs": [{"files": [str(engine_targets)], "refresh_interval": "2s"}],
            },
        ],
    }


def _create_namespace(kubectl: Kubectl, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", name)
    wait_until(
        lambda: kubectl.run("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        what=f"ServiceAccount {name}/default",
    )
    return name


@pytest.fixture(scope="module")
def stack(dev_cluster: cluster.DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    kubectl = dev_cluster.kubectl
    helm = Helm.for_cluster(dev_cluster)
    workdir = tmp_path_factory.mktemp("chart-operator")
    namespace = _create_namespace(kubectl, "t-chart-e2e")
    release_namespace = _create_namespace(kubectl, "t-chart-sys")
    values = {"replicaCount": 2, "watchNamespaces": [namespace]}
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(kubectl.run, "delete", "namespace", namespace, release_namespace, "--wait=false")
        helm.install(release=RELEASE, namespace=release_namespace, values=values)
        cleanup.callback(helm.uninstall, release=RELEASE, namespace=release_namespace)

        kubectl.run("apply", f"--namespace={namespace}", "-k", str(EXAMPLE))
        wait_until(
            lambda: op.ready_pods(kubectl, namespace, PREFILL) == 1 and op.ready_pods(kubectl, namespace, DECODE) == 1,
            what="the example's engine pods Ready",
        )
        fleet = cleanup.enter_context(
            fake_engines(
                kubeconfig=dev_cluster.kubeconfig,
                namespace=namespace,
                port=ENGINE_PORT,
                loads=[(PREFILL, IDLE_PREFILL), (DECODE, IDLE_DECODE)],
            )
        )

        deployment = kubectl.get_json("deployment", FULLNAME, f"--namespace={release_namespace}")
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        pods = kubectl.get_json(
            "pods", f"--namespace={release_namespace}", f"--selector=app.kubernetes.io/instance={RELEASE}"
        )
        operator_pod = sorted(pod["metadata"]["name"] for pod in pods["items"])[0]
        account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        account_kubeconfig = _account_kubeconfig(
            dev_cluster, namespace=release_namespace, account=account, path=workdir / "account.kubeconfig"
        )
        operator = ChartOperator(
            container=container,
            pod_name=operator_pod,
            kubeconfig_path=account_kubeconfig,
            log_path=workdir / "operator.log",
        )
        cleanup.callback(operator.stop)

        rule = find(helm.template(release=RELEASE, namespace=release_namespace, values=RULE_VALUES), "PrometheusRule")
        rules = workdir / "rules.yaml"
        rules.write_text(yaml.safe_dump(rule["spec"]))
        targets = EngineTargets(fleet=fleet, namespace=namespace, port=ENGINE_PORT, path=workdir / "engines.json")
        cleanup.callback(targets.stop)
        config = _prometheus_config(operator_port=operator.metrics_port, engine_targets=targets.path, rules=rules)
        prometheus = cleanup.enter_context(running_prometheus(config=config, workdir=workdir / "prometheus"))
        admin = dev_cluster.kubectl
        as_account = Kubectl(
            binary=admin.binary, kubeconfig=account_kubeconfig, cache_dir=admin.cache_dir, env=admin.env
        )
        stack = Stack(
            kubectl=kubectl,
            account=as_account,
            namespace=namespace,
            release_namespace=release_namespace,
            fleet=fleet,
            operator=operator,
            operator_pod=operator_pod,
            prometheus=prometheus,
        )
        try:
            op.wait_ready(kubectl, namespace, SERVICE, timeout_seconds=60)
            yield stack
        except BaseException:
            sys.stderr.write(f"--- operator log ---\n{operator.log_text()[-6000:]}\n")
            sys.stderr.write(f"--- prometheus log ---\n{prometheus.log_tail()}\n")
            raise


_DENIED = re.compile(r"\b403\b|Forbidden|permission", re.IGNORECASE)


def _forbidden_lines(log: str) -> list[str]:
    # A word-bounded 403: the log names random ports (e.g. 127.0.0.1:40379), which must not count as a denial.
    return [line for line in log.splitlines() if _DENIED.search(line)]


def test_operator_with_the_charts_account_reconciles_and_scales(stack: Stack) -> None:
    kubectl, namespace = stack.kubectl, stack.namespace
    assert op.spec_replicas(kubectl, namespace, PREFILL) == 1
    try:
        stack.fleet.set_load(PREFILL, BURST)
        wait_until(
            lambda: op.spec_replicas(kubectl, namespace, PREFILL) >= 2,
            what="prefill scaled out through /scale",
            timeout_seconds=60,
        )
        status = op.status_of(kubectl, namespace, SERVICE)
        assert status["prefill"]["desiredReplicas"] >= 2
        assert status["velocities"]["arrivingPromptTokensPerSecond"] > 0
        assert status["lastDecisions"], status
        wait_until(lambda: "Scale" in op.event_reasons(kubectl, namespace, SERVICE), what="a Scale event")
    finally:
        stack.fleet.set_load(PREFILL, IDLE_PREFILL)
    # The llm-d preset: pods keep llm-d.ai/role; a converted decoder reads prefill-decode.
    roles = {
        pod["metadata"]["labels"]["llm-d.ai/role"]
        for app in (PREFILL, DECODE)
        for pod in op.pods(kubectl, namespace, app)
    }
    assert roles <= {"prefill", "decode", "prefill-decode"}
    assert _forbidden_lines(stack.operator.log_text()) == []


@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe"])
def test_the_charts_probes_ask_the_operators_health_endpoint(stack: Stack, probe: str) -> None:
    container = stack.operator.container
    get = container[probe]["httpGet"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    # The probed port is the one the chart tells the operator to serve its health on (here moved to a free one).
    assert f"--health-port={ports[get['port']]}" in container["args"]
    url = f"http://127.0.0.1:{stack.operator.health_port}{get['path']}"
    assert op.read_health(url) == (200, {"ticking": {"services": 1}})


def test_replica_priority_comes_from_the_pod_name_through_peering(stack: Stack) -> None:
    expected = int(
        subprocess.run(["cksum"], input=stack.operator_pod, capture_output=True, text=True, check=True).stdout.split()[
            0
        ]
    )

    def peers() -> list[dict[str, Any]]:
        peering = stack.kubectl.get_json("kopfpeering", FULLNAME, f"--namespace={stack.namespace}")
        return list((peering.get("status") or {}).values())

    (peer,) = wait_until(peers, what="the operator's keep-alive in its KopfPeering")
    assert peer["priority"] == expected
    assert "Pausing" not in stack.operator.log_text()


@pytest.mark.parametrize(
    ("verb", "resource", "scope"),
    [
        pytest.param("get", "secrets", "watched", id="read-secrets"),
        pytest.param("list", "secrets", "all", id="list-secrets-anywhere"),
        pytest.param("list", "configmaps", "watched", id="read-configmaps"),
        pytest.param("create", "pods", "watched", id="create-pods"),
        pytest.param("delete", "pods", "watched", id="delete-pods"),
        pytest.param("update", "deployments.apps", "watched", id="edit-deployments"),
        pytest.param("patch", "deployments.apps", "watched", id="patch-deployments"),
        pytest.param("delete", "disaggregatedinferenceservices.tokenscale.io", "watched", id="delete-services"),
        pytest.param("create", "disaggregatedinferenceservices.tokenscale.io", "watched", id="create-services"),
        pytest.param("list", "pods", "release", id="pods-outside-the-watched-namespace"),
        pytest.param("update", "deployments.apps --subresource=scale", "release", id="scale-outside"),
        pytest.param("create", "clusterroles.rbac.authorization.k8s.io", "all", id="grant-itself-more"),
        pytest.param("create", "rolebindings.rbac.authorization.k8s.io", "watched", id="bind-roles"),
        pytest.param("list", "clusterkopfpeerings.kopf.dev", "all", id="cluster-peering-when-namespaced"),
    ],
)
def test_the_charts_account_is_refused_what_the_operator_does_not_do(
    stack: Stack, verb: str, resource: str, scope: str
) -> None:
    where = {
        "watched": [f"--namespace={stack.namespace}"],
        "release": [f"--namespace={stack.release_namespace}"],
        "all": ["--all-namespaces"],
    }[scope]
    done = stack.account.run("auth", "can-i", verb, *resource.split(), *where, check=False)
    assert done.stdout.strip() == "no", (done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("verb", "resource"),
    [
        pytest.param("list", "pods", id="list-pods"),
        pytest.param("patch", "pods", id="flip-role-labels"),
        pytest.param("get", "deployments.apps --subresource=scale", id="read-scale"),
        pytest.param("update", "deployments.apps --subresource=scale", id="write-scale"),
        pytest.param("patch", "disaggregatedinferenceservices.tokenscale.io --subresource=status", id="write-status"),
        pytest.param("watch", "disaggregatedinferenceservices.tokenscale.io", id="watch-services"),
        pytest.param("create", "events", id="post-events"),
        pytest.param("list", "horizontalpodautoscalers.autoscaling", id="find-hpas"),
        pytest.param("patch", "kopfpeerings.kopf.dev", id="keep-alive"),
    ],
)
def test_the_charts_account_may_do_what_the_operator_does(stack: Stack, verb: str, resource: str) -> None:
    done = stack.account.run("auth", "can-i", verb, *resource.split(), f"--namespace={stack.namespace}", check=False)
    assert done.stdout.strip() == "yes", (done.stdout, done.stderr)


def test_reading_secrets_is_forbidden_by_the_api_server(stack: Stack) -> None:
    done = stack.account.run("get", "secrets", f"--namespace={stack.namespace}", check=False)
    assert done.returncode != 0
    assert 'cannot list resource "secrets"' in done.stderr, done.stderr


# -- incidents, then the dashboards and alerts that must show them ---------------------------------------------


def _series(stack: Stack, expr: str) -> list[dict[str, Any]]:
    return stack.prometheus.query(expr)


def _fired(stack: Stack, alert: str) -> bool:
    return bool(_series(stack, f'max_over_time(ALERTS{{alertname="{alert}", alertstate="firing"}}[15m])'))


@pytest.fixture(scope="module")
def incidents(stack: Stack) -> Stack:
    """A metrics outage of the prefill engines, then a burst the operator may not act on (the chart's
    ClusterRole loses `update` on deployments/scale), each held until the alert that watches it fires."""
    service = f'namespace="{stack.namespace}", name="{SERVICE}"'
    wait_until(lambda: stack.prometheus.healthy_targets("vllm") >= 2, what="Prometheus scraping the engines")
    wait_until(lambda: stack.prometheus.healthy_targets("tokenscale-operator") == 1, what="Prometheus scraping us")

    stack.fleet.set_load(PREFILL, EngineLoad(healthy=False))
    try:
        wait_until(
            lambda: _series(stack, f"tokenscale_metrics_available{{{service}}} == 0"), what="metrics unavailable"
        )
        wait_until(lambda: _fired(stack, "TokenScaleMetricsUnavailable"), what="the outage alert", timeout_seconds=30)
    finally:
        stack.fleet.set_load(PREFILL, IDLE_PREFILL)

    role = stack.kubectl.get_json("clusterrole", FULLNAME)
    (scale_rule,) = [r for r in role["rules"] if "deployments/scale" in r["resources"]]
    index = role["rules"].index(scale_rule)
    patch = [{"op": "replace", "path": f"/rules/{index}/verbs", "value": ["get"]}]
    stack.kubectl.run("patch", "clusterrole", FULLNAME, "--type=json", "-p", json.dumps(patch))
    try:
        stack.fleet.set_load(PREFILL, BIG_BURST)
        wait_until(
            lambda: _series(stack, f'tokenscale_actuation_errors_total{{{service}, operation="scale"}} > 0'),
            what="refused scale writes counted",
        )
        wait_until(lambda: _fired(stack, "TokenScaleScalingConflict"), what="the conflict alert", timeout_seconds=30)
    finally:
        stack.fleet.set_load(PREFILL, IDLE_PREFILL)
        restore = [{"op": "replace", "path": f"/rules/{index}/verbs", "value": scale_rule["verbs"]}]
        stack.kubectl.run("patch", "clusterrole", FULLNAME, "--type=json", "-p", json.dumps(restore))
    wait_until(lambda: _fired(stack, "TokenScaleTTFTBudgetBurn"), what="the TTFT budget alert", timeout_seconds=60)
    return stack


def _substitute(expr: str, stack: Stack) -> str:
    """The query as Grafana sends it with the test's service selected."""
    values = {
        "$__rate_interval": RATE_INTERVAL,
        "$namespace": stack.namespace,
        "$service": SERVICE,
        "$model": MODEL_NAME,
        "$ttft_objective": "0.25",
        "$itl_objective": "0.1",
    }
    for variable, value in values.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


_QUERIES = [
    pytest.param(query.expr, id=f"{dashboard.uid}:{panel.title}:{index}")
    for dashboard in dashboards.dashboards()
    for panel in dashboard.panels
    for index, query in enumerate(panel.queries)
]


@pytest.mark.parametrize("expr", _QUERIES)
def test_every_dashboard_query_returns_data(incidents: Stack, expr: str) -> None:
    result = _series(incidents, _substitute(expr, incidents))
    assert result, f"no data for {_substitute(expr, incidents)}"
    values = [float(sample["value"][1]) for sample in result]
    assert not any(math.isnan(value) for value in values), values  # NaN: a ratio of empty rates


@pytest.mark.parametrize(
    "variable",
    [
        pytest.param(variable, id=f"{dashboard.uid}:{variable.name}")
        for dashboard in dashboards.dashboards()
        for variable in dashboard.variables
        if variable.kind == "query"
    ],
)
def test_every_dashboard_variable_offers_the_test_service(incidents: Stack, variable: dashboards.Variable) -> None:
    result = _series(incidents, f"count by ({variable.label_name}) ({_substitute(variable.metric, incidents)})")
    offered = {sample["metric"][variable.label_name] for sample in result}
    expected = {"namespace": incidents.namespace, "name": SERVICE, "model_name": MODEL_NAME}[variable.label_name]
    assert expected in offered


def test_slo_attainment_reads_the_engines_histograms(incidents: Stack) -> None:
    (scaling,) = [d for d in dashboards.dashboards() if d.uid == "tokenscale-scaling"]
    (ttft,) = [p for p in scaling.panels if p.title == "TTFT SLO attainment"]
    expr = _substitute(ttft.queries[0].expr, incidents)
    # The fake engines answer in 100 ms: all within 250 ms, none within 40 ms.
    assert [float(s["value"][1]) for s in _series(incidents, expr)] == [1.0]
    below = expr.replace('le="0.25"', 'le="0.04"')
    assert [float(s["value"][1]) for s in _series(incidents, below)] == [0.0]


@pytest.mark.parametrize(
    ("alert", "fires"),
    [
        pytest.param("TokenScaleMetricsUnavailable", True, id="metrics-unavailable"),
        pytest.param("TokenScaleScalingConflict", True, id="scaling-conflict"),
        pytest.param("TokenScaleTTFTBudgetBurn", True, id="ttft-budget-burn"),
        pytest.param("TokenScaleITLBudgetBurn", False, id="itl-within-objective"),
    ],
)
def test_alerts_fire_on_the_conditions_they_watch(incidents: Stack, alert: str, fires: bool) -> None:
    assert incidents.prometheus.rule_health()[alert] == "ok"
    assert _fired(incidents, alert) is fires
