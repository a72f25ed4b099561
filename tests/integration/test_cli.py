"""`tokenscale dev-cluster up | env | status | down` as a user runs them: up returns while the cluster runs on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenscale.devcluster import binaries, cluster, processes
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenscale", "dev-cluster", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A cluster home for the CLI; whatever runs there is stopped afterwards, also when the test fails."""
    try:
        binaries.locate_binaries()
    except binaries.BinariesMissingError as error:
        pytest.fail(f"{error}\nThe integration tests need them: run `make cluster-bins` first.", pytrace=False)
    yield tmp_path / "dev-cluster"
    cluster.stop_cluster(tmp_path / "dev-cluster")


def test_up_env_status_down_round_trip(home: Path) -> None:
    up = _cli("up", "--nodes=1", f"--home={home}")
    assert up.returncode == 0, up.stderr
    assert "Ready" in up.stdout

    second = _cli("up", "--nodes=1", f"--home={home}")
    env = _cli("env", f"--home={home}")
    status = _cli("status", f"--home={home}")
    running = cluster.attach_cluster(home)
    assert running is not None
    kubeconfig = Path(env.stdout.strip().removeprefix("export KUBECONFIG="))
    user_kubectl = Kubectl(
        binary=running.binaries.path("kubectl"), kubeconfig=kubeconfig, cache_dir=home / "test-kubectl-cache"
    )
    node_names = user_kubectl.run("get", "nodes", "-o", "name").stdout.split()

    assert second.returncode == 1
    assert "already runs" in second.stderr
    assert env.returncode == 0
    assert kubeconfig == running.kubeconfig
    assert node_names == ["node/gpu-node-0"]
    assert status.returncode == 0
    assert "EXITED" not in status.stdout
    assert f"pod IPs from {running.pod_cidr}" in up.stdout
    assert f"pod IPs from {running.pod_cidr}" in status.stdout

    down = _cli("down", f"--home={home}")

    assert down.returncode == 0, down.stderr
    assert not any(processes.is_running(p) for p in running.state.processes)
    assert _cli("env", f"--home={home}").returncode == 1
