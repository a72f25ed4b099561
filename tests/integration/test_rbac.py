"""RBAC is on: a ServiceAccount token authenticates, and the account may do only what a binding grants."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.integration.waiting import wait_until

from tokenscale.devcluster import cluster, serviceaccount
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

_ACCOUNT = "autoscaler"
_SCALE_PATCH = json.dumps({"spec": {"replicas": 2}})


def _as_account(dev_cluster: cluster.DevCluster, kubeconfig: Path) -> Kubectl:
    admin = dev_cluster.kubectl
    return Kubectl(binary=admin.binary, kubeconfig=kubeconfig, cache_dir=admin.cache_dir, env=admin.env)


def _deployment(name: str) -> dict[str, object]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "engine"}]}},
        },
    }


def _attempts(account: Kubectl) -> dict[str, tuple[int, str]]:
    listing = account.run("get", "pods", check=False)
    scaling = account.run(
        "patch", "deployment", "prefill", "--subresource=scale", "--type=merge", "-p", _SCALE_PATCH, check=False
    )
    return {"list pods": (listing.returncode, listing.stderr), "scale": (scaling.returncode, scaling.stderr)}


def test_unprivileged_service_account_is_forbidden_until_a_role_grants_access(
    dev_cluster: cluster.DevCluster, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply_objects([_deployment("prefill")], namespace=namespace)
    account = _as_account(
        dev_cluster, serviceaccount.service_account_kubeconfig(dev_cluster, namespace=namespace, name=_ACCOUNT)
    )
    user = f"system:serviceaccount:{namespace}:{_ACCOUNT}"

    denied = _attempts(account)

    assert denied["list pods"][0] != 0
    assert f'User "{user}" cannot list resource "pods"' in denied["list pods"][1]
    assert denied["scale"][0] != 0
    # kubectl reads /scale before it patches, so the first refusal may be the get.
    assert re.search(f'User "{user}" cannot (get|patch) resource "deployments/scale"', denied["scale"][1])

    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": _ACCOUNT, "namespace": namespace},
        "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": _ACCOUNT, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": _ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": _ACCOUNT, "namespace": namespace}],
    }
    kubectl.apply_objects([role, binding])

    def all_allowed() -> bool:
        return all(code == 0 for code, _ in _attempts(account).values())

    wait_until(all_allowed, what="the RoleBinding to take effect", timeout_seconds=20)
    assert kubectl.get_json("deployment", "prefill", f"--namespace={namespace}")["spec"]["replicas"] == 2
