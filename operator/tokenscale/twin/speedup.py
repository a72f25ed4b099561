"""A sped-up world: the same service ``speedup`` times faster, so a demo covers minutes of traffic in seconds.

The cluster model is homogeneous in time: every service time is a sum of millisecond terms of the profile
(step costs, KV transfer, cold start) and the fixed disaggregation overhead. Dividing each of them by ``s``, and
the trace's arrival times too, gives a run whose every event happens at ``1/s`` of its time in the real-speed
run: the same run, ``s`` times faster. For the operator to see that world as it would see the real one, what it
knows of time changes the same way:

- the profile (`compress_profile`): durations ÷ s, the KV link's bytes/s × s, and the velocities it derives
  (tokens/s) × s, stated in the file because the operator derives them at the default TPOT objective;
- the service's spec (`compress_spec`): every ``…Seconds`` field ÷ s (tick, rate window, SLO objectives,
  cooldowns, stabilisation windows, conversion limit) and every ``…PerSecond`` field × s (rates).

Rates the operator and the twin measure per wall-clock second are then ``s`` times the real ones, latencies
``1/s`` of them, and counts (queues, KV usage, replicas) are the same: divide rates and multiply times by ``s``
to read them in the units of the real-speed service (`to_simulated_seconds`, `to_simulated_rate`).
"""

from __future__ import annotations

from typing import Any

from tokenscale.api import profiles

__all__ = [
    "MAX_SPEEDUP",
    "compress_profile",
    "compress_spec",
    "to_simulated_rate",
    "to_simulated_seconds",
]

MAX_SPEEDUP = 10.0
"""The largest speed-up: the operator's tick (1 s of simulated time) may not go below 0.1 s
(``spec.metrics.scrapeIntervalSeconds``)."""

_PERF_DURATIONS = (
    "prefill_fixed_ms",
    "prefill_ms_per_token",
    "prefill_ms_per_token_squared",
    "decode_fixed_ms",
    "decode_ms_per_kv_token",
    "decode_ms_per_sequence",
    "kv_transfer_fixed_ms",
    "cold_start_seconds",
)


def _check(speedup: float) -> None:
    if not 1.0 <= speedup <= MAX_SPEEDUP:
        raise ValueError(f"speed-up must be between 1 and {MAX_SPEEDUP:g}, not {speedup:g}")


def compress_profile(profile: profiles.ProfileFile, *, speedup: float) -> profiles.ProfileFile:
    """``profile`` in a world ``speedup`` times faster: every duration ÷ s, link bandwidth × s, and the
    velocities that the real-speed profile states or derives (at the default prompt length and TPOT objective,
    as the operator derives them) × s, stated explicitly. The name gets an ``-x<s>`` suffix."""
    _check(speedup)
    perf = profile.perf.model_copy(
        update={name: getattr(profile.perf, name) / speedup for name in _PERF_DURATIONS}
        | {"link_bytes_per_second": profile.perf.link_bytes_per_second * speedup}
    )
    velocities = profile.to_core().velocities
    stated = profiles.VelocitiesFile(
        prefill_tokens_per_second=velocities.prefill_tokens_per_second * speedup,
        network_tokens_per_second=velocities.network_tokens_per_second * speedup,
        decode_tokens_per_second=tuple(v * speedup for v in velocities.decode_tokens_per_second),
    )
    return profile.model_copy(
        update={
            "name": f"{profile.name}-x{speedup:g}",
            "source": f"{profile.name} sped up {speedup:g}x by tokenscale.twin.speedup (durations / {speedup:g}); "
            f"{profile.source}",
            "perf": perf,
            "velocities": stated,
        }
    )


def compress_spec(spec: dict[str, Any], *, speedup: float) -> dict[str, Any]:
    """A copy of a spec (camelCase JSON, e.g. ``model_dump(by_alias=True, mode="json")``) with every field
    named ``…Seconds`` divided by ``speedup`` and every ``…PerSecond`` field multiplied by it, at any depth
    (the SLO tiers' ``ttftSeconds`` included). Other fields (counts, ratios, token lengths, ticks) are kept."""
    _check(speedup)

    def scaled(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scaled(k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [scaled(key, item) for item in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if key.endswith("Seconds"):
                return value / speedup
            if key.endswith("PerSecond"):
                return value * speedup
        return value

    return {key: scaled(key, value) for key, value in spec.items()}


def to_simulated_seconds(seconds: float, *, speedup: float) -> float:
    """A duration or time of the sped-up world in seconds of the real-speed service."""
    return seconds * speedup


def to_simulated_rate(per_second: float, *, speedup: float) -> float:
    """A rate of the sped-up world (per wall-clock second) per second of the real-speed service."""
    return per_second / speedup
