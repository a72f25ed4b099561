"""Trace loaders, rescaling and the seeded synthetic generators."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tokenscale.sim import traces


@pytest.mark.parametrize(
    ("name", "rows", "first_input", "first_output", "span_seconds"),
    [
        # README of the bundled traces: 8,819 and 19,366 rows; spans 57.3 and 58.4 min; first rows 4808/10, 374/44.
        pytest.param("azure-code", 8_819, 4808, 10, 3435.95, id="code"),
        pytest.param("azure-conv", 19_366, 374, 44, 3501.72, id="conv"),
    ],
)
def test_bundled_azure_traces_load_every_row(
    name: str, rows: int, first_input: int, first_output: int, span_seconds: float
) -> None:
    trace = traces.load_trace(name)
    assert len(trace) == rows
    assert trace.arrival_seconds[0] == 0.0
    assert (trace.input_tokens[0], trace.output_tokens[0]) == (first_input, first_output)
    assert trace.span_seconds == pytest.approx(span_seconds, abs=0.01)
    assert np.all(np.diff(trace.arrival_seconds) >= 0)


def test_azure_timestamps_keep_the_seventh_fractional_digit(tmp_path: Path) -> None:
    path = tmp_path / "azure.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:17:03.9799600,10,1\n"
        "2023-11-16 18:17:04.0000001,20,2"  # no trailing newline, as upstream
    )
    trace = traces.load_azure_csv(path)
    assert trace.arrival_seconds[1] == pytest.approx(0.0200401, abs=1e-9)
    assert trace.input_tokens.tolist() == [10, 20]


def test_generic_csv_with_numeric_seconds_is_sorted_and_shifted(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("timestamp,input_tokens,output_tokens\n12.5,100,5\n10.0,200,7\n")
    trace = traces.load_trace(str(path))
    assert trace.name == "mine"
    assert trace.arrival_seconds.tolist() == [0.0, 2.5]
    assert trace.input_tokens.tolist() == [200, 100]
    assert trace.output_tokens.tolist() == [7, 5]


def test_jsonl_trace_loads_with_alias_keys(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    rows = [
        {"arrival_seconds": 1.0, "prompt_tokens": 30, "completion_tokens": 3},
        {"arrival_seconds": 4.0, "prompt_tokens": 40, "completion_tokens": 4},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    trace = traces.load_trace(str(path))
    assert trace.arrival_seconds.tolist() == [0.0, 3.0]
    assert trace.input_tokens.tolist() == [30, 40]


def test_missing_column_names_what_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("when,input_tokens,output_tokens\n1,2,3\n")
    with pytest.raises(ValueError, match="no timestamp column"):
        traces.load_trace(str(path))


def test_unknown_trace_lists_the_bundled_ones() -> None:
    with pytest.raises(ValueError, match="azure-code, azure-conv"):
        traces.load_trace("no-such-trace")


@pytest.fixture(scope="module")
def code() -> traces.Trace:
    return traces.load_trace("azure-code")


@pytest.mark.parametrize(
    "factor", [pytest.param(0.5, id="thin"), pytest.param(2.0, id="double"), pytest.param(3.5, id="fractional")]
)
def test_rate_scaling_multiplies_requests_and_keeps_span(code: traces.Trace, factor: float) -> None:
    scaled = traces.scale_rate(code, factor=factor, seed=7)
    assert len(scaled) == pytest.approx(factor * len(code), rel=0.02)
    assert scaled.span_seconds == code.span_seconds
    assert np.all(np.diff(scaled.arrival_seconds) >= 0)
    # The burst shape stays: per-minute request counts of the scaled trace follow the original's.
    bins = np.arange(0, code.span_seconds + 60, 60)
    original, _ = np.histogram(code.arrival_seconds, bins)
    rescaled, _ = np.histogram(scaled.arrival_seconds, bins)
    assert np.corrcoef(original, rescaled)[0, 1] > 0.95


def test_rate_scaling_is_reproducible_by_seed(code: traces.Trace) -> None:
    a = traces.scale_rate(code, factor=2.5, seed=1)
    b = traces.scale_rate(code, factor=2.5, seed=1)
    c = traces.scale_rate(code, factor=2.5, seed=2)
    assert np.array_equal(a.arrival_seconds, b.arrival_seconds)
    assert not np.array_equal(a.arrival_seconds, c.arrival_seconds[: len(a)]) or len(a) != len(c)


def test_time_compression_keeps_requests_and_divides_time(code: traces.Trace) -> None:
    fast = traces.compress_time(code, factor=4.0)
    assert len(fast) == len(code)
    assert fast.span_seconds == pytest.approx(code.span_seconds / 4)
    assert fast.arrival_seconds[100] == pytest.approx(code.arrival_seconds[100] / 4)


def test_truncate_keeps_arrivals_before_the_duration(code: traces.Trace) -> None:
    short = traces.truncate(code, duration_seconds=60.0)
    assert short.span_seconds == 60.0
    assert len(short) == int(np.sum(code.arrival_seconds < 60.0))


@pytest.mark.parametrize(
    ("make", "mean_rate"),
    [
        pytest.param(
            lambda seed: traces.poisson_trace(rate_per_second=20, duration_seconds=600, seed=seed), 20.0, id="poisson"
        ),
        # 60 s of every 300 s at 5x: mean = 10 * (240 + 300) / 300 = 18 req/s
        pytest.param(
            lambda seed: traces.burst_trace(
                base_rate_per_second=10,
                burst_factor=5,
                burst_seconds=60,
                period_seconds=300,
                duration_seconds=3000,
                seed=seed,
                first_burst_seconds=0,
            ),
            18.0,
            id="on-off-bursts",
        ),
        pytest.param(
            lambda seed: traces.diurnal_trace(
                mean_rate_per_second=15, amplitude=0.8, period_seconds=600, duration_seconds=1200, seed=seed
            ),
            15.0,
            id="diurnal",
        ),
    ],
)
def test_synthetic_generators_are_seeded_and_hit_their_rate(
    make: Callable[[int], traces.Trace], mean_rate: float
) -> None:
    a, b, c = make(3), make(3), make(4)
    assert np.array_equal(a.arrival_seconds, b.arrival_seconds)
    assert len(a) != len(c) or not np.array_equal(a.arrival_seconds, c.arrival_seconds)
    assert len(a) / a.span_seconds == pytest.approx(mean_rate, rel=0.05)


def test_bursts_run_at_k_times_the_base_rate() -> None:
    trace = traces.burst_trace(
        base_rate_per_second=10,
        burst_factor=8,
        burst_seconds=100,
        period_seconds=400,
        duration_seconds=4000,
        seed=11,
        first_burst_seconds=0,
    )
    phase = np.mod(trace.arrival_seconds, 400)
    on_rate = np.sum(phase < 100) / (10 * 100)
    off_rate = np.sum(phase >= 100) / (10 * 300)
    assert on_rate / off_rate == pytest.approx(8, rel=0.08)


def test_diurnal_peaks_mid_period() -> None:
    trace = traces.diurnal_trace(
        mean_rate_per_second=20, amplitude=0.9, period_seconds=1000, duration_seconds=1000, seed=5
    )
    counts, _ = np.histogram(trace.arrival_seconds, bins=10, range=(0, 1000))
    assert int(np.argmax(counts)) in (4, 5)
    assert counts[0] < counts[5] / 5


def test_synthetic_lengths_come_from_a_trace_in_pairs(code: traces.Trace) -> None:
    trace = traces.poisson_trace(rate_per_second=5, duration_seconds=100, seed=1, lengths_from=code)
    pairs = set(zip(code.input_tokens.tolist(), code.output_tokens.tolist(), strict=True))
    assert all(p in pairs for p in zip(trace.input_tokens.tolist(), trace.output_tokens.tolist(), strict=True))
