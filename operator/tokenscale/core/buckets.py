"""Per-bucket token arrival rates on TokenScale's 3×3 grid, from the engines' request-length histograms.

Engines expose the *marginal* distributions of prompt and generation lengths (vLLM's
``request_prompt_tokens`` and ``request_generation_tokens`` histograms), whose bounds (1, 2, 5, 10, …) do
not line up with the grid's edges. `length_shares` spreads each histogram bucket over the grid buckets it
overlaps, assuming lengths uniform within it, and rescales the token mass so that it adds up to the
histogram's exact ``sum``. An `OutputLengthPredictor` turns an input bucket and the observed outputs into the
output-length shares of that input bucket; `bucket_token_rates` then gives each grid bucket's (input + predicted
output) token arrival rate λ_b (algorithms.md §1.4, [secondary] per-bucket form, [reconstructed] the rest).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Protocol

from tokenscale.core.types import Histogram

__all__ = [
    "MARGINAL_PREDICTOR",
    "LengthShares",
    "MarginalOutputPredictor",
    "OutputLengthPredictor",
    "bucket_token_rates",
    "length_shares",
    "point_shares",
]

_ROWS = 3


@dataclass(frozen=True, slots=True)
class LengthShares:
    """How requests spread over the three length buckets of one axis of the grid.

    ``request_shares`` add up to 1; ``mean_tokens[k]`` is the mean length of the requests in bucket k (the
    grid's representative length where the bucket is empty).
    """

    request_shares: tuple[float, float, float]
    mean_tokens: tuple[float, float, float]


class OutputLengthPredictor(Protocol):
    """Predicts the output lengths of the requests of one input bucket."""

    def predict(self, *, input_bucket: int, outputs: LengthShares) -> LengthShares:
        """Output-length shares of requests in ``input_bucket`` (0–2), given the observed ``outputs``."""
        ...


@dataclass(frozen=True, slots=True)
class MarginalOutputPredictor:
    """Output length independent of input length: every input bucket gets the observed output shares.

    The best that marginal histograms support; a per-request predictor (the paper's 85%-accurate one) plugs in
    behind the same interface.
    """

    def predict(self, *, input_bucket: int, outputs: LengthShares) -> LengthShares:
        del input_bucket
        return outputs


MARGINAL_PREDICTOR = MarginalOutputPredictor()


def point_shares(
    *, tokens: float, edges_tokens: tuple[int, int], representative_tokens: tuple[float, ...]
) -> LengthShares:
    """All requests in the bucket of one length ``tokens`` (when no histogram is available)."""
    index = bisect.bisect_right(edges_tokens, tokens)
    shares = [0.0, 0.0, 0.0]
    shares[index] = 1.0
    means = [representative_tokens[0], representative_tokens[1], representative_tokens[2]]
    means[index] = tokens
    return LengthShares((shares[0], shares[1], shares[2]), (means[0], means[1], means[2]))


def length_shares(
    *, histogram: Histogram | None, edges_tokens: tuple[int, int], representative_tokens: tuple[float, ...]
) -> LengthShares | None:
    """Request shares and mean lengths per grid bucket from a (delta) length histogram; ``None`` when empty.

    A histogram bucket ``(lo, hi]`` holding ``c`` requests gives each grid bucket ``[g_k, g_k+1)`` the count
    ``c·|overlap|/(hi − lo)`` and the token mass ``count·midpoint(overlap)``; the ``+Inf`` bucket goes whole to
    the grid bucket of ``lo`` at mass ``c·lo``. The masses are then scaled by ``sum / Σ mass`` so that they match
    the histogram's exact token sum.
    """
    if histogram is None or histogram.count <= 0:
        return None
    grid = (0.0, float(edges_tokens[0]), float(edges_tokens[1]), math.inf)
    counts = [0.0, 0.0, 0.0]
    masses = [0.0, 0.0, 0.0]
    lower = 0.0
    previous_cumulative = 0.0
    for upper, cumulative in zip(histogram.bucket_upper_bounds, histogram.cumulative_counts, strict=True):
        in_bucket = cumulative - previous_cumulative
        previous_cumulative = cumulative
        if in_bucket > 0:
            if math.isinf(upper):
                index = bisect.bisect_right(edges_tokens, lower)
                counts[index] += in_bucket
                masses[index] += in_bucket * lower
            else:
                width = upper - lower
                for k in range(_ROWS):
                    start, end = max(lower, grid[k]), min(upper, grid[k + 1])
                    if end > start and width > 0:
                        share = in_bucket * (end - start) / width
                        counts[k] += share
                        masses[k] += share * (start + end) / 2.0
        lower = upper
    total_count = sum(counts)
    total_mass = sum(masses)
    if total_count <= 0:
        return None
    scale = histogram.sum / total_mass if total_mass > 0 and histogram.sum > 0 else 1.0
    shares = tuple(c / total_count for c in counts)
    means = tuple(masses[k] * scale / counts[k] if counts[k] > 0 else representative_tokens[k] for k in range(_ROWS))
    return LengthShares((shares[0], shares[1], shares[2]), (means[0], means[1], means[2]))


def bucket_token_rates(
    *,
    arriving_requests_per_second: float,
    inputs: LengthShares,
    outputs: LengthShares,
    predictor: OutputLengthPredictor = MARGINAL_PREDICTOR,
) -> tuple[float, ...]:
    """λ_b for the nine buckets (row-major by input): request rate × share × (input + predicted output tokens).

    ``λ_(i,j) = R · p_in(i) · p_out(j | i) · (L̄_in(i) + L̄_out(j | i))``, where ``p_out(·|i)`` and ``L̄_out(·|i)``
    come from ``predictor``. With the marginal predictor, ``Σ_j`` of the input part is ``R·p_in(i)·L̄_in(i)``, so
    the input tokens of all buckets add up to ``R·L̄_in``: the arriving prompt-token rate.
    """
    rates: list[float] = []
    for row in range(_ROWS):
        predicted = predictor.predict(input_bucket=row, outputs=outputs)
        row_rate = arriving_requests_per_second * inputs.request_shares[row]
        for column in range(_ROWS):
            rates.append(
                row_rate * predicted.request_shares[column] * (inputs.mean_tokens[row] + predicted.mean_tokens[column])
            )
    return tuple(rates)
