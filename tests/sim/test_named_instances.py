"""Instances named from outside (the twin's pods): added starting, made Ready when told, removed by draining."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.sim.helpers import NO_OVERHEAD, TOY

from tokenscale.core.types import Role
from tokenscale.sim.cluster import Cluster
from tokenscale.sim.instances import DecodeInstance, InstanceState


def cluster_with(*names: tuple[Role, str]) -> Cluster:
    cluster = Cluster(perf=TOY, config=NO_OVERHEAD)
    for role, name in names:
        cluster.add_instance(role, name)
    return cluster


def test_an_added_instance_waits_for_mark_ready_whatever_the_cold_start() -> None:
    cluster = cluster_with((Role.PREFILL, "pod-p"), (Role.DECODE, "pod-d"))
    cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=2)
    cluster.advance_to(2 * TOY.cold_start_seconds)
    assert [i.state for i in (*cluster.prefillers, *cluster.decoders)] == [InstanceState.STARTING] * 2
    assert cluster.completed == 0
    assert cluster.mark_ready("pod-p")
    assert cluster.mark_ready("pod-d")
    cluster.advance_to(2 * TOY.cold_start_seconds + 1.0)
    assert cluster.completed == 1
    assert cluster.prefillers[0].ready_seconds == 2 * TOY.cold_start_seconds


@pytest.mark.parametrize(
    ("ready", "busy", "state_after"),
    [
        pytest.param(False, False, None, id="starting-goes-at-once"),
        pytest.param(True, False, None, id="idle-ready-goes-at-once"),
        pytest.param(True, True, InstanceState.DRAINING, id="busy-ready-drains"),
    ],
)
def test_remove_instance_drains_like_a_scale_in(ready: bool, busy: bool, state_after: str | None) -> None:
    cluster = cluster_with((Role.PREFILL, "p"), (Role.DECODE, "d"))
    cluster.mark_ready("p")
    if ready:
        cluster.mark_ready("d")
    if busy:
        cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=500)
        cluster.advance_to(0.5)  # decoding, 500 steps of ~10 ms to go
    assert cluster.remove_instance("d")
    assert [d.state for d in cluster.decoders] == ([state_after] if state_after else [])
    if busy:
        cluster.advance_to(60.0)
        assert cluster.completed == 1  # it finished what it held, then left
        assert cluster.decoders == []


def test_a_removed_converted_decoder_is_restored_first() -> None:
    cluster = cluster_with((Role.DECODE, "d"))
    cluster.mark_ready("d")
    assert cluster.convert("d")
    cluster.remove_instance("d")
    removed = cluster.removed[0]
    assert isinstance(removed, DecodeInstance)
    assert not removed.converted


def test_names_are_unique_while_an_instance_is_in_the_cluster() -> None:
    cluster = cluster_with((Role.PREFILL, "p"))
    with pytest.raises(ValueError, match="already in the cluster"):
        cluster.add_instance(Role.DECODE, "p")
    cluster.remove_instance("p")
    cluster.add_instance(Role.PREFILL, "p")  # gone: the name may come back (a StatefulSet's pod)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.mark_ready("nobody"), id="mark-unknown"),
        pytest.param(lambda c: c.remove_instance("nobody"), id="remove-unknown"),
        pytest.param(lambda c: c.mark_ready("p") and c.mark_ready("p"), id="mark-twice"),
    ],
)
def test_calls_on_unknown_or_settled_instances_report_false(call: Callable[[Cluster], bool]) -> None:
    assert call(cluster_with((Role.PREFILL, "p"))) is False
