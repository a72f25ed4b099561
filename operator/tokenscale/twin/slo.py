"""SLO attainment so far, while requests are still arriving and running.

A request's outcome is *decided* once it can no longer change: it finished (attained when its TTFT is within its
tier's objective and its mean TPOT within the TPOT objective, as in `tokenscale.sim.report`), or its TTFT has
already missed the objective (no first token by then, or a late one). Every other arrived request is *pending*.
Attainment so far is attained / decided; at the end of a run the pending ones can be counted as missed
(`SloSoFar.final_attainment`), as the simulator's report counts requests that never finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokenscale.core.settings import SLO
from tokenscale.sim.cluster import RequestOutcomes
from tokenscale.sim.report import ttft_objectives_seconds

__all__ = ["SloSoFar", "slo_so_far"]


@dataclass(frozen=True, slots=True)
class SloSoFar:
    """Counts of arrived requests by outcome, and the TTFT and TPOT shares among the finished ones."""

    attained: int
    missed: int
    pending: int
    ttft_attained: int
    tpot_attained: int
    finished: int

    @property
    def decided(self) -> int:
        return self.attained + self.missed

    @property
    def attainment(self) -> float | None:
        """Attained over decided requests; None before any is decided."""
        return self.attained / self.decided if self.decided else None

    @property
    def final_attainment(self) -> float | None:
        """Attained over every arrived request (pending ones count as missed); None before any arrived."""
        arrived = self.decided + self.pending
        return self.attained / arrived if arrived else None


def slo_so_far(*, outcomes: RequestOutcomes, slo: SLO, now_seconds: float) -> SloSoFar:
    """Outcomes of the requests that arrived by ``now_seconds`` (times in the model's seconds)."""
    arrived = outcomes.arrival_seconds <= now_seconds
    arrival = outcomes.arrival_seconds[arrived]
    first = outcomes.first_token_seconds[arrived]
    finish = outcomes.finish_seconds[arrived]
    objective = ttft_objectives_seconds(slo=slo, input_tokens=outcomes.input_tokens[arrived])
    finished = ~np.isnan(finish)
    with np.errstate(invalid="ignore"):
        ttft_ok = (first - arrival) <= objective  # False while no first token (nan)
        tpot_ok = outcomes.tpot_seconds[arrived] <= slo.tpot_seconds
    ttft_missed = np.where(np.isnan(first), now_seconds - arrival > objective, ~ttft_ok)
    attained = finished & ttft_ok & tpot_ok
    missed = ttft_missed | (finished & ~attained)
    return SloSoFar(
        attained=int(attained.sum()),
        missed=int(missed.sum()),
        pending=int((~attained & ~missed).sum()),
        ttft_attained=int((finished & ttft_ok).sum()),
        tpot_attained=int((finished & tpot_ok).sum()),
        finished=int(finished.sum()),
    )
