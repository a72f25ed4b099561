"""The Helm chart and the static manifests on the real local control plane: helm lint, the values schema,
every rendered object validated by the API server, helm install under the restricted Pod Security Standard,
`kubectl apply -k deploy/base`, and `tokenscale generate --check` catching a drifted manifest.

The operator's pods run as KWOK fake pods; the operator itself runs as a local process in
test_chart_operator.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration import waiting
from tests.integration.helm import CHART, ROOT, Helm, find
from tests.integration.prometheus import prometheus_binary

from tokenscale.devcluster import binaries, cluster
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

_EVERY_FEATURE: dict[str, Any] = {
    "replicaCount": 2,
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True},
    "dashboards": {"enabled": True, "annotations": {"grafana_folder": "TokenScale"}},
    "rbac": {
        "extraScaleTargets": [{"apiGroup": "leaderworkerset.x-k8s.io", "resource": "leaderworkersets"}],
        "placement": True,
    },
    "operator": {"allowedScrapeCIDRs": ["198.51.100.0/24"], "extraArgs": ["--log-level=DEBUG"]},
}
_VALUE_SETS = [
    pytest.param({}, id="defaults"),
    pytest.param(_EVERY_FEATURE, id="every-feature-cluster-wide"),
    pytest.param({**_EVERY_FEATURE, "watchNamespaces": ["{namespace}"]}, id="every-feature-namespaced"),
]

# The Prometheus Operator's CRDs are not vendored: these accept any spec, so the API server checks the objects'
# kind, metadata and names; their content is checked by promtool (rules) and by test_chart_operator.py.
_MONITORING_KINDS = (("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules"))


def _monitoring_crd(kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def helm(dev_cluster: cluster.DevCluster) -> Helm:
    return Helm.for_cluster(dev_cluster)


@pytest.fixture
def monitoring_crds(kubectl: Kubectl) -> None:
    kubectl.run(
        "apply",
        "--server-side",
        "-f",
        "-",
        input_text=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": [_monitoring_crd(k, p) for k, p in _MONITORING_KINDS]}
        ),
    )
    for _, plural in _MONITORING_KINDS:
        kubectl.run("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.monitoring.coreos.com")


def _values(values: dict[str, Any], namespace: str) -> dict[str, Any]:
    """``values`` with ``{namespace}`` in watchNamespaces replaced by the test's namespace."""
    return json.loads(json.dumps(values).replace("{namespace}", namespace))


@pytest.mark.parametrize("values", _VALUE_SETS)
def test_helm_lint_is_clean(values: dict[str, Any], tmp_path: Path) -> None:
    helm = Helm(binary=binaries.locate_binaries().path("helm"), kubeconfig=tmp_path / "unused")
    done = helm.run("lint", "--strict", str(CHART), values=_values(values, "watched"))
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("values", "refused_key"),
    [
        pytest.param({"replicas": 2}, "replicas", id="unknown-key"),
        pytest.param({"replicaCount": 0}, "replicaCount", id="no-replica"),
        pytest.param({"metrics": {"port": "8080"}}, "port", id="port-as-string"),
        pytest.param({"operator": {"logFormat": "yaml"}}, "logFormat", id="unknown-log-format"),
        pytest.param({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces", id="bad-namespace-name"),
        pytest.param({"image": {"digest": "latest"}}, "digest", id="digest-not-sha256"),
        pytest.param(
            {"prometheusRule": {"slo": {"ttftObjectiveSeconds": "0.3"}}},
            "ttftObjectiveSeconds",
            id="objective-not-a-vllm-bucket",
        ),
        pytest.param({"serviceMonitor": {"interval": "15"}}, "interval", id="duration-without-unit"),
    ],
)
def test_values_schema_refuses_mistakes(values: dict[str, Any], refused_key: str, tmp_path: Path) -> None:
    helm = Helm(binary=binaries.locate_binaries().path("helm"), kubeconfig=tmp_path / "unused")
    done = helm.run("template", "t", str(CHART), values=values, check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr, done.stderr
    assert refused_key in done.stderr, done.stderr


@pytest.mark.usefixtures("monitoring_crds")
@pytest.mark.parametrize("values", _VALUE_SETS)
def test_every_rendered_object_passes_the_api_servers_validation(
    helm: Helm, kubectl: Kubectl, namespace: str, values: dict[str, Any]
) -> None:
    rendered = helm.template_text(release="t", namespace=namespace, values=_values(values, namespace))
    done = kubectl.run("apply", "--dry-run=server", "--validate=strict", "-f", "-", input_text=rendered, check=False)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr
    kinds = {document["kind"] for document in yaml.safe_load_all(rendered) if document}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "Service"} <= kinds


def test_alert_rules_pass_promtool(helm: Helm, tmp_path: Path) -> None:
    rule = find(helm.template(release="t", namespace="monitoring", values=_EVERY_FEATURE), "PrometheusRule")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]))
    promtool = prometheus_binary().with_name("promtool")
    done = subprocess.run(
        [str(promtool), "check", "rules", str(rules_file)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 4 rules found" in done.stdout, done.stdout


def test_service_monitor_selects_the_metrics_service_and_keeps_the_service_labels(helm: Helm) -> None:
    objects = helm.template(release="t", namespace="ops", values=_EVERY_FEATURE)
    monitor, service = find(objects, "ServiceMonitor"), find(objects, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["honorLabels"] is True  # the series' own namespace label must win over the target's
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_dashboards_are_configmaps_for_the_grafana_sidecar(helm: Helm) -> None:
    objects = helm.template(release="t", namespace="ops", values=_EVERY_FEATURE)
    maps = [o for o in objects if o["kind"] == "ConfigMap"]
    files = sorted(path.name for path in (CHART / "dashboards").glob("*.json"))
    assert sorted(name for m in maps for name in m["data"]) == files
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "TokenScale"}
        ((name, text),) = config_map["data"].items()
        assert json.loads(text) == json.loads((CHART / "dashboards" / name).read_text())


@pytest.mark.parametrize(
    ("replicas", "peering"),
    [pytest.param(1, False, id="one-replica-standalone"), pytest.param(3, True, id="three-replicas-peering")],
)
def test_peering_is_on_exactly_with_several_replicas(helm: Helm, replicas: int, peering: bool) -> None:
    deployment = find(helm.template(release="t", namespace="ops", values={"replicaCount": replicas}), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert ("--peering=t-tokenscale" in container["args"]) is peering
    assert ("--priority" in " ".join(container["command"])) is peering
    # Without peering, a rollout must never overlap two acting operators.
    assert (deployment["spec"].get("strategy", {}).get("type") == "Recreate") is not peering


@pytest.fixture
def restricted_namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"t-chart-restricted-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", name)
    kubectl.run("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    waiting.wait_until(
        lambda: kubectl.run("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        what=f"ServiceAccount {name}/default",
    )
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false")


def test_helm_install_runs_the_operator_under_the_restricted_pod_security_standard(
    helm: Helm, kubectl: Kubectl, restricted_namespace: str, namespace: str
) -> None:
    release = f"ts-{uuid.uuid4().hex[:6]}"
    try:
        notes = helm.install(release=release, namespace=restricted_namespace)
        # --wait returned: the ReplicaSet's pods were admitted (PodSecurity enforce=restricted) and became Ready.
        deployment = kubectl.get_json("deployment", f"{release}-tokenscale", f"--namespace={restricted_namespace}")
        assert deployment["status"]["readyReplicas"] == 1
        assert f"is installed in namespace {restricted_namespace}" in notes
        assert "in every namespace" in notes
        account = f"system:serviceaccount:{restricted_namespace}:{release}-tokenscale"
        for verb, resource, expected in (
            ("list", "pods", "yes"),
            ("update", "deployments.apps --subresource=scale", "yes"),
            ("get", "secrets", "no"),
            ("delete", "pods", "no"),
        ):
            done = kubectl.run(
                "auth", "can-i", verb, *resource.split(), f"--namespace={namespace}", f"--as={account}", check=False
            )
            assert done.stdout.strip() == expected, (verb, resource, done.stdout, done.stderr)
    finally:
        helm.uninstall(release=release, namespace=restricted_namespace)


def test_kustomize_base_installs_the_operator(kubectl: Kubectl) -> None:
    base = ROOT / "deploy" / "base"
    names = [
        ("clusterrolebinding", "tokenscale"),
        ("clusterrolebinding", "tokenscale-cluster"),
        ("clusterrole", "tokenscale"),
        ("clusterrole", "tokenscale-cluster"),
    ]
    try:
        kubectl.run("apply", "--server-side", "-k", str(base))
        kubectl.run("rollout", "status", "deployment/tokenscale", "--namespace=tokenscale-system", "--timeout=90s")
        namespace = kubectl.get_json("namespace", "tokenscale-system")
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    finally:
        # Never the CRDs: the session's other tests use them.
        kubectl.run("delete", "namespace", "tokenscale-system", "--wait=false", check=False)
        for kind, name in names:
            kubectl.run("delete", kind, name, "--ignore-not-found", check=False)


@pytest.mark.parametrize(
    ("edit", "drifted"),
    [
        pytest.param(("deploy/install.yaml", "replicas: 1", "replicas: 2"), "deploy/install.yaml", id="manifest-edit"),
        pytest.param(
            ("charts/tokenscale/values.yaml", "replicaCount: 1", "replicaCount: 2"),
            "deploy/base/operator.yaml",
            id="chart-default-changed",
        ),
        pytest.param(
            ("charts/tokenscale/crds/tokenscale.io_disaggregatedinferenceservices.yaml", "minimum: 1", "minimum: 0"),
            "charts/tokenscale/crds/tokenscale.io_disaggregatedinferenceservices.yaml",
            id="chart-crd-edit",
        ),
    ],
)
def test_generate_check_fails_on_drift(edit: tuple[str, str, str], drifted: str, tmp_path: Path) -> None:
    shutil.copytree(CHART, tmp_path / "charts" / "tokenscale")
    generate = [sys.executable, "-m", "tokenscale", "generate", f"--root={tmp_path}"]
    subprocess.run(generate, capture_output=True, text=True, check=True, cwd=ROOT)
    assert subprocess.run([*generate, "--check"], check=False, capture_output=True, text=True, cwd=ROOT).returncode == 0

    path, old, new = edit
    text = (tmp_path / path).read_text()
    assert old in text
    (tmp_path / path).write_text(text.replace(old, new, 1))
    done = subprocess.run([*generate, "--check"], check=False, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1
    assert drifted in done.stderr.splitlines()[-1], done.stderr
