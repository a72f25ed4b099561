"""The load the twin replays: a slice of a trace (bundled name or file) or a synthetic one, rescaled.

A source is a bundled trace name (``azure-code``, ``azure-conv``), a CSV/JSONL path (`tokenscale.sim.traces`),
or a synthetic load written ``kind:key=value,...``:

- ``poisson:rps=5`` (constant rate);
- ``burst:rps=2,factor=8,burst=30,period=120,first=30`` (``factor`` × the base rate for ``burst`` seconds of
  every ``period``, the first at ``first``);
- ``diurnal:rps=4,amplitude=0.8,period=600``;

each also takes ``input=1024,output=128`` (fixed lengths, the default) or ``lengths=azure-code`` (pairs drawn
from a trace), and ``seconds`` (its length; default: the slice's duration, else 600).

`build_load` then cuts ``[start, start + duration)`` from the source (times shifted to 0), scales its rate
(`tokenscale.sim.traces.scale_rate`: same span, bursts stay bursts) and compresses its time
(`tokenscale.sim.traces.compress_time`: same requests, shorter span).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenscale.sim import traces

__all__ = ["LoadSpec", "build_load", "parse_synthetic"]

_DEFAULT_SYNTHETIC_SECONDS = 600.0
_SYNTHETIC_KEYS = {
    "poisson": {"rps"},
    "burst": {"rps", "factor", "burst", "period", "first"},
    "diurnal": {"rps", "amplitude", "period"},
}
_COMMON_KEYS = {"input", "output", "lengths", "seconds"}


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to replay, in the seconds of the source (before any compression)."""

    source: str = "azure-code"
    """A bundled trace name, a trace file, or a synthetic load ``kind:key=value,...``."""
    start_seconds: float = 0.0
    """Where the slice starts in the source."""
    duration_seconds: float | None = None
    """Length of the slice; None: to the end of the source."""
    rate_scale: float = 1.0
    """Multiply the request rate by this over the same span (``tokenscale.sim.traces.scale_rate``)."""
    time_compression: float = 1.0
    """Divide the slice's times by this (the same requests, this many times faster)."""
    seed: int = 0
    """Seed of the rate scaling and of synthetic loads."""

    def __post_init__(self) -> None:
        if self.start_seconds < 0:
            raise ValueError("the slice cannot start before 0")
        if self.duration_seconds is not None and self.duration_seconds <= 0:
            raise ValueError("the slice's duration must be positive")
        if self.rate_scale <= 0 or self.time_compression <= 0:
            raise ValueError("rate scale and time compression must be positive")


def parse_synthetic(text: str) -> tuple[str, dict[str, str]]:
    """``kind:key=value,...`` → (kind, {key: value}); raises `ValueError` naming what is wrong."""
    kind, _, rest = text.partition(":")
    if kind not in _SYNTHETIC_KEYS:
        raise ValueError(f"unknown synthetic load {kind!r}; one of: {', '.join(sorted(_SYNTHETIC_KEYS))}")
    options: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, equals, value = part.partition("=")
        key = key.strip()
        if not equals or key not in _SYNTHETIC_KEYS[kind] | _COMMON_KEYS:
            allowed = ", ".join(sorted(_SYNTHETIC_KEYS[kind] | _COMMON_KEYS))
            raise ValueError(f"{kind} load: bad option {part!r}; options: {allowed}")
        options[key] = value.strip()
    if "rps" not in options:
        raise ValueError(f"{kind} load needs rps=<requests per second>")
    return kind, options


def _synthetic(text: str, *, seconds: float, seed: int) -> traces.Trace:
    kind, options = parse_synthetic(text)
    try:
        number = {k: float(v) for k, v in options.items() if k != "lengths"}
    except ValueError as error:
        raise ValueError(f"{kind} load: {error}") from None
    lengths_from = traces.load_trace(options["lengths"]) if "lengths" in options else None
    duration = number.get("seconds", seconds)
    inputs, outputs = int(number.get("input", 1024)), int(number.get("output", 128))
    if kind == "poisson":
        return traces.poisson_trace(
            rate_per_second=number["rps"],
            duration_seconds=duration,
            seed=seed,
            lengths_from=lengths_from,
            input_tokens=inputs,
            output_tokens=outputs,
        )
    if kind == "burst":
        return traces.burst_trace(
            base_rate_per_second=number["rps"],
            burst_factor=number.get("factor", 8.0),
            burst_seconds=number.get("burst", 30.0),
            period_seconds=number.get("period", 120.0),
            first_burst_seconds=number.get("first"),
            duration_seconds=duration,
            seed=seed,
            lengths_from=lengths_from,
            input_tokens=inputs,
            output_tokens=outputs,
        )
    return traces.diurnal_trace(
        mean_rate_per_second=number["rps"],
        amplitude=number.get("amplitude", 0.8),
        period_seconds=number.get("period", 600.0),
        duration_seconds=duration,
        seed=seed,
        lengths_from=lengths_from,
        input_tokens=inputs,
        output_tokens=outputs,
    )


def _slice(trace: traces.Trace, *, start_seconds: float, duration_seconds: float | None) -> traces.Trace:
    end = trace.span_seconds if duration_seconds is None else start_seconds + duration_seconds
    keep = (trace.arrival_seconds >= start_seconds) & (trace.arrival_seconds < end)
    return traces.Trace(
        trace.name,
        trace.arrival_seconds[keep] - start_seconds,
        trace.input_tokens[keep],
        trace.output_tokens[keep],
        max(0.0, end - start_seconds),
    )


def build_load(spec: LoadSpec) -> traces.Trace:
    """The trace to replay: the slice of the source, rate-scaled, then time-compressed (see the module doc).

    Raises `ValueError` for an unknown source or a malformed synthetic load.
    """
    if ":" in spec.source and spec.source.partition(":")[0] in _SYNTHETIC_KEYS:
        seconds = (spec.start_seconds + spec.duration_seconds) if spec.duration_seconds else _DEFAULT_SYNTHETIC_SECONDS
        source = _synthetic(spec.source, seconds=seconds, seed=spec.seed)
    else:
        source = traces.load_trace(spec.source)
    trace = _slice(source, start_seconds=spec.start_seconds, duration_seconds=spec.duration_seconds)
    if spec.rate_scale != 1.0:
        trace = traces.scale_rate(trace, factor=spec.rate_scale, seed=spec.seed)
    if spec.time_compression != 1.0:
        trace = traces.compress_time(trace, factor=spec.time_compression)
    return trace
