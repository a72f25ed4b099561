"""Builders for core tests: a toy profile with round numbers, pods, load signals and observations."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from tokenscale.core.profile import BucketGrid, PerfModel, Profile, Velocities
from tokenscale.core.settings import SLO, Behavior, RoleBounds, ScalingSettings
from tokenscale.core.types import (
    EngineSample,
    Histogram,
    LoadSignals,
    Observation,
    PodView,
    Role,
    RoleView,
    ServingRole,
)

# Service times with round numbers (ms): prefill of c tokens = 10 + 0.01·c; a decode step = 10 + 0.1·B.
# A converted decoder with a 500-token chunk at B running: 10 + 0.1·B + 15 ms per step.
TOY_PERF = PerfModel(
    prefill_fixed_ms=10.0,
    prefill_ms_per_token=0.01,
    prefill_ms_per_token_squared=0.0,
    decode_fixed_ms=10.0,
    decode_ms_per_kv_token=0.0,
    decode_ms_per_sequence=0.1,
    kv_capacity_tokens=100_000,
    kv_bytes_per_token=100_000,
    link_bytes_per_second=1e9,
    kv_transfer_fixed_ms=0.5,
    max_num_seqs=256,
    max_num_batched_tokens=1000,
    gpus_per_instance=1,
    cold_start_seconds=0,  # instant: TokenScale's scale-in hold (at least one cold start) is then the behaviour's
)
# V_P 10k, V_N 20k tok/s per prefiller (min 10k); V_D by output column: 40k, 20k, 10k tok/s per decoder.
TOY_VELOCITIES = Velocities(
    prefill_tokens_per_second=10_000.0,
    network_tokens_per_second=20_000.0,
    decode_tokens_per_second=(40_000.0, 20_000.0, 10_000.0) * 3,
)
TOY_PROFILE = Profile(
    name="toy",
    model="toy",
    gpu="toy",
    perf=TOY_PERF,
    buckets=BucketGrid(),
    velocities=TOY_VELOCITIES,
    source="tests",
)
# Guards that let the policy's raw answer through, so policy tests see the policy alone.
OPEN_BEHAVIOR = Behavior(max_scale_up_step=1000, max_scale_down_step=1000, scale_in_stabilization_seconds=0.0)

LENGTH_BOUNDS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, math.inf)


def make_settings(policy: str = "tokenscale", **overrides: Any) -> ScalingSettings:
    base = ScalingSettings(
        policy=policy,
        prefill=RoleBounds(1, 100),
        decode=RoleBounds(1, 100),
        behavior=OPEN_BEHAVIOR,
        slo=SLO(),
        profile=TOY_PROFILE,
    )
    return dataclasses.replace(base, **overrides)


def pod(
    name: str,
    role: Role = Role.DECODE,
    *,
    serving: ServingRole | None = None,
    ready: bool = True,
    known: bool = True,
    running: float = 0.0,
    waiting: float = 0.0,
    kv: float = 0.0,
    converted_since: float | None = None,
) -> PodView:
    return PodView(
        name=name,
        role=role,
        serving_role=serving or ServingRole(role.value),
        ready=ready,
        load_known=known,
        requests_running=running,
        requests_waiting=waiting,
        kv_cache_usage_ratio=kv,
        converted_since_seconds=converted_since,
        unknown_reason=None if known else "test: unknown",
    )


def prefill_pods(count: int, **kwargs: Any) -> tuple[PodView, ...]:
    return tuple(pod(f"p{i}", Role.PREFILL, **kwargs) for i in range(count))


def decode_pods(count: int, **kwargs: Any) -> tuple[PodView, ...]:
    return tuple(pod(f"d{i}", Role.DECODE, **kwargs) for i in range(count))


def load(
    arriving: float = 0.0,
    *,
    recent: float | None = None,
    requests: float | None = None,
    buckets: tuple[float, ...] = (),
    generation: float = 0.0,
    mean_prompt: float = 1000.0,
    mean_generation: float = 100.0,
    itl_p90: float | None = None,
    ttft_p90: float | None = None,
) -> LoadSignals:
    return LoadSignals(
        arriving_prompt_tokens_per_second=arriving,
        processed_prompt_tokens_per_second=arriving,
        generation_tokens_per_second=generation,
        arriving_requests_per_second=arriving / mean_prompt if requests is None else requests,
        mean_prompt_tokens=mean_prompt,
        mean_generation_tokens=mean_generation,
        bucket_tokens_per_second=buckets,
        ttft_p90_seconds=ttft_p90,
        itl_p90_seconds=itl_p90,
        recent_arriving_prompt_tokens_per_second=recent,
    )


def observation(
    *,
    now: float = 100.0,
    prefill: Sequence[PodView] = (),
    decode: Sequence[PodView] = (),
    signals: LoadSignals | None = None,
    prefill_spec: int | None = None,
    decode_spec: int | None = None,
    unknown: tuple[str, ...] = (),
) -> Observation:
    return Observation(
        now_seconds=now,
        prefill=RoleView(len(prefill) if prefill_spec is None else prefill_spec, tuple(prefill)),
        decode=RoleView(len(decode) if decode_spec is None else decode_spec, tuple(decode)),
        load=signals,
        unknown_reasons=unknown,
    )


def length_histogram(counts_by_bound: dict[float, float], total_tokens: float) -> Histogram:
    """A cumulative length histogram on vLLM's 1-2-5 bounds from per-bucket counts."""
    cumulative: list[float] = []
    running = 0.0
    for bound in LENGTH_BOUNDS:
        running += counts_by_bound.get(bound, 0.0)
        cumulative.append(running)
    return Histogram(LENGTH_BOUNDS, tuple(cumulative), total_tokens, running)


def single_length_histogram(requests: float, length: float) -> Histogram:
    """``requests`` requests all of ``length`` tokens (in the first bucket whose bound reaches it)."""
    bound = next(b for b in LENGTH_BOUNDS if b >= length)
    return length_histogram({bound: requests}, requests * length)


def sample(t: float, **fields: Any) -> EngineSample:
    return EngineSample(timestamp_seconds=t, **fields)
