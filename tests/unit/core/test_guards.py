"""The shared guards, alone and in their documented order."""

from __future__ import annotations

import pytest

from tokenscale.core import guards, reasons
from tokenscale.core.settings import RoleBounds
from tokenscale.core.types import Role

History = guards.RecommendationHistory


def test_history_keeps_only_the_window() -> None:
    history = History().record(now_seconds=0, replicas=5, keep_seconds=10)
    history = history.record(now_seconds=8, replicas=3, keep_seconds=10)
    history = history.record(now_seconds=15, replicas=2, keep_seconds=10)
    assert history.entries == ((8, 3), (15, 2))
    assert history.highest_since(since_seconds=9) == 2
    assert history.highest_since(since_seconds=20) is None


@pytest.mark.parametrize(
    ("current", "proposed", "entries", "expected"),
    [
        pytest.param(4, 6, ((50.0, 2),), 6, id="scale-out-is-immediate"),
        # a recommendation of 5 at t=95 is inside the 10 s window: scale-in stops at 5
        pytest.param(8, 3, ((95.0, 5), (100.0, 3)), 5, id="scale-in-to-highest-in-window"),
        # 9 at t=95 is above current: hold at current, never above
        pytest.param(8, 3, ((95.0, 9), (100.0, 3)), 8, id="never-above-current"),
        pytest.param(8, 3, ((80.0, 9), (100.0, 3)), 3, id="old-recommendations-expire"),
    ],
)
def test_stabilize_scale_in(current: int, proposed: int, entries: tuple[tuple[float, int], ...], expected: int) -> None:
    got = guards.stabilize_scale_in(
        current=current, proposed=proposed, history=History(entries), now_seconds=100.0, stabilization_seconds=10.0
    )
    assert got == expected


@pytest.mark.parametrize(
    ("current", "proposed", "expected"),
    [
        pytest.param(4, 20, 7, id="up-by-at-most-3"),
        pytest.param(10, 1, 8, id="down-by-at-most-2"),
        pytest.param(4, 5, 5, id="small-change-passes"),
    ],
)
def test_limit_step(current: int, proposed: int, expected: int) -> None:
    assert guards.limit_step(current=current, proposed=proposed, max_up_step=3, max_down_step=2) == expected


@pytest.mark.parametrize(
    ("ratio", "inside"),
    [
        pytest.param(1.10, True, id="upper-edge-inside"),
        pytest.param(1.11, False, id="above-band"),
        pytest.param(0.85, True, id="lower-edge-inside"),
        pytest.param(0.84, False, id="below-band"),
    ],
)
def test_within_tolerance_band(ratio: float, inside: bool) -> None:
    assert guards.within_tolerance(ratio=ratio, tolerance_up=0.10, tolerance_down=0.15) is inside


@pytest.mark.parametrize(
    ("last", "elapsed"),
    [
        pytest.param(None, True, id="never-acted"),
        pytest.param(75.0, True, id="exactly-elapsed"),
        pytest.param(80.0, False, id="too-soon"),
    ],
)
def test_cooldown_elapsed(last: float | None, elapsed: bool) -> None:
    assert guards.cooldown_elapsed(now_seconds=105.0, last_seconds=last, cooldown_seconds=30.0) is elapsed


# bounds [2, 10], +4/-2 per tick, 30 s stabilisation; decisions at t=100
LIMITS = guards.GuardLimits(bounds=RoleBounds(2, 10), max_up_step=4, max_down_step=2, stabilization_seconds=30.0)


@pytest.mark.parametrize(
    ("current", "recommended", "history", "unknown", "expected", "codes"),
    [
        pytest.param(5, 5, (), False, 5, [], id="no-change"),
        # 7 was recommended at t=80: scale-in from 8 stops at 7, within the step
        pytest.param(8, 1, ((80.0, 7),), False, 7, [reasons.SCALE_IN_STABILIZED], id="stabilised"),
        # 5 recorded at t=90: stabilised to 5, then the step allows 8 - 2 = 6
        pytest.param(
            8,
            1,
            ((90.0, 5),),
            False,
            6,
            [reasons.SCALE_IN_STABILIZED, reasons.STEP_LIMITED],
            id="stabilised-then-stepped",
        ),
        pytest.param(
            8,
            1,
            ((90.0, 5),),
            True,
            8,
            [reasons.SCALE_IN_STABILIZED, reasons.SCALE_IN_BLOCKED_UNKNOWN_INPUT],
            id="unknown-input-blocks-scale-in",
        ),
        pytest.param(5, 7, (), True, 7, [], id="unknown-input-allows-scale-out"),
        pytest.param(3, 30, (), False, 7, [reasons.STEP_LIMITED], id="scale-out-stepped"),
        pytest.param(9, 30, (), False, 10, [reasons.STEP_LIMITED, reasons.BOUNDED_BY_MAX], id="max-bound-last"),
        pytest.param(2, 0, (), False, 2, [reasons.BOUNDED_BY_MIN], id="zero-recommendation-to-min"),
        pytest.param(14, 14, (), True, 10, [reasons.BOUNDED_BY_MAX], id="bounds-hold-even-with-unknown-input"),
    ],
)
def test_apply_guards_in_order(
    *,
    current: int,
    recommended: int,
    history: tuple[tuple[float, int], ...],
    unknown: bool,
    expected: int,
    codes: list[str],
) -> None:
    recorded = History(history).record(now_seconds=100.0, replicas=recommended, keep_seconds=30.0)
    final, found = guards.apply_guards(
        role=Role.DECODE,
        current=current,
        recommended=recommended,
        limits=LIMITS,
        history=recorded,
        now_seconds=100.0,
        input_partially_unknown=unknown,
    )
    assert final == expected
    assert [r.code for r in found] == codes
    assert all(r.role is Role.DECODE for r in found)
