"""state.json carries everything another process needs to use and stop the cluster."""

from __future__ import annotations

from pathlib import Path

from tokenscale.devcluster import cluster, components, state
from tokenscale.devcluster.processes import ComponentProcess


def test_state_survives_a_round_trip_through_json(tmp_path: Path) -> None:
    written = state.ClusterState(
        home=tmp_path,
        server_url="https://127.0.0.1:40001",
        kubeconfig=tmp_path / "kubeconfig",
        ports=components.Ports(etcd_client=1, etcd_peer=2, apiserver=40001, controller_manager=4, scheduler=5, kwok=6),
        processes=(ComponentProcess(name="etcd", pid=42, binary=tmp_path / "etcd", log=tmp_path / "etcd.log"),),
        nodes=("gpu-node-0",),
        started_at_unix=1.5,
        timings_seconds={"ready": 4.2},
    )

    assert state.ClusterState.from_json(written.to_json()) == written


def test_no_cluster_is_attached_where_none_was_started(tmp_path: Path) -> None:
    assert cluster.attach_cluster(tmp_path) is None
    assert cluster.stop_cluster(tmp_path) is False
