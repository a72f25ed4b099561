"""Pod range claims: each cluster gets a /16 no live cluster holds; stale claims are taken over; stop releases."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenscale.devcluster import components, podranges

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_NODE_IPS = ipaddress.ip_network("127.0.0.0/16")


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    true = shutil.which("true")
    assert true is not None
    process = subprocess.Popen([true])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a process that runs until the test ends."""
    sleep = shutil.which("sleep")
    assert sleep is not None
    process = subprocess.Popen([sleep, "60"])
    yield process.pid
    process.kill()
    process.wait()


def _claim(claims_dir: Path, home: Path, pid: int) -> podranges.PodRangeClaim:
    return podranges.claim_pod_range(claims_dir=claims_dir, home=home, pid=pid)


def test_candidates_are_distinct_loopback_16s_outside_the_node_and_service_ranges() -> None:
    networks = [ipaddress.ip_network(cidr) for cidr in podranges.CANDIDATE_POD_CIDRS]
    services = ipaddress.ip_network(components.SERVICE_CIDR)

    assert podranges.CANDIDATE_POD_CIDRS[:2] == ("127.1.0.0/16", "127.16.0.0/16")
    assert len(set(networks)) == len(networks) == 1 + 254 - 16 + 1
    assert all(n.prefixlen == 16 and n.subnet_of(_LOOPBACK) for n in networks)
    assert not any(n.overlaps(_NODE_IPS) or n.overlaps(services) for n in networks)


def test_a_fresh_claim_gets_the_first_range_and_records_home_and_pid(tmp_path: Path) -> None:
    claim = _claim(tmp_path, tmp_path / "home-a", os.getpid())

    assert claim.pod_cidr == podranges.CANDIDATE_POD_CIDRS[0]
    assert claim.path == tmp_path / "1"
    assert podranges.read_claim(claim.path) == claim
    assert claim.pids == (os.getpid(),)


def test_a_second_claim_while_the_first_lives_gets_the_next_range(tmp_path: Path, live_pid: int) -> None:
    first = _claim(tmp_path, tmp_path / "home-a", live_pid)
    second = _claim(tmp_path, tmp_path / "home-b", os.getpid())

    assert first.pod_cidr == podranges.CANDIDATE_POD_CIDRS[0]
    assert second.pod_cidr == podranges.CANDIDATE_POD_CIDRS[1]
    assert second.path == tmp_path / "16"
    assert podranges.read_claim(first.path) == first


@pytest.mark.parametrize(
    ("pids_alive", "taken_over"),
    [
        pytest.param((False,), True, id="starter-dead"),
        pytest.param((False, False), True, id="starter-and-kwok-dead"),
        pytest.param((True,), False, id="starter-alive"),
        pytest.param((False, True), False, id="starter-gone-kwok-alive"),
    ],
)
def test_a_claim_is_taken_over_only_when_all_its_pids_are_dead(
    tmp_path: Path, dead_pid: int, live_pid: int, pids_alive: tuple[bool, ...], taken_over: bool
) -> None:
    old = _claim(tmp_path, tmp_path / "old-home", live_pid if pids_alive[0] else dead_pid)
    for alive in pids_alive[1:]:
        old = podranges.add_claim_pid(old, pid=live_pid if alive else dead_pid)

    new = _claim(tmp_path, tmp_path / "new-home", os.getpid())

    assert (new.pod_cidr == old.pod_cidr) is taken_over
    assert podranges.read_claim(old.path) == (new if taken_over else old)


def test_an_unreadable_claim_file_is_stale(tmp_path: Path) -> None:
    (tmp_path / "1").write_text('{"podCIDR": "127.1.0.0/16", "ho')  # its writer died mid-write

    claim = _claim(tmp_path, tmp_path / "home", os.getpid())

    assert claim.pod_cidr == podranges.CANDIDATE_POD_CIDRS[0]
    assert podranges.read_claim(claim.path) == claim


def test_added_pids_are_kept_in_order_after_the_starter(tmp_path: Path, live_pid: int) -> None:
    claim = _claim(tmp_path, tmp_path / "home", os.getpid())

    updated = podranges.add_claim_pid(claim, pid=live_pid)

    assert updated.pids == (os.getpid(), live_pid)
    assert podranges.read_claim(claim.path) == updated
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "lock"]  # no scratch file left behind


def test_adding_a_pid_to_a_claim_another_home_took_over_is_refused(tmp_path: Path, dead_pid: int) -> None:
    lost = _claim(tmp_path, tmp_path / "old-home", dead_pid)
    winner = _claim(tmp_path, tmp_path / "new-home", os.getpid())

    with pytest.raises(RuntimeError, match="no longer belongs"):
        podranges.add_claim_pid(lost, pid=os.getpid())
    assert podranges.read_claim(lost.path) == winner


def test_release_frees_the_range_for_the_next_claim(tmp_path: Path, live_pid: int) -> None:
    first = _claim(tmp_path, tmp_path / "home-a", live_pid)

    released = podranges.release_pod_range(first.path, home=first.home)
    again = _claim(tmp_path, tmp_path / "home-b", live_pid)

    assert released
    assert again.pod_cidr == first.pod_cidr


def test_release_leaves_a_claim_another_home_holds(tmp_path: Path, dead_pid: int) -> None:
    stale = _claim(tmp_path, tmp_path / "old-home", dead_pid)
    winner = _claim(tmp_path, tmp_path / "new-home", os.getpid())

    assert not podranges.release_pod_range(stale.path, home=stale.home)
    assert podranges.read_claim(stale.path) == winner
    assert not podranges.release_pod_range(tmp_path / "16", home=stale.home)  # never claimed


def test_claiming_when_every_range_is_held_is_refused(tmp_path: Path) -> None:
    candidates = podranges.CANDIDATE_POD_CIDRS[:3]
    for index in range(len(candidates)):
        podranges.claim_pod_range(
            claims_dir=tmp_path, home=tmp_path / f"home-{index}", pid=os.getpid(), candidates=candidates
        )

    with pytest.raises(podranges.PodRangesExhaustedError, match="every pod range is claimed"):
        podranges.claim_pod_range(
            claims_dir=tmp_path, home=tmp_path / "one-more", pid=os.getpid(), candidates=candidates
        )


def test_concurrent_claims_get_distinct_ranges(tmp_path: Path) -> None:
    count = 8
    claimed: list[podranges.PodRangeClaim] = []
    barrier = threading.Barrier(count)

    def claim(index: int) -> None:
        barrier.wait()
        claimed.append(_claim(tmp_path / "claims", tmp_path / f"home-{index}", os.getpid()))

    threads = [threading.Thread(target=claim, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(c.pod_cidr for c in claimed) == sorted(podranges.CANDIDATE_POD_CIDRS[:count])
    assert all(podranges.read_claim(c.path) == c for c in claimed)
