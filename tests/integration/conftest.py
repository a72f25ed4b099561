"""Integration tier: one real local control plane per test session (tokenscale.devcluster), with the CRD applied.

The session fixture never skips: without the binaries it fails and says to run `make cluster-bins`, because CI
must execute these tests. A failing test gets the tails of the component logs attached to its report.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from tests.integration import waiting

from tokenscale.api import v1alpha1
from tokenscale.devcluster import binaries, cluster, nodes
from tokenscale.devcluster.kubectl import Kubectl

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / f"{v1alpha1.GROUP}_{v1alpha1.PLURAL}.yaml"
SESSION_NODES = tuple(nodes.fake_gpu_nodes(4))
_CLUSTER = pytest.StashKey[cluster.DevCluster]()
_LOG_LINES = 40


@pytest.fixture(scope="session")
def dev_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster.DevCluster]:
    """The session's cluster: `SESSION_NODES` fake GPU nodes, the DisaggregatedInferenceService CRD established."""
    try:
        found = binaries.locate_binaries()
    except binaries.BinariesMissingError as error:
        pytest.fail(f"{error}\nThe integration tests need them: run `make cluster-bins` first.", pytrace=False)
    started = cluster.start_cluster(
        home=tmp_path_factory.mktemp("dev-cluster"), fake_nodes=SESSION_NODES, binaries=found, die_with_parent=True
    )
    request.config.stash[_CLUSTER] = started
    try:
        started.kubectl.run("apply", "--server-side", "-f", str(CRD_PATH))
        waiting.wait_until(lambda: _established(started.kubectl), what="the CRD Established")
        yield started
    finally:
        started.stop()


def _established(kubectl: Kubectl) -> bool:
    # Not `kubectl wait --for=condition=Established`: on a CRD whose status has no conditions yet (a loaded
    # machine, e.g. two test sessions at once) it exits with ".status.conditions accessor error" instead of waiting.
    crd = kubectl.get_json(f"crd/{v1alpha1.PLURAL}.{v1alpha1.GROUP}")
    conditions = crd.get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture
def kubectl(dev_cluster: cluster.DevCluster) -> Kubectl:
    """kubectl with the admin kubeconfig of the session's cluster."""
    return dev_cluster.kubectl


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace whose `default` ServiceAccount exists (pods need it), deleted afterwards."""
    name = f"t-{request.node.name[:40].lower().strip('_').replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    kubectl.run("create", "namespace", name)
    waiting.wait_until(
        lambda: kubectl.run("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        what=f"ServiceAccount {name}/default",
    )
    yield name
    # A service whose operator has stopped keeps its finalizer, and the namespace would stay Terminating for the
    # rest of the session, its deletion retried (and its pods listed) by the namespace controller.
    services = kubectl.run("get", "dis", "-n", name, "-o", "name", check=False).stdout.split()
    for service in services:
        kubectl.run("patch", service, "-n", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
    kubectl.run("delete", "namespace", name, "--wait=false")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of the component logs to a failing test that used the cluster."""
    report = yield
    running = item.config.stash.get(_CLUSTER, None)
    if report.failed and running is not None and "dev_cluster" in getattr(item, "fixturenames", ()):
        report.sections.append(
            (f"dev-cluster logs (last {_LOG_LINES} lines each)", running.log_tails(lines=_LOG_LINES))
        )
    return report
