"""Window maths: counter rates with resets, gauge growth, histogram deltas and quantiles, the arriving rate."""

from __future__ import annotations

import collections
import dataclasses
import math
import operator

import pytest
from tests.unit.core.helpers import sample

from tokenscale.core import windows
from tokenscale.core.types import Histogram

PROMPT = operator.attrgetter("prompt_tokens_total")
WAITING = operator.attrgetter("requests_waiting")
BOUNDS = (0.1, 0.5, 1.0, math.inf)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param([], 0.0, id="empty"),
        pytest.param([7.0], 0.0, id="single-value"),
        pytest.param([10.0, 15.0, 30.0], 20.0, id="monotonic-last-minus-first"),
        # 5 -> 8 (+3), reset to 2 (+2 from zero), 2 -> 4 (+2): 7
        pytest.param([5.0, 8.0, 2.0, 4.0], 7.0, id="one-reset-counts-from-zero"),
        # 100 -> 120 (+20), reset 10 (+10), reset 3 (+3), 3 -> 9 (+6): 39
        pytest.param([100.0, 120.0, 10.0, 3.0, 9.0], 39.0, id="two-resets"),
        pytest.param([50.0, 0.0], 0.0, id="reset-to-zero-adds-nothing"),
    ],
)
def test_counter_increase_counts_resets_from_zero(values: list[float], expected: float) -> None:
    assert windows.counter_increase(values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        # 1000 tokens in 10 s
        pytest.param([(0, 0.0), (5, 400.0), (10, 1000.0)], 100.0, id="steady"),
        # 0 -> 600 over 0..6 s, restart, 0 -> 400 over 6..10 s: 1000 / 10 s
        pytest.param([(0, 0.0), (6, 600.0), (7, 100.0), (10, 400.0)], 100.0, id="counter-reset"),
        pytest.param([(10, 1000.0)], None, id="one-sample-is-unknown"),
        pytest.param([(10, 1000.0), (10, 1000.0)], None, id="no-time-span-is-unknown"),
        # a sample without the counter is skipped: 0 at 0 s and 200 at 2 s
        pytest.param([(0, 0.0), (1, None), (2, 200.0)], 100.0, id="absent-field-skipped"),
        pytest.param([(0, None), (1, None)], None, id="never-exposed-is-unknown"),
    ],
)
def test_counter_rate(points: list[tuple[float, float | None]], expected: float | None) -> None:
    samples = [sample(t, prompt_tokens_total=v) for t, v in points]
    got = windows.counter_rate_per_second(samples=samples, value_of=PROMPT)
    assert got == (None if expected is None else pytest.approx(expected))


def test_gauge_growth_is_signed_change_over_span() -> None:
    # the queue falls from 12 to 2 over 5 s: -2 requests/s
    samples = [sample(0, requests_waiting=12.0), sample(5, requests_waiting=2.0)]
    assert windows.gauge_growth_per_second(samples=samples, value_of=WAITING) == pytest.approx(-2.0)


@pytest.mark.parametrize(
    ("now", "window", "expected_times"),
    [
        pytest.param(10.0, 10.0, [0.0, 1.0, 5.0, 9.0, 10.0], id="sample-exactly-one-window-ago-stays"),
        pytest.param(10.0, 5.0, [5.0, 9.0, 10.0], id="older-samples-dropped"),
        pytest.param(9.5, 1.0, [9.0], id="future-samples-dropped"),
        pytest.param(30.0, 10.0, [], id="all-too-old"),
    ],
)
def test_samples_in_window(now: float, window: float, expected_times: list[float]) -> None:
    samples = [sample(t) for t in (0.0, 1.0, 5.0, 9.0, 10.0)]
    got = windows.samples_in_window(samples=samples, now_seconds=now, window_seconds=window)
    assert [s.timestamp_seconds for s in got] == expected_times


def test_samples_in_window_accepts_a_bounded_deque() -> None:
    samples = collections.deque((sample(float(t)) for t in range(20)), maxlen=12)
    got = windows.samples_in_window(samples=samples, now_seconds=19.0, window_seconds=2.0)
    assert [s.timestamp_seconds for s in got] == [17.0, 18.0, 19.0]


def _hist(counts: tuple[float, ...], total: float, bounds: tuple[float, ...] = BOUNDS) -> Histogram:
    return Histogram(bounds, counts, total, counts[-1])


def test_histogram_delta_subtracts_first_from_last() -> None:
    first = _hist((1, 2, 3, 4), 2.0)
    last = _hist((3, 6, 8, 10), 5.0)
    delta = windows.histogram_delta([first, _hist((2, 3, 4, 5), 3.0), last])
    assert delta == Histogram(BOUNDS, (2, 4, 5, 6), 3.0, 6)


def test_histogram_delta_counts_a_reset_from_zero() -> None:
    # 10 observations before the restart (segment 4 -> 10: +6), then 3 after it: 9 in all
    before = _hist((1, 2, 3, 4), 1.0)
    peak = _hist((4, 6, 8, 10), 4.0)
    after = _hist((1, 2, 3, 3), 0.5)
    delta = windows.histogram_delta([before, peak, after])
    assert delta == Histogram(BOUNDS, (4, 6, 8, 9), 3.5, 9)


def test_histogram_delta_uses_only_the_newest_bounds() -> None:
    other = (0.2, math.inf)
    old = _hist((100, 200), 50.0, other)
    delta = windows.histogram_delta([old, _hist((1, 1, 1, 1), 0.1), _hist((2, 2, 3, 3), 0.3)])
    assert delta == Histogram(BOUNDS, (1, 1, 2, 2), pytest.approx(0.2), 2)


_A = _hist((1, 2, 3, 4), 2.0)
_B = _hist((3, 6, 8, 10), 5.0)


@pytest.mark.parametrize(
    ("histograms", "expected"),
    [
        pytest.param([_A, _A, _A], Histogram(BOUNDS, (0, 0, 0, 0), 0.0, 0), id="one-object-repeated-is-zero"),
        pytest.param([_A, _A, _B, _B], Histogram(BOUNDS, (2, 4, 5, 6), 3.0, 6), id="repeats-on-both-sides"),
        # A, B, A again: the count falls after B, a reset; the second A counts from 0 (6 + 4 = 10)
        pytest.param([_A, _B, _A], Histogram(BOUNDS, (3, 6, 8, 10), 5.0, 10), id="same-object-after-a-reset"),
    ],
)
def test_histogram_delta_of_reused_objects_equals_that_of_copies(
    histograms: list[Histogram], expected: Histogram
) -> None:
    copies = [dataclasses.replace(h) for h in histograms]
    assert windows.histogram_delta(histograms) == expected
    assert windows.histogram_delta(copies) == expected


def test_histogram_delta_of_one_histogram_is_unknown() -> None:
    assert windows.histogram_delta([_hist((1, 1, 1, 1), 0.1)]) is None


def test_merge_sums_matching_bounds_and_skips_others() -> None:
    merged = windows.merge_histograms(
        [_hist((1, 1, 2, 2), 1.0), None, _hist((0, 1, 1, 3), 2.0), _hist((5, 5), 9.0, (1.0, math.inf))]
    )
    assert merged == Histogram(BOUNDS, (1, 2, 3, 5), 3.0, 5)


@pytest.mark.parametrize(
    ("counts", "quantile", "expected"),
    [
        # 10 observations, 5 <= 0.1 and 10 <= 0.5: p90 rank 9 is 4/5 into (0.1, 0.5] -> 0.1 + 0.4 * 0.8 = 0.42
        pytest.param((5, 10, 10, 10), 0.9, 0.42, id="interpolates-within-bucket"),
        # rank 2.5 of 5 in the first bucket [0, 0.1] -> 0.05
        pytest.param((5, 10, 10, 10), 0.25, 0.05, id="lowest-bucket-starts-at-zero"),
        # rank 9 lies in +Inf: the highest finite bound
        pytest.param((1, 2, 3, 10), 0.9, 1.0, id="inf-bucket-gives-highest-finite-bound"),
        pytest.param((0, 0, 0, 0), 0.9, None, id="empty-is-unknown"),
    ],
)
def test_histogram_quantile(counts: tuple[float, ...], quantile: float, expected: float | None) -> None:
    got = windows.histogram_quantile(quantile=quantile, histogram=_hist(counts, 1.0))
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("processed", "growth", "mean", "expected"),
    [
        pytest.param(20_000.0, 0.0, 1000.0, 20_000.0, id="steady-state-is-processed-rate"),
        # 5 more requests wait each second, 1000 tokens each: +5000
        pytest.param(20_000.0, 5.0, 1000.0, 25_000.0, id="growing-queue-adds-its-tokens"),
        # the queue drains 4 req/s: arrivals are 20k - 4k
        pytest.param(20_000.0, -4.0, 1000.0, 16_000.0, id="draining-queue-subtracts"),
        pytest.param(1_000.0, -4.0, 1000.0, 0.0, id="never-negative"),
        pytest.param(0.0, 0.0, 1000.0, 0.0, id="zero-load"),
    ],
)
def test_arriving_rate_is_processed_plus_queue_growth(
    processed: float, growth: float, mean: float, expected: float
) -> None:
    got = windows.arriving_tokens_per_second(
        processed_tokens_per_second=processed, waiting_growth_requests_per_second=growth, mean_prompt_tokens=mean
    )
    assert got == pytest.approx(expected)
