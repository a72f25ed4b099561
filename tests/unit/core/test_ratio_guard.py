"""The ratio guard: a group's larger role withdraws its newest Ready pods until the other role catches up."""

from __future__ import annotations

import pytest

from tokenscale.core import ratio_guard
from tokenscale.core.ratio_guard import GroupPod
from tokenscale.core.types import Role


def _pod(name: str, role: Role, since: float | None = 0.0, **fields: object) -> GroupPod:
    defaults: dict[str, object] = {"ready": since is not None, "tokens_per_second": 10.0}
    defaults.update(fields)
    return GroupPod(name=name, role=role, ready_since_seconds=since, **defaults)  # type: ignore[arg-type]


P, D = Role.PREFILL, Role.DECODE


@pytest.mark.parametrize(
    ("pods", "target", "withdraw", "rejoin"),
    [
        # Target 1:1 ±50%: 3 prefill against 1 decode (3.0) is past 1.5; the oldest prefill serves, p2 and p3 wait.
        pytest.param(
            [_pod("p1", P, 1), _pod("p2", P, 2), _pod("p3", P, 3), _pod("d1", D, 1)],
            1.0,
            ("p2", "p3"),
            (),
            id="prefill-ahead-withdraws-its-newest",
        ),
        # Decode caught up (2 Ready): 3:2 = 1.5 is within the bound, so the withdrawn prefill rejoins.
        pytest.param(
            [
                _pod("p1", P, 1),
                _pod("p2", P, 2, withdrawn=True),
                _pod("p3", P, 3, withdrawn=True),
                _pod("d1", D, 1),
                _pod("d2", D, 9),
            ],
            1.0,
            (),
            ("p2", "p3"),
            id="other-role-caught-up-rejoins",
        ),
        # Target 1:2 (one prefiller per two decoders), 1:4 Ready: decode is 2× over; bound (1+0.5)·2 = 3 decoders.
        pytest.param(
            [_pod("p1", P, 1)] + [_pod(f"d{i}", D, i) for i in range(1, 5)],
            0.5,
            ("d4",),
            (),
            id="decode-ahead-withdraws-its-newest",
        ),
        pytest.param(
            [_pod("p1", P, 1), _pod("p2", P, 2), _pod("d1", D, 1), _pod("d2", D, 2)],
            1.0,
            (),
            (),
            id="within-tolerance-nothing",
        ),
        # No Ready decoder yet: one prefiller (the oldest) keeps serving, the group is never dark.
        pytest.param(
            [_pod("p1", P, 5), _pod("p2", P, 1), _pod("d1", D, None)], 1.0, ("p1",), (), id="other-role-not-ready"
        ),
        # Not-Ready pods are neither counted nor touched, withdrawn or not.
        pytest.param(
            [_pod("p1", P, 1), _pod("p2", P, None, withdrawn=True), _pod("d1", D, 1)],
            1.0,
            (),
            (),
            id="not-ready-left-alone",
        ),
    ],
)
def test_larger_role_serves_oldest_first_within_the_tolerance(
    pods: list[GroupPod], target: float, withdraw: tuple[str, ...], rejoin: tuple[str, ...]
) -> None:
    changes = ratio_guard.balance_group(group="s2-a", pods=pods, target_ratio=target, tolerance=0.5)

    assert changes.withdraw == withdraw
    assert changes.rejoin == rejoin
    codes = {r.code for r in changes.reasons}
    assert (ratio_guard.RATIO_WITHDRAW in codes) == bool(withdraw)
    assert (ratio_guard.RATIO_REJOIN in codes) == bool(rejoin)


def test_capacities_not_counts_decide_with_mixed_gpu_types() -> None:
    # One fast prefiller (30k) against three slow decoders (10k each): 30k:30k is exactly the 1:1 target.
    pods = [_pod("p1", P, 1, tokens_per_second=30.0)] + [_pod(f"d{i}", D, i) for i in range(1, 4)]

    changes = ratio_guard.balance_group(group="g", pods=pods, target_ratio=1.0, tolerance=0.1)

    assert changes == ratio_guard.RatioChanges()


def test_protected_pods_count_but_are_never_withdrawn() -> None:
    # A converted decoder (protected) and two plain ones against one prefiller, target 1:1 ±0%: the decode bound is
    # one decoder's capacity, which the protected pod fills, so both plain decoders wait and the protected one serves.
    pods = [_pod("p1", P, 1), _pod("c1", D, 9, protected=True), _pod("d1", D, 1), _pod("d2", D, 2)]

    changes = ratio_guard.balance_group(group="g", pods=pods, target_ratio=1.0, tolerance=0.0)

    assert changes.withdraw == ("d1", "d2")


@pytest.mark.parametrize(
    ("target", "tolerance"),
    [pytest.param(0.0, 0.1, id="zero-target"), pytest.param(1.0, -0.1, id="negative-tolerance")],
)
def test_invalid_targets_are_refused(target: float, tolerance: float) -> None:
    with pytest.raises(ValueError, match="target ratio"):
        ratio_guard.balance_group(group="g", pods=[], target_ratio=target, tolerance=tolerance)
