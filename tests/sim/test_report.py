"""SLO tiers and attainment as in TokenScale: TTFT by input-length tier and TPOT, both must hold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenscale.core.settings import SLO
from tokenscale.sim.cluster import RequestOutcomes
from tokenscale.sim.report import attainment, percentile, ttft_objectives_seconds


@pytest.mark.parametrize(
    ("input_tokens", "ttft_seconds"),
    [
        pytest.param(1, 0.25, id="shortest"),
        pytest.param(255, 0.25, id="below-256"),
        pytest.param(256, 0.4, id="256-moves-to-the-second-tier"),
        pytest.param(1023, 0.4, id="below-1024"),
        pytest.param(1024, 2.0, id="1024-moves-to-the-third-tier"),
        pytest.param(8191, 2.0, id="below-8192"),
        pytest.param(8192, 2.0, id="at-the-last-bound-uses-the-last-tier"),
        pytest.param(14_050, 2.0, id="longest-conv-request-uses-the-last-tier"),
    ],
)
def test_ttft_tier_by_input_length(input_tokens: int, ttft_seconds: float) -> None:
    slo = SLO()
    got = ttft_objectives_seconds(slo=slo, input_tokens=np.array([input_tokens]))
    assert got[0] == ttft_seconds == slo.ttft_seconds_for(input_tokens=input_tokens)


def _outcomes(rows: list[tuple[int, int, float, float]]) -> RequestOutcomes:
    """Rows of (input tokens, output tokens, TTFT, finish − first token), arrivals at 0; nan = never."""
    inputs, outputs, ttft, decode = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    return RequestOutcomes(
        arrival_seconds=np.zeros(len(rows)),
        input_tokens=inputs.astype(np.int64),
        output_tokens=outputs.astype(np.int64),
        first_token_seconds=ttft,
        finish_seconds=ttft + decode,
    )


def test_attainment_needs_both_objectives() -> None:
    outcomes = _outcomes(
        [
            (100, 11, 0.20, 0.5),  # TTFT 0.2 <= 0.25, TPOT 0.05: meets both
            (100, 11, 0.30, 0.5),  # TTFT 0.3 > 0.25: misses TTFT
            (2000, 11, 1.0, 1.5),  # TPOT 0.15 > 0.1: misses TPOT
            (2000, 1, 1.9, 0.0),  # one output token: no TPOT to miss
            (500, 11, math.nan, math.nan),  # never finished: misses both
        ]
    )
    scores = attainment(outcomes=outcomes, slo=SLO())
    assert scores.ttft == pytest.approx(3 / 5)
    assert scores.tpot == pytest.approx(3 / 5)
    assert scores.slo == pytest.approx(2 / 5)


def test_percentile_ignores_unfinished_requests() -> None:
    values = np.array([1.0, 2.0, 3.0, math.nan])
    assert percentile(values, 50) == 2.0
    assert percentile(np.array([math.nan]), 99) is None
