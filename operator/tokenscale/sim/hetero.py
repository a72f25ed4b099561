"""Heterogeneous pools in the simulator: prefill and decode on different GPU types, what a token costs, and what
KV transfer across network domains costs (docs/heterogeneous.md; `benchmarks.hetero` writes
docs/results-hetero.md).

- A `PoolPair` runs prefill on one profile and decode on another. The policy sizes them with a *composite* profile
  (`composite_profile`): the prefill pool's ``V_P``, the slower end's ``V_N``, the decode pool's ``V_D`` and its
  service-time model (a converted decoder prefills on the decode GPU). The cluster model runs its prefillers on
  the prefill profile (`tokenscale.sim.cluster.Cluster`'s ``prefill_perf``).
- Cost is the GPU-hours each role provisioned over the trace's horizon times its GPU type's price per GPU-hour,
  divided by the tokens (input + output) of the trace: cost per million tokens.
- `steady_state_cost_per_million_tokens` is the same ratio for a pool that is always exactly as large as the
  load (no autoscaling slack, no cold start): the hardware's own price per token for a trace's length mix.
- KV transfer: `kv_transfer_seconds` prices each prompt's KV at a share of the link's bandwidth, 1 inside a
  domain and below 1 across domains (HeteroScale reports ≈20% of KV bandwidth lost to flat placement).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenscale.core import settings as core_settings
from tokenscale.core import variants
from tokenscale.core.profile import BUCKET_COUNT, Profile, Velocities
from tokenscale.core.types import Role
from tokenscale.sim import loop, report, traces

__all__ = [
    "HeteroRecord",
    "PoolPair",
    "bucket_token_rates",
    "composite_profile",
    "kv_transfer_seconds",
    "run_pair",
    "steady_state_cost_per_million_tokens",
]

_WARM_START_SECONDS = 60.0


@dataclass(frozen=True)
class PoolPair:
    """Prefill on one profile, decode on another (the same profile: a homogeneous pool)."""

    name: str
    prefill: Profile
    decode: Profile

    @property
    def homogeneous(self) -> bool:
        return self.prefill.gpu == self.decode.gpu


def composite_profile(*, prefill: Profile, decode: Profile) -> Profile:
    """The profile a policy sizes a pair with: ``V_P`` of the prefill pool, ``V_N`` of the slower link, ``V_D`` and
    the service-time model of the decode pool. Raises `ValueError` for two models or two bucket grids."""
    if prefill.model != decode.model or prefill.buckets != decode.buckets:
        raise ValueError("a pool pair serves one model with one bucket grid")
    if prefill.name == decode.name:
        return prefill
    return Profile(
        name=f"{prefill.name}+{decode.name}",
        model=decode.model,
        gpu=f"{prefill.gpu}+{decode.gpu}",
        perf=decode.perf,
        buckets=decode.buckets,
        velocities=Velocities(
            prefill_tokens_per_second=prefill.velocities.prefill_tokens_per_second,
            network_tokens_per_second=min(
                prefill.velocities.network_tokens_per_second, decode.velocities.network_tokens_per_second
            ),
            decode_tokens_per_second=decode.velocities.decode_tokens_per_second,
        ),
        source=f"prefill: {prefill.source} decode: {decode.source}",
    )


def bucket_token_rates(*, trace: traces.Trace, profile: Profile) -> tuple[float, ...]:
    """(input + output) tokens of the trace in each of the profile's nine buckets (a mix, any scale)."""
    grid = profile.buckets
    rows = np.searchsorted(np.array(grid.input_edges_tokens), trace.input_tokens, side="right")
    columns = np.searchsorted(np.array(grid.output_edges_tokens), trace.output_tokens, side="right")
    tokens = (trace.input_tokens + trace.output_tokens).astype(np.float64)
    totals = np.bincount(3 * rows + columns, weights=tokens, minlength=BUCKET_COUNT)
    return tuple(float(t) for t in totals)


def steady_state_cost_per_million_tokens(*, trace: traces.Trace, pair: PoolPair, prices: Mapping[str, float]) -> float:
    """Cost per million (input + output) tokens of a pool always exactly as large as the load.

    One request of ``I`` prompt and ``O`` output tokens holds a prefiller ``I / v_P`` seconds and a decoder
    ``(I + O) / v_D`` seconds, where ``v_P = min(V_P, V_N)`` and ``v_D`` is the decode velocity for the trace's
    bucket mix (`tokenscale.core.variants.instance_tokens_per_second`); each second costs its GPUs' price per hour
    / 3600.
    """
    mix = bucket_token_rates(trace=trace, profile=pair.decode)
    prefill = variants.instance_tokens_per_second(velocities=pair.prefill.velocities, role=Role.PREFILL)
    decode = variants.instance_tokens_per_second(
        velocities=pair.decode.velocities, role=Role.DECODE, bucket_tokens_per_second=mix
    )
    prompt = float(trace.input_tokens.sum())
    total = float((trace.input_tokens + trace.output_tokens).sum())
    prefill_hour = prices[pair.prefill.gpu] * pair.prefill.perf.gpus_per_instance
    decode_hour = prices[pair.decode.gpu] * pair.decode.perf.gpus_per_instance
    cost = (prompt / prefill * prefill_hour + total / decode * decode_hour) / 3600.0
    return 1e6 * cost / total


def kv_transfer_seconds(
    *, trace: traces.Trace, profile: Profile, bandwidth_ratio: float = 1.0
) -> npt.NDArray[np.float64]:
    """Each request's KV transfer time: the profile's fixed cost plus its prompt's KV bytes over ``bandwidth_ratio``
    of the link (perfmodel.md §7)."""
    perf = profile.perf
    link = perf.link_bytes_per_second * bandwidth_ratio
    return perf.kv_transfer_fixed_ms / 1000.0 + trace.input_tokens.astype(np.float64) * perf.kv_bytes_per_token / link


@dataclass(frozen=True, slots=True)
class HeteroRecord:
    """One run of a pool pair on a trace: SLO, latency, cost and what it bought."""

    trace: str
    pair: str
    homogeneous: bool
    policy: str
    rate_scale: float
    kv_bandwidth_ratio: float
    requests: int
    slo_attainment: float
    ttft_attainment: float
    tpot_attainment: float
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None
    prefill_gpu_hours: float
    decode_gpu_hours: float
    cost: float
    tokens: int
    cost_per_million_tokens: float
    steady_state_cost_per_million_tokens: float


def _initial_counts(*, trace: traces.Trace, profile: Profile) -> tuple[int, int]:
    """Instances the first minute's mean load needs, so every pair starts warm, sized alike."""
    first = trace.arrival_seconds < _WARM_START_SECONDS
    seconds = min(_WARM_START_SECONDS, trace.span_seconds) or 1.0
    prompt_rate = float(trace.input_tokens[first].sum()) / seconds
    window = traces.Trace(
        name=trace.name,
        arrival_seconds=trace.arrival_seconds[first],
        input_tokens=trace.input_tokens[first],
        output_tokens=trace.output_tokens[first],
        span_seconds=seconds,
    )
    mix = bucket_token_rates(trace=window, profile=profile)
    decode_rate = sum(mix) / seconds
    prefill = variants.instance_tokens_per_second(velocities=profile.velocities, role=Role.PREFILL)
    decode = variants.instance_tokens_per_second(
        velocities=profile.velocities, role=Role.DECODE, bucket_tokens_per_second=mix
    )
    return max(1, math.ceil(prompt_rate / prefill)), max(1, math.ceil(decode_rate / decode))


def run_pair(
    *,
    trace: traces.Trace,
    pair: PoolPair,
    prices: Mapping[str, float],
    policy: str = "tokenscale",
    rate_scale: float = 1.0,
    slo: core_settings.SLO | None = None,
    kv_bandwidth_ratio: float = 1.0,
    max_replicas: int = 64,
) -> HeteroRecord:
    """Replay ``trace`` (already rate-scaled by ``rate_scale``, recorded only) through ``pair`` scaled by
    ``policy`` with its defaults and the generic behaviour, bounds 1 to ``max_replicas`` per role, starting warm;
    KV transfers get ``kv_bandwidth_ratio`` of the link."""
    objectives = slo or core_settings.SLO()
    profile = composite_profile(prefill=pair.prefill, decode=pair.decode)
    settings = core_settings.ScalingSettings(
        policy=policy,
        prefill=core_settings.RoleBounds(min_replicas=1, max_replicas=max_replicas),
        decode=core_settings.RoleBounds(min_replicas=1, max_replicas=max_replicas),
        behavior=core_settings.Behavior(),
        slo=objectives,
        profile=profile,
    )
    config = dataclasses.replace(loop.cluster_config_for(settings), kv_bandwidth_ratio=kv_bandwidth_ratio)
    initial_prefill, initial_decode = _initial_counts(trace=trace, profile=profile)
    outcome = loop.run_policy(
        trace=trace,
        settings=settings,
        initial_prefill=initial_prefill,
        initial_decode=initial_decode,
        cluster_config=config,
        prefill_perf=pair.prefill.perf,
    )
    scores = report.attainment(outcomes=outcome.outcomes, slo=objectives)
    prefill_hours = outcome.gpu_seconds_by_role.get(Role.PREFILL, 0.0) / 3600.0
    decode_hours = outcome.gpu_seconds_by_role.get(Role.DECODE, 0.0) / 3600.0
    cost = prefill_hours * prices[pair.prefill.gpu] + decode_hours * prices[pair.decode.gpu]
    tokens = int((trace.input_tokens + trace.output_tokens).sum())
    ttft = outcome.outcomes.ttft_seconds
    p50, p99 = report.percentile(ttft, 50), report.percentile(ttft, 99)
    return HeteroRecord(
        trace=trace.name,
        pair=pair.name,
        homogeneous=pair.homogeneous,
        policy=policy,
        rate_scale=rate_scale,
        kv_bandwidth_ratio=kv_bandwidth_ratio,
        requests=len(trace.arrival_seconds),
        slo_attainment=scores.slo,
        ttft_attainment=scores.ttft,
        tpot_attainment=scores.tpot,
        ttft_p50_ms=None if p50 is None else 1000.0 * p50,
        ttft_p99_ms=None if p99 is None else 1000.0 * p99,
        prefill_gpu_hours=prefill_hours,
        decode_gpu_hours=decode_hours,
        cost=cost,
        tokens=tokens,
        cost_per_million_tokens=1e6 * cost / tokens if tokens else math.nan,
        steady_state_cost_per_million_tokens=steady_state_cost_per_million_tokens(
            trace=trace, pair=pair, prices=prices
        ),
    )
