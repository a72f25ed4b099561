"""state.json carries everything another process needs to use and stop the cluster."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tokenscale.devcluster import cluster, components, nodes, podranges, state
from tokenscale.devcluster.binaries import Binaries
from tokenscale.devcluster.processes import ComponentProcess


def _state(tmp_path: Path) -> state.ClusterState:
    return state.ClusterState(
        home=tmp_path,
        server_url="https://127.0.0.1:40001",
        kubeconfig=tmp_path / "kubeconfig",
        ports=components.Ports(etcd_client=1, etcd_peer=2, apiserver=40001, controller_manager=4, scheduler=5, kwok=6),
        processes=(ComponentProcess(name="etcd", pid=42, binary=tmp_path / "etcd", log=tmp_path / "etcd.log"),),
        nodes=("gpu-node-0",),
        started_at_unix=1.5,
        timings_seconds={"ready": 4.2},
        pod_cidr="127.16.0.0/16",
        pod_range_claim=tmp_path / "pod-ranges" / "16",
    )


def test_state_survives_a_round_trip_through_json(tmp_path: Path) -> None:
    written = _state(tmp_path)

    assert state.ClusterState.from_json(written.to_json()) == written


def test_state_written_before_pod_range_claims_reads_as_the_default_range_without_a_claim(tmp_path: Path) -> None:
    document = json.loads(_state(tmp_path).to_json())
    del document["podCIDR"], document["podRangeClaim"]

    read = state.ClusterState.from_json(json.dumps(document))

    assert read.pod_cidr == nodes.POD_CIDR
    assert read.pod_range_claim is None


def test_no_cluster_is_attached_where_none_was_started(tmp_path: Path) -> None:
    assert cluster.attach_cluster(tmp_path) is None
    assert cluster.stop_cluster(tmp_path) is False


def test_a_node_inside_the_claimed_pod_range_fails_the_start_and_releases_the_claim(tmp_path: Path) -> None:
    claims = tmp_path / "claims"  # empty: the cluster would claim the first range
    misplaced = nodes.FakeNode(name="misplaced", internal_ip="127.1.0.9")

    with pytest.raises(ValueError, match=re.escape("inside the pod range 127.1.0.0/16")):
        cluster.start_cluster(
            home=tmp_path / "home",
            fake_nodes=[misplaced],
            binaries=Binaries(tmp_path / "bin"),  # never run: the check comes before any process starts
            pod_range_claims_dir=claims,
        )
    assert podranges.read_claim(claims / "1") is None
    assert podranges.claim_pod_range(claims_dir=claims, home=tmp_path, pid=os.getpid()).pod_cidr == nodes.POD_CIDR
