"""TokenScale: Token Velocity sizing of both roles, and convertible decoders for bursts (algorithms.md §1).

- Prefillers ``N_P = ceil(λ_in / min(V_P, V_N))`` [secondary], where λ_in is the arriving prompt-token rate,
  the higher of the window and recent estimates (`tokenscale.core.observe`), so a burst raises prefill in the
  tick that first sees it [reconstructed].
- Decoders ``N_D = ceil(Σ_b λ_b / V_D,b + C · f_res)`` [secondary per-bucket form; the reserve term is
  reconstructed]: λ_b the (input + predicted output) token arrival rate of bucket b, C the converted decoders after
  this tick and f_res the KV share each holds back for burst prefills, made up by extra decoders.
- Convertible decoders: `tokenscale.core.conversion`, decided in the same tick as the counts.

Zero load gives 0 for both, which the bounds raise to the minimum. Variants (registry names):
``tokenscale-no-conversion`` (no convertible decoders) and ``tokenscale-prefill-only`` (TokenScale's prefill
scaler, DistServe-style decode sizing, no conversion): the rows of the paper's ablation (algorithms.md §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tokenscale.core import buckets, conversion, reasons
from tokenscale.core.policies import distserve
from tokenscale.core.policies.base import BehaviorLimits, Recommendation, ceil_replicas, known_load
from tokenscale.core.profile import BUCKET_COUNT, BucketGrid
from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import LoadSignals, Observation, Reason, Role

__all__ = ["TokenScalePolicy", "TokenScaleState", "bucket_rates", "sizing_arrival_rate"]


@dataclass(frozen=True, slots=True)
class TokenScaleState:
    """Conversion memory, and the DistServe planner of the prefill-only variant's decode sizing."""

    conversion: conversion.ConversionState = field(default_factory=conversion.ConversionState)
    decode_plan: distserve.DistServeState = field(default_factory=distserve.DistServeState)


def sizing_arrival_rate(load: LoadSignals) -> float:
    """λ_in for sizing: the higher of the window and recent arriving prompt-token rates."""
    recent = load.recent_arriving_prompt_tokens_per_second
    return max(load.arriving_prompt_tokens_per_second, recent if recent is not None else 0.0)


def bucket_rates(load: LoadSignals, grid: BucketGrid) -> tuple[float, ...]:
    """λ_b from the observation, or all arrivals in the bucket of the mean lengths when it has none."""
    if len(load.bucket_tokens_per_second) == BUCKET_COUNT:
        return load.bucket_tokens_per_second
    return buckets.bucket_token_rates(
        arriving_requests_per_second=load.arriving_requests_per_second,
        inputs=buckets.point_shares(
            tokens=load.mean_prompt_tokens,
            edges_tokens=grid.input_edges_tokens,
            representative_tokens=grid.representative_input_tokens,
        ),
        outputs=buckets.point_shares(
            tokens=load.mean_generation_tokens,
            edges_tokens=grid.output_edges_tokens,
            representative_tokens=grid.representative_output_tokens,
        ),
    )


@dataclass(frozen=True, slots=True)
class TokenScalePolicy(BehaviorLimits):
    """TokenScale and its ablation variants (module docstring)."""

    name: str = "tokenscale"
    converts: bool = True
    decode_sizing: Literal["velocity", "distserve"] = "velocity"

    def initial_state(self, *, settings: ScalingSettings) -> TokenScaleState:
        del settings
        return TokenScaleState()

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: TokenScaleState
    ) -> tuple[Recommendation, TokenScaleState]:
        load = known_load(observation)
        velocities = settings.profile.velocities
        per_prefiller = min(velocities.prefill_tokens_per_second, velocities.network_tokens_per_second)
        arriving = sizing_arrival_rate(load)
        prefill = ceil_replicas(arriving / per_prefiller)
        ready_capacity = observation.prefill.ready_replicas * per_prefiller

        plan, conversion_state = conversion.plan_conversion(
            settings=settings,
            observation=observation,
            state=state.conversion,
            arriving_prompt_tokens_per_second=arriving,
            ready_prefill_tokens_per_second=ready_capacity,
            enabled=conversion.conversion_in_use(converts=self.converts, settings=settings),
        )

        found: list[Reason] = []
        decode_plan = state.decode_plan
        rates = bucket_rates(load, settings.profile.buckets)
        decode_tokens = sum(rates)
        if self.decode_sizing == "velocity":
            demand = sum(rate / v for rate, v in zip(rates, velocities.decode_tokens_per_second, strict=True))
            reserve = plan.converted_after * settings.tokenscale.conversion_kv_reserve_ratio
            decode = ceil_replicas(demand + reserve)
            decode_message = (
                f"ceil(sum_b lambda_b / V_D,b = {demand:.2f} + {plan.converted_after} converted x "
                f"{settings.tokenscale.conversion_kv_reserve_ratio:g} reserve) = {decode}"
            )
        else:
            planned, decode_plan = distserve.plan_distserve(
                settings=settings,
                now_seconds=observation.now_seconds,
                requests_per_second=load.arriving_requests_per_second,
                state=state.decode_plan,
            )
            demand = (
                planned.mean_requests_per_second
                / distserve.resolved_settings(settings).decode_goodput_requests_per_second
            )
            decode = planned.decode_replicas
            decode_message = f"DistServe-style: mean {planned.mean_requests_per_second:.2f} req/s -> {decode}"

        if arriving <= 0 and decode_tokens <= 0:
            found.append(Reason(reasons.ZERO_LOAD, "no arrivals: both roles go to their minimum"))
        else:
            found.append(
                Reason(
                    reasons.PREFILL_VELOCITY,
                    f"ceil({arriving:.0f} tok/s / min(V_P {velocities.prefill_tokens_per_second:.0f}, "
                    f"V_N {velocities.network_tokens_per_second:.0f})) = {prefill}",
                    Role.PREFILL,
                )
            )
            found.append(Reason(reasons.DECODE_VELOCITY, decode_message, Role.DECODE))
        found.extend(plan.reasons)

        recommendation = Recommendation(
            prefill_replicas=prefill,
            decode_replicas=decode,
            reasons=tuple(found),
            inputs={
                "arriving_prompt_tokens_per_second": load.arriving_prompt_tokens_per_second,
                "recent_arriving_prompt_tokens_per_second": load.recent_arriving_prompt_tokens_per_second or 0.0,
                "sizing_prompt_tokens_per_second": arriving,
                "prefill_velocity_tokens_per_second": velocities.prefill_tokens_per_second,
                "network_velocity_tokens_per_second": velocities.network_tokens_per_second,
                "ready_prefill_capacity_tokens_per_second": ready_capacity,
                "converted_prefill_capacity_tokens_per_second": plan.converted_prefill_tokens_per_second,
                "arriving_decode_tokens_per_second": decode_tokens,
                "decode_demand_instances": demand,
                "converted_decoders": float(plan.converted_after),
            },
            convert_pods=plan.convert_pods,
            restore_pods=plan.restore_pods,
        )
        return recommendation, TokenScaleState(conversion=conversion_state, decode_plan=decode_plan)
