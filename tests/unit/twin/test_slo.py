"""SLO attainment so far: finished requests are judged, late ones already missed, the rest pending."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenscale.core.settings import SLO
from tokenscale.sim.cluster import RequestOutcomes
from tokenscale.twin.slo import slo_so_far

NAN = math.nan
# TokenScale's tiers: < 256 input tokens 0.25 s, < 1024 0.4 s, < 8192 2 s; TPOT 0.1 s.
SLO_DEFAULT = SLO()


def outcomes(*rows: tuple[float, int, int, float, float]) -> RequestOutcomes:
    """Rows of (arrival, input, output, first token, finish)."""
    columns = list(zip(*rows, strict=True))
    return RequestOutcomes(
        arrival_seconds=np.array(columns[0], dtype=np.float64),
        input_tokens=np.array(columns[1], dtype=np.int64),
        output_tokens=np.array(columns[2], dtype=np.int64),
        first_token_seconds=np.array(columns[3], dtype=np.float64),
        finish_seconds=np.array(columns[4], dtype=np.float64),
    )


@pytest.mark.parametrize(
    ("row", "now", "counts"),
    [
        # (attained, missed, pending)
        pytest.param((0.0, 100, 11, 0.2, 1.0), 5.0, (1, 0, 0), id="finished-within-both"),
        pytest.param((0.0, 100, 11, 0.3, 1.0), 5.0, (0, 1, 0), id="finished-ttft-late"),
        pytest.param((0.0, 100, 11, 0.2, 2.0), 5.0, (0, 1, 0), id="finished-tpot-late"),
        pytest.param((0.0, 100, 11, NAN, NAN), 0.2, (0, 0, 1), id="waiting-within-ttft"),
        pytest.param((0.0, 100, 11, NAN, NAN), 0.3, (0, 1, 0), id="waiting-past-ttft"),
        pytest.param((0.0, 2000, 11, 1.5, NAN), 1.6, (0, 0, 1), id="decoding-after-a-timely-first-token"),
        pytest.param((0.0, 2000, 11, 2.5, NAN), 2.6, (0, 1, 0), id="decoding-after-a-late-first-token"),
        pytest.param((9.0, 100, 11, NAN, NAN), 5.0, (0, 0, 0), id="not-arrived-yet"),
    ],
)
def test_each_request_is_attained_missed_or_pending(
    row: tuple[float, int, int, float, float], now: float, counts: tuple[int, int, int]
) -> None:
    tally = slo_so_far(outcomes=outcomes(row), slo=SLO_DEFAULT, now_seconds=now)
    assert (tally.attained, tally.missed, tally.pending) == counts


def test_attainment_is_over_decided_requests_and_final_counts_pending_as_missed() -> None:
    tally = slo_so_far(
        outcomes=outcomes(
            (0.0, 100, 11, 0.2, 1.0),  # attained
            (0.0, 100, 11, 0.2, 1.0),  # attained
            (0.0, 100, 11, 0.9, 1.5),  # missed (TTFT)
            (3.9, 100, 11, NAN, NAN),  # pending
        ),
        slo=SLO_DEFAULT,
        now_seconds=4.0,
    )
    assert tally.attainment == pytest.approx(2 / 3)
    assert tally.final_attainment == pytest.approx(2 / 4)
    assert (tally.finished, tally.ttft_attained, tally.tpot_attained) == (3, 2, 3)


def test_nothing_decided_has_no_attainment() -> None:
    tally = slo_so_far(outcomes=outcomes((0.0, 100, 11, NAN, NAN)), slo=SLO_DEFAULT, now_seconds=0.1)
    assert tally.attainment is None
    assert tally.final_attainment == 0.0
