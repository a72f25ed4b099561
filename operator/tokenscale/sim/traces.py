"""Request traces: the bundled Azure LLM inference traces, any CSV/JSONL trace, synthetic generators, rescaling.

A `Trace` is three aligned arrays: arrival time (seconds from the first request, ascending), input (prompt) tokens
and output (generated) tokens. Loaders normalise every source to that form, so the cluster model never sees a
file format. Generators are seeded (`numpy.random.default_rng`) so the same arguments give the same trace.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = [
    "BUNDLED_TRACES",
    "Trace",
    "bundled_trace_names",
    "burst_trace",
    "compress_time",
    "diurnal_trace",
    "load_azure_csv",
    "load_trace",
    "load_trace_file",
    "poisson_trace",
    "scale_rate",
    "truncate",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BUNDLED_TRACES: dict[str, str] = {
    "azure-code": "AzureLLMInferenceTrace_code.csv",
    "azure-conv": "AzureLLMInferenceTrace_conv.csv",
}
"""Bundled trace names and their files in ``tokenscale/sim/data/traces/`` (CC-BY 4.0, see the README there)."""

# Column names accepted by the generic loader, first match wins. The Azure names come first.
_TIME_COLUMNS = ("TIMESTAMP", "timestamp", "arrival_seconds", "arrival_time", "time", "ts")
_INPUT_COLUMNS = ("ContextTokens", "input_tokens", "prompt_tokens", "input_length", "input")
_OUTPUT_COLUMNS = (
    "GeneratedTokens",
    "output_tokens",
    "completion_tokens",
    "generated_tokens",
    "output_length",
    "output",
)


@dataclass(frozen=True, eq=False)
class Trace:
    """A request trace: ``arrival_seconds[i]``, ``input_tokens[i]``, ``output_tokens[i]`` of request ``i``.

    Arrivals ascend from 0 (a file trace's first request is at 0; a synthetic one's wherever it fell).
    ``span_seconds`` is the length of time the trace covers (at least the last arrival); a truncated or synthetic
    trace keeps its nominal span even if its tail is empty.
    """

    name: str
    arrival_seconds: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    span_seconds: float

    def __post_init__(self) -> None:
        n = len(self.arrival_seconds)
        if len(self.input_tokens) != n or len(self.output_tokens) != n:
            raise ValueError("trace arrays differ in length")
        if n and np.any(np.diff(self.arrival_seconds) < 0):
            raise ValueError("trace arrivals must ascend")
        if n and (self.input_tokens.min() < 1 or self.output_tokens.min() < 1):
            raise ValueError("every request needs at least one input and one output token")

    def __len__(self) -> int:
        return len(self.arrival_seconds)

    def rename(self, name: str) -> Trace:
        return Trace(name, self.arrival_seconds, self.input_tokens, self.output_tokens, self.span_seconds)


def _make(name: str, seconds: FloatArray, inputs: Iterable[int], outputs: Iterable[int]) -> Trace:
    """Sort by arrival (stable, so equal times keep file order) and shift the first arrival to 0."""
    times = np.asarray(seconds, dtype=np.float64)
    ins = np.fromiter(inputs, dtype=np.int64, count=len(times))
    outs = np.fromiter(outputs, dtype=np.int64, count=len(times))
    order = np.argsort(times, kind="stable")
    times, ins, outs = times[order], ins[order], outs[order]
    if len(times):
        times = times - times[0]
    span = float(times[-1]) if len(times) else 0.0
    return Trace(name, times, ins, outs, span)


def _parse_times(values: list[str]) -> FloatArray:
    """Seconds from numbers, or from ISO-like datetimes with any number of fractional digits (Azure has 7)."""
    try:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    except ValueError:
        stamps = np.asarray(values, dtype="datetime64[ns]")
        if len(stamps) == 0:
            return np.zeros(0)
        nanoseconds: FloatArray = (stamps - stamps[0]).astype(np.int64).astype(np.float64)
        return nanoseconds / 1e9


def _pick(columns: Iterable[str], candidates: tuple[str, ...], what: str, source: Path) -> str:
    present = list(columns)
    for name in candidates:
        if name in present:
            return name
    raise ValueError(f"{source}: no {what} column; expected one of {', '.join(candidates)}, found {present}")


def load_azure_csv(path: Path, *, name: str | None = None) -> Trace:
    """Load a CSV in the Azure LLM inference trace format (``TIMESTAMP,ContextTokens,GeneratedTokens``)."""
    return load_trace_file(path, name=name)


def load_trace_file(path: Path, *, name: str | None = None) -> Trace:
    """Load a CSV (header row) or JSONL (one object per line) trace with a timestamp, input and output tokens.

    Accepted column/key names: time ``TIMESTAMP|timestamp|arrival_seconds|arrival_time|time|ts`` (seconds as a
    number, or a datetime string such as Azure's ``2023-11-16 18:17:03.9799600``); input
    ``ContextTokens|input_tokens|prompt_tokens|input_length|input``; output
    ``GeneratedTokens|output_tokens|completion_tokens|generated_tokens|output_length|output``.
    """
    trace_name = name or path.stem
    if path.suffix in {".jsonl", ".ndjson"}:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        keys: list[str] = list(records[0]) if records else ["timestamp", "input_tokens", "output_tokens"]
        time_key = _pick(keys, _TIME_COLUMNS, "timestamp", path)
        in_key = _pick(keys, _INPUT_COLUMNS, "input tokens", path)
        out_key = _pick(keys, _OUTPUT_COLUMNS, "output tokens", path)
        times = _parse_times([str(r[time_key]) for r in records])
        return _make(trace_name, times, (int(r[in_key]) for r in records), (int(r[out_key]) for r in records))
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        time_key = _pick(header, _TIME_COLUMNS, "timestamp", path)
        in_key = _pick(header, _INPUT_COLUMNS, "input tokens", path)
        out_key = _pick(header, _OUTPUT_COLUMNS, "output tokens", path)
        rows = list(reader)
    times = _parse_times([r[time_key] for r in rows])
    return _make(trace_name, times, (int(r[in_key]) for r in rows), (int(r[out_key]) for r in rows))


def bundled_trace_names() -> list[str]:
    """Names of the traces shipped with the package, sorted."""
    return sorted(BUNDLED_TRACES)


def load_trace(name_or_path: str) -> Trace:
    """A bundled trace by name (``azure-code``, ``azure-conv``) or a CSV/JSONL file by path.

    Raises `ValueError` naming the bundled traces when ``name_or_path`` is neither.
    """
    if name_or_path in BUNDLED_TRACES:
        resource = resources.files("tokenscale.sim").joinpath("data", "traces", BUNDLED_TRACES[name_or_path])
        with resources.as_file(resource) as path:
            return load_trace_file(path, name=name_or_path)
    path = Path(name_or_path)
    if path.is_file():
        return load_trace_file(path)
    raise ValueError(f"unknown trace {name_or_path!r}: not a file; bundled: {', '.join(bundled_trace_names())}")


def truncate(trace: Trace, *, duration_seconds: float) -> Trace:
    """The requests arriving before ``duration_seconds``; the span becomes ``duration_seconds``."""
    keep = trace.arrival_seconds < duration_seconds
    return Trace(
        trace.name,
        trace.arrival_seconds[keep],
        trace.input_tokens[keep],
        trace.output_tokens[keep],
        float(duration_seconds),
    )


def compress_time(trace: Trace, *, factor: float) -> Trace:
    """Divide every arrival time (and the span) by ``factor``: the same requests, ``factor`` times faster."""
    if factor <= 0:
        raise ValueError("time compression factor must be positive")
    return Trace(
        trace.name, trace.arrival_seconds / factor, trace.input_tokens, trace.output_tokens, trace.span_seconds / factor
    )


def scale_rate(trace: Trace, *, factor: float, seed: int) -> Trace:
    """Scale the request rate by ``factor`` over the same span, keeping the trace's burst shape.

    Each request is kept ``floor(factor)`` times, plus once more with probability ``frac(factor)`` (so a factor
    below 1 thins the trace). Copy 0 keeps the original time; every further copy arrives uniformly at random
    between the original and the next request's arrival, so bursts stay bursts at the trace's own resolution
    and the expected rate in any interval is ``factor`` times the original. Copies keep their original lengths.
    """
    if factor <= 0:
        raise ValueError("rate scale factor must be positive")
    rng = np.random.default_rng(seed)
    n = len(trace)
    if n == 0:
        return trace
    whole = int(np.floor(factor))
    copies = np.full(n, whole, dtype=np.int64) + (rng.random(n) < factor - whole)
    gaps = np.diff(trace.arrival_seconds, append=trace.span_seconds)
    index = np.repeat(np.arange(n), copies)
    # Rank of each copy among the copies of its request: 0 for the first, which keeps the original time.
    first_of_run = np.concatenate(([0], np.cumsum(copies)[:-1]))
    rank = np.arange(len(index)) - np.repeat(first_of_run, copies)
    offsets = np.where(rank == 0, 0.0, rng.random(len(index)) * gaps[index])
    times = trace.arrival_seconds[index] + offsets
    order = np.argsort(times, kind="stable")
    return Trace(
        trace.name,
        times[order],
        trace.input_tokens[index][order],
        trace.output_tokens[index][order],
        trace.span_seconds,
    )


def _lengths(
    count: int, rng: np.random.Generator, lengths_from: Trace | None, input_tokens: int, output_tokens: int
) -> tuple[IntArray, IntArray]:
    if lengths_from is None or len(lengths_from) == 0:
        return np.full(count, input_tokens, dtype=np.int64), np.full(count, output_tokens, dtype=np.int64)
    pick = rng.integers(0, len(lengths_from), size=count)
    return lengths_from.input_tokens[pick], lengths_from.output_tokens[pick]


def _inhomogeneous_poisson(
    *,
    name: str,
    rate_per_second: Callable[[FloatArray], FloatArray],
    peak_rate_per_second: float,
    duration_seconds: float,
    seed: int,
    lengths_from: Trace | None,
    input_tokens: int,
    output_tokens: int,
) -> Trace:
    """Arrivals of a Poisson process with time-varying rate, by thinning a homogeneous one at the peak rate
    (Lewis and Shedler): candidates at ``peak`` are kept with probability ``rate(t) / peak``."""
    rng = np.random.default_rng(seed)
    expected = peak_rate_per_second * duration_seconds
    count = int(rng.poisson(expected)) if expected > 0 else 0
    candidates = np.sort(rng.random(count) * duration_seconds)
    keep = rng.random(count) * peak_rate_per_second < rate_per_second(candidates)
    times = candidates[keep]
    ins, outs = _lengths(len(times), rng, lengths_from, input_tokens, output_tokens)
    # Keep the span as asked; the first arrival stays where it fell (a synthetic trace need not start at 0).
    return Trace(name, times, ins, outs, float(duration_seconds))


def poisson_trace(
    *,
    rate_per_second: float,
    duration_seconds: float,
    seed: int,
    lengths_from: Trace | None = None,
    input_tokens: int = 1024,
    output_tokens: int = 128,
) -> Trace:
    """Poisson arrivals at a constant rate. Lengths are drawn from ``lengths_from`` (pairs kept together),
    else fixed at ``input_tokens``/``output_tokens``."""
    return _inhomogeneous_poisson(
        name=f"poisson-{rate_per_second:g}rps",
        rate_per_second=lambda t: np.full_like(t, rate_per_second),
        peak_rate_per_second=rate_per_second,
        duration_seconds=duration_seconds,
        seed=seed,
        lengths_from=lengths_from,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def burst_trace(
    *,
    base_rate_per_second: float,
    burst_factor: float,
    burst_seconds: float,
    period_seconds: float,
    duration_seconds: float,
    seed: int,
    first_burst_seconds: float | None = None,
    lengths_from: Trace | None = None,
    input_tokens: int = 1024,
    output_tokens: int = 128,
) -> Trace:
    """On/off bursts: Poisson at ``base_rate``, and at ``burst_factor`` × base during the first ``burst_seconds``
    of every ``period_seconds`` starting at ``first_burst_seconds`` (default: one period in)."""
    start = period_seconds if first_burst_seconds is None else first_burst_seconds

    def rate(t: FloatArray) -> FloatArray:
        phase = np.mod(t - start, period_seconds)
        on = (t >= start) & (phase < burst_seconds)
        return np.where(on, base_rate_per_second * burst_factor, base_rate_per_second)

    return _inhomogeneous_poisson(
        name=f"burst-{base_rate_per_second:g}rps-x{burst_factor:g}",
        rate_per_second=rate,
        peak_rate_per_second=base_rate_per_second * max(1.0, burst_factor),
        duration_seconds=duration_seconds,
        seed=seed,
        lengths_from=lengths_from,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def diurnal_trace(
    *,
    mean_rate_per_second: float,
    amplitude: float,
    period_seconds: float,
    duration_seconds: float,
    seed: int,
    lengths_from: Trace | None = None,
    input_tokens: int = 1024,
    output_tokens: int = 128,
) -> Trace:
    """A sinusoidal day: rate ``mean · (1 − amplitude · cos(2πt / period))``, lowest at t = 0, peak mid-period.
    ``amplitude`` is in [0, 1]."""
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError("diurnal amplitude must be in [0, 1]")
    return _inhomogeneous_poisson(
        name=f"diurnal-{mean_rate_per_second:g}rps",
        rate_per_second=lambda t: mean_rate_per_second * (1.0 - amplitude * np.cos(2.0 * np.pi * t / period_seconds)),
        peak_rate_per_second=mean_rate_per_second * (1.0 + amplitude),
        duration_seconds=duration_seconds,
        seed=seed,
        lengths_from=lengths_from,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )
