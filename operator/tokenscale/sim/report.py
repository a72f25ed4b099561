"""Scoring a run: SLO attainment as in TokenScale, latency percentiles, cost, and the stable JSON record.

A request attains its SLO when both hold (algorithms.md §4.1): its TTFT is within the objective of its input-length
tier (first tier whose ``max_input_tokens`` exceeds its input; longer inputs use the last tier), and its mean
TPOT is within the TPOT objective. A request that never finished attains neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenscale.core.settings import SLO
from tokenscale.sim.cluster import RequestOutcomes

__all__ = ["Attainment", "attainment", "objectives_met", "percentile", "ttft_objectives_seconds"]


def ttft_objectives_seconds(*, slo: SLO, input_tokens: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Each request's TTFT objective by its input-length tier (vectorised `SLO.ttft_seconds_for`)."""
    bounds = np.array([bound for bound, _ in slo.ttft_tiers], dtype=np.int64)
    seconds = np.array([s for _, s in slo.ttft_tiers], dtype=np.float64)
    tier = np.minimum(np.searchsorted(bounds, input_tokens, side="right"), len(bounds) - 1)
    return seconds[tier]


@dataclass(frozen=True, slots=True)
class Attainment:
    """Shares 0–1 of requests meeting the TTFT objective, the TPOT objective, and both."""

    ttft: float
    tpot: float
    slo: float


def objectives_met(*, outcomes: RequestOutcomes, slo: SLO) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Per request: (TTFT within its tier's objective, TPOT within the objective); both false if unfinished."""
    finished = ~np.isnan(outcomes.finish_seconds)
    with np.errstate(invalid="ignore"):
        ttft_ok = (outcomes.ttft_seconds <= ttft_objectives_seconds(slo=slo, input_tokens=outcomes.input_tokens)) & (
            finished
        )
        tpot_ok = (outcomes.tpot_seconds <= slo.tpot_seconds) & finished
    return ttft_ok, tpot_ok


def attainment(*, outcomes: RequestOutcomes, slo: SLO) -> Attainment:
    if len(outcomes.arrival_seconds) == 0:
        return Attainment(ttft=1.0, tpot=1.0, slo=1.0)
    ttft_ok, tpot_ok = objectives_met(outcomes=outcomes, slo=slo)
    return Attainment(
        ttft=float(ttft_ok.mean()),
        tpot=float(tpot_ok.mean()),
        slo=float((ttft_ok & tpot_ok).mean()),
    )


def percentile(values: npt.NDArray[np.float64], q: float) -> float | None:
    """The ``q``-th percentile (0–100) of the finite values, linear interpolation; None when there are none."""
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, q)) if len(finite) else None
