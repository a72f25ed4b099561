"""TokenScale: Token Velocity sizing of both roles, and convertible decoders for bursts (algorithms.md §1).

- Prefillers ``N_P = ceil(Q_q(λ_in + Q_tokens / (T_cold + T_obj)) / min(V_P, V_N))`` [secondary: ``ceil(λ_in /
  min(V_P, V_N))``; the backlog term and the quantile reconstructed], where λ_in is the arriving prompt-token rate, the
  higher of the window and recent estimates (`tokenscale.core.observe`), so a burst raises prefill in the tick that
  first sees it [reconstructed]; ``Q_tokens`` the prompt tokens waiting (waiting requests × mean prompt length),
  ``T_obj`` the tightest TTFT objective and ``T_cold`` the cold start (or ``backlog_drain_seconds`` for the sum): a
  prefiller started now serves only after its cold start, so it is sized for the backlog spread over the time until
  it serves plus the objective; ``Q_q`` the q-quantile of that demand over the demand window.
- Convertible decoders (`tokenscale.core.conversion`, decided in the same tick as the counts) take what capacity is
  short *now*: arrivals plus the backlog drained within ``T_obj`` (the FIFO queue's shortest prompts need it gone
  within theirs), against the Ready prefillers.
- Decoders ``N_D = ceil(Σ_b λ_b / V_D,b + C · f_res)`` [secondary per-bucket form; the reserve term is
  reconstructed]: λ_b the (input + predicted output) token arrival rate of bucket b, C the converted decoders after
  this tick and f_res the KV share each holds back for burst prefills, made up by extra decoders.

Zero load gives 0 for both, which the bounds raise to the minimum. Variants (registry names):
``tokenscale-no-conversion`` (no convertible decoders) and ``tokenscale-prefill-only`` (TokenScale's prefill
scaler, DistServe-style decode sizing, no conversion): the rows of the paper's ablation (algorithms.md §4.2).
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass, field
from typing import Literal

from tokenscale.core import buckets, conversion, reasons
from tokenscale.core.policies import distserve
from tokenscale.core.policies.base import BehaviorLimits, Recommendation, ceil_replicas, known_load
from tokenscale.core.profile import BUCKET_COUNT, BucketGrid
from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import LoadSignals, Observation, Reason, Role

__all__ = [
    "TokenScalePolicy",
    "TokenScaleState",
    "backlog_drain_tokens_per_second",
    "bucket_rates",
    "demand_quantile",
    "immediate_drain_seconds",
    "provisioning_drain_seconds",
    "record_demand",
    "sizing_arrival_rate",
]


@dataclass(frozen=True, slots=True)
class TokenScaleState:
    """Conversion memory, and the DistServe planner of the prefill-only variant's decode sizing."""

    conversion: conversion.ConversionState = field(default_factory=conversion.ConversionState)
    decode_plan: distserve.DistServeState = field(default_factory=distserve.DistServeState)
    demand_history: tuple[tuple[float, float], ...] = ()
    """(time, prefill demand tokens/s) of the ticks within the demand window, oldest first."""


def sizing_arrival_rate(load: LoadSignals) -> float:
    """λ_in for sizing: the higher of the window and recent arriving prompt-token rates."""
    recent = load.recent_arriving_prompt_tokens_per_second
    return max(load.arriving_prompt_tokens_per_second, recent if recent is not None else 0.0)


def immediate_drain_seconds(settings: ScalingSettings) -> float:
    """``T_obj``: the tightest TTFT objective of the SLO. The prefill queue is FIFO: a request waits for everything
    ahead of it, so the shortest prompts, whose objective is the tightest, need the whole backlog gone within it.
    Capacity that serves at once (Ready prefillers, converted decoders) is measured against this drain."""
    return min(seconds for _, seconds in settings.slo.ttft_tiers)


def provisioning_drain_seconds(settings: ScalingSettings) -> float:
    """``T_cold + T_obj``, or ``backlog_drain_seconds`` when set: the drain time new prefillers are sized for.

    A prefiller started now serves one cold start later; until then the backlog is drained (or not) by what is Ready
    and by converted decoders. Sizing new instances to drain it within ``T_obj`` asks, at a burst's onset, for many
    times the capacity the burst needs, all of it arriving after the queue is gone (docs/algorithms.md §4)."""
    configured = settings.tokenscale.backlog_drain_seconds
    if configured is not None:
        return configured
    return settings.profile.perf.cold_start_seconds + immediate_drain_seconds(settings)


def backlog_drain_tokens_per_second(*, load: LoadSignals, drain_seconds: float) -> float:
    """``Q_tokens / drain_seconds``: the waiting prompt tokens (waiting requests × mean prompt length) over the
    drain time."""
    return load.requests_waiting * load.mean_prompt_tokens / drain_seconds


_time = operator.itemgetter(0)
_demand = operator.itemgetter(1)


def record_demand(
    *,
    history: tuple[tuple[float, float], ...],
    now_seconds: float,
    demand_tokens_per_second: float,
    window_seconds: float,
) -> tuple[tuple[float, float], ...]:
    """``history`` with this tick's demand appended and entries ``window_seconds`` old or older dropped."""
    start = bisect.bisect_right(history, now_seconds - window_seconds, key=_time)
    return (*history[start:], (now_seconds, demand_tokens_per_second))


def demand_quantile(*, history: tuple[tuple[float, float], ...], quantile: float) -> float:
    """The ``quantile`` of the demands in ``history``: order statistics interpolated linearly at rank
    ``q·(n − 1)`` (numpy's default); 0 when empty."""
    values: list[float] = sorted(map(_demand, history))
    if not values:
        return 0.0
    rank = quantile * (len(values) - 1)
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


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

    def stabilization_seconds(self, *, settings: ScalingSettings) -> float:
        """The behaviour's window, at least one cold start: capacity released sooner, if needed again, is back
        only after a restart that costs as much as holding it would have."""
        return max(settings.behavior.scale_in_stabilization_seconds, settings.profile.perf.cold_start_seconds)

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: TokenScaleState
    ) -> tuple[Recommendation, TokenScaleState]:
        load = known_load(observation)
        velocities = settings.profile.velocities
        per_prefiller = min(velocities.prefill_tokens_per_second, velocities.network_tokens_per_second)
        arriving = sizing_arrival_rate(load)
        drain = backlog_drain_tokens_per_second(load=load, drain_seconds=provisioning_drain_seconds(settings))
        drain_now = backlog_drain_tokens_per_second(load=load, drain_seconds=immediate_drain_seconds(settings))
        history = record_demand(
            history=state.demand_history,
            now_seconds=observation.now_seconds,
            demand_tokens_per_second=arriving + drain,
            window_seconds=settings.tokenscale.demand_window_seconds,
        )
        sized = demand_quantile(history=history, quantile=settings.tokenscale.demand_quantile)
        prefill = ceil_replicas(sized / per_prefiller)
        ready_capacity = observation.prefill.ready_replicas * per_prefiller

        plan, conversion_state = conversion.plan_conversion(
            settings=settings,
            observation=observation,
            state=state.conversion,
            arriving_prompt_tokens_per_second=arriving + drain_now,
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

        if arriving + drain <= 0 and decode_tokens <= 0:
            found.append(Reason(reasons.ZERO_LOAD, "no arrivals: both roles go to their minimum"))
        else:
            found.append(
                Reason(
                    reasons.PREFILL_VELOCITY,
                    f"ceil(q{settings.tokenscale.demand_quantile:g} over "
                    f"{settings.tokenscale.demand_window_seconds:g} s of (arrivals + backlog drain) {sized:.0f} tok/s "
                    f"[now {arriving:.0f} + {drain:.0f}] / min(V_P {velocities.prefill_tokens_per_second:.0f}, "
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
                "backlog_drain_tokens_per_second": drain,
                "immediate_backlog_drain_tokens_per_second": drain_now,
                "sized_prefill_demand_tokens_per_second": sized,
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
        return recommendation, TokenScaleState(
            conversion=conversion_state, decode_plan=decode_plan, demand_history=history
        )
