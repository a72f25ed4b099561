"""Window maths over one pod's engine samples: counter rates, gauge growth, histogram deltas and quantiles.

All functions are pure; time is the samples' own ``timestamp_seconds`` and the caller's ``now_seconds``.
``None`` means *unknown* (too few samples, a field the engine does not expose), never zero.

Counters (``*_total``) are cumulative since engine start and fall back to 0 when the engine restarts. Over a
window the increase is the sum over *reset segments* (maximal runs of non-decreasing values) of each segment's
last value, minus the window's first value: a value that drops starts a new segment counted from 0, as
Prometheus' ``increase()`` does. Histograms are cumulative counters per bucket and get the same treatment,
with a reset detected by their ``count`` falling (or their bucket bounds changing: only the trailing run with the
newest bounds is used).

The arriving prompt-token rate is `arriving_tokens_per_second`; its error terms are in its docstring and in
docs/algorithms.md §Windows.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Sequence

from tokenscale.core.types import EngineSample, Histogram

__all__ = [
    "arriving_tokens_per_second",
    "counter_increase",
    "counter_rate_per_second",
    "gauge_growth_per_second",
    "histogram_delta",
    "histogram_mean",
    "histogram_quantile",
    "merge_histograms",
    "samples_in_window",
]

_EPSILON_SECONDS = 1e-9
"""Slack on window edges, so that a sample taken exactly one window ago (ticks aligned) stays inside."""


def _timestamp(sample: EngineSample) -> float:
    return sample.timestamp_seconds


def samples_in_window(
    *, samples: Sequence[EngineSample], now_seconds: float, window_seconds: float
) -> Sequence[EngineSample]:
    """The samples (ascending by time) with ``now - window <= timestamp <= now``, found by bisection.

    Any indexable sequence works, a ``collections.deque`` with ``maxlen`` included (it cannot be sliced).
    """
    low = bisect.bisect_left(samples, now_seconds - window_seconds - _EPSILON_SECONDS, key=_timestamp)
    high = bisect.bisect_right(samples, now_seconds + _EPSILON_SECONDS, key=_timestamp)
    return list(itertools.islice(samples, low, high))


def counter_increase(values: Sequence[float]) -> float:
    """Increase of a cumulative counter over ``values`` (ascending time), counting resets from 0.

    ``increase = Σ_segments last(segment) − values[0]``; e.g. 5, 8, 2, 4 → (8 − 5) + (4 − 0) = 7.
    Empty or single values give 0.
    """
    if not values:
        return 0.0
    first = previous = values[0]
    total = 0.0
    for value in values[1:]:
        if value < previous:
            total += previous
        previous = value
    return total + previous - first


def counter_rate_per_second(
    *, samples: Sequence[EngineSample], value_of: Callable[[EngineSample], float | None]
) -> float | None:
    """Per-second increase of a counter over ``samples``: `counter_increase` ÷ (last − first timestamp).

    Samples where the counter is absent are skipped; ``None`` when fewer than two remain or they span no time.
    """
    points = [(s.timestamp_seconds, v) for s in samples if (v := value_of(s)) is not None]
    if len(points) < 2:
        return None
    span = points[-1][0] - points[0][0]
    if span <= 0:
        return None
    return counter_increase([v for _, v in points]) / span


def gauge_growth_per_second(
    *, samples: Sequence[EngineSample], value_of: Callable[[EngineSample], float | None]
) -> float | None:
    """(last − first) ÷ (last − first timestamp) of a gauge; negative when it shrinks; ``None`` as above."""
    points = [(s.timestamp_seconds, v) for s in samples if (v := value_of(s)) is not None]
    if len(points) < 2:
        return None
    span = points[-1][0] - points[0][0]
    if span <= 0:
        return None
    return (points[-1][1] - points[0][1]) / span


def histogram_delta(histograms: Sequence[Histogram]) -> Histogram | None:
    """What a cumulative histogram observed over ``histograms`` (ascending time), resets counted from 0.

    Only the trailing run with the newest bucket bounds is used (bounds that change mean a reconfigured engine).
    A reset is a falling ``count``; per bucket the increase is ``Σ_segments last − first`` as for counters.
    ``None`` when fewer than two histograms share the newest bounds.

    A scraper that reuses the very same object for an unchanged histogram (the simulator does) makes consecutive
    repeats free: they are skipped by identity, and a window of one object gives the zero delta at once.
    """
    if not histograms:
        return None
    newest = histograms[-1]
    bounds = newest.bucket_upper_bounds
    # Walk back over the trailing run with the newest bounds, keeping each distinct object once (newest first).
    distinct = [newest]
    start = len(histograms) - 1
    for index in range(start - 1, -1, -1):
        histogram = histograms[index]
        if histogram is not distinct[-1]:
            earlier = histogram.bucket_upper_bounds
            if earlier is not bounds and earlier != bounds:
                break
            distinct.append(histogram)
        start = index
    if start == len(histograms) - 1:
        return None
    if len(distinct) == 1:
        return Histogram(bounds, (0.0,) * len(bounds), 0.0, 0.0)
    distinct.reverse()
    first = distinct[0]
    segment_lasts: list[Histogram] = []
    previous = first
    for histogram in itertools.islice(distinct, 1, None):
        if histogram.count < previous.count:
            segment_lasts.append(previous)
        previous = histogram
    segment_lasts.append(previous)
    if len(segment_lasts) == 1:
        last = segment_lasts[0]
        # Same bounds, so same lengths; `map` over `operator.sub` keeps the per-bucket loop in C (a tick does this
        # for every histogram of every pod).
        counts = tuple(map(operator.sub, last.cumulative_counts, first.cumulative_counts))
        return Histogram(bounds, counts, last.sum - first.sum, last.count - first.count)
    counts = tuple(
        sum(column) - first_count
        for first_count, column in zip(
            first.cumulative_counts, zip(*(h.cumulative_counts for h in segment_lasts), strict=True), strict=True
        )
    )
    return Histogram(
        bounds,
        counts,
        sum(h.sum for h in segment_lasts) - first.sum,
        sum(h.count for h in segment_lasts) - first.count,
    )


def merge_histograms(histograms: Iterable[Histogram | None]) -> Histogram | None:
    """Bucket-wise sum of the histograms sharing the first one's bounds; others and ``None`` are skipped."""
    merged: Histogram | None = None
    counts: list[float] = []
    total_sum = total_count = 0.0
    for histogram in histograms:
        if histogram is None:
            continue
        if merged is None:
            merged = histogram
            counts = list(histogram.cumulative_counts)
        elif histogram.bucket_upper_bounds == merged.bucket_upper_bounds:
            counts = [a + b for a, b in zip(counts, histogram.cumulative_counts, strict=True)]
        else:
            continue
        total_sum += histogram.sum
        total_count += histogram.count
    if merged is None:
        return None
    return Histogram(merged.bucket_upper_bounds, tuple(counts), total_sum, total_count)


def histogram_quantile(*, quantile: float, histogram: Histogram | None) -> float | None:
    """The ``quantile`` (0–1) of a (delta) histogram, as Prometheus' ``histogram_quantile`` computes it.

    Rank ``q·count`` is located in the first bucket whose cumulative count reaches it and interpolated linearly
    between that bucket's bounds (the lowest bucket starts at 0). A rank in the ``+Inf`` bucket gives the highest
    finite bound. ``None`` for an empty histogram.
    """
    if histogram is None or histogram.count <= 0 or not histogram.bucket_upper_bounds:
        return None
    bounds = histogram.bucket_upper_bounds
    counts = histogram.cumulative_counts
    rank = quantile * counts[-1] if counts[-1] > 0 else quantile * histogram.count
    index = bisect.bisect_left(counts, rank)
    index = min(index, len(bounds) - 1)
    if math.isinf(bounds[index]):
        return bounds[index - 1] if index > 0 else None
    lower_bound = bounds[index - 1] if index > 0 else 0.0
    lower_count = counts[index - 1] if index > 0 else 0.0
    in_bucket = counts[index] - lower_count
    if in_bucket <= 0:
        return bounds[index]
    return lower_bound + (bounds[index] - lower_bound) * (rank - lower_count) / in_bucket


def histogram_mean(histogram: Histogram | None) -> float | None:
    """``sum / count`` of a (delta) histogram; ``None`` when it is empty."""
    if histogram is None or histogram.count <= 0:
        return None
    return histogram.sum / histogram.count


def arriving_tokens_per_second(
    *,
    processed_tokens_per_second: float,
    waiting_growth_requests_per_second: float,
    mean_prompt_tokens: float,
) -> float:
    """Prompt tokens/s arriving = processed prompt tokens/s + growth of the waiting queue × mean prompt length.

    ``λ_in = r_proc + (ΔQ/Δt)·L̄``, floored at 0. Requests either finished their prefill within the window
    (counted in ``r_proc``) or still wait (counted in the queue's growth), so a burst shows before it is
    processed. Errors, all zero in a steady state:

    - *length*: waiting requests are priced at the mean length of the processed ones; the error is
      ``(ΔQ/Δt)·(L̄_waiting − L̄_processed)``;
    - *in flight*: requests being prefilled (chunked) or whose KV is in transfer at the window's edges are in
      neither term; the error is the change of in-flight prompt tokens over the window ÷ its span, at most one
      step's batch (``max_num_batched_tokens``) per pod ÷ span;
    - *lag*: engines count prompt tokens at the first token, so ``r_proc`` trails arrivals by the prefill time;
    - *window*: the result is the mean arrival rate over the window, so a step in load shows as a ramp over it
      (hence the short recent window as well);
    - *aborts*: a request that leaves the queue unprocessed lowers the estimate by its length ÷ span.
    """
    return max(0.0, processed_tokens_per_second + waiting_growth_requests_per_second * mean_prompt_tokens)
