"""DistServe-style planning: replicas from the request rate and each instance's goodput (algorithms.md §3.4).

``n_P = ceil(R / goodput_P)``, ``n_D = ceil(R / goodput_D)`` [paper: DistServe's replication rule], where R is
the mean arriving request rate over the last ``rate_window_seconds`` (60 s), re-planned every
``replan_interval_seconds`` (30 s) and held in between [reconstructed emulation: DistServe re-plans on a
workload shift, not in a fast loop]. No burst logic. Goodputs come from the simulator; without them they are
derived from the profile [reconstructed]: ``goodput_P = min(V_P, V_N) / L̄_in`` and
``goodput_D = V_D,mid / (L̄_in + L̄_out)`` at the grid's middle representative lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenscale.core import reasons
from tokenscale.core.policies.base import BehaviorLimits, Recommendation, ceil_replicas, known_load
from tokenscale.core.settings import DistServeSettings, ScalingSettings
from tokenscale.core.types import Observation, Reason

__all__ = ["DistServePlan", "DistServePolicy", "DistServeState", "plan_distserve", "resolved_settings"]

_MIDDLE_BUCKET = 4


def resolved_settings(settings: ScalingSettings) -> DistServeSettings:
    """The configured DistServe settings, or goodputs derived from the profile (module docstring)."""
    if settings.distserve is not None:
        return settings.distserve
    profile = settings.profile
    velocities = profile.velocities
    prompt_tokens, output_tokens = profile.buckets.representative(_MIDDLE_BUCKET)
    prefill_capacity = min(velocities.prefill_tokens_per_second, velocities.network_tokens_per_second)
    return DistServeSettings(
        prefill_goodput_requests_per_second=prefill_capacity / prompt_tokens,
        decode_goodput_requests_per_second=velocities.decode_tokens_per_second[_MIDDLE_BUCKET]
        / (prompt_tokens + output_tokens),
    )


@dataclass(frozen=True, slots=True)
class DistServeState:
    """Recent request rates ``(time, requests/s)`` and the plan in force."""

    rates: tuple[tuple[float, float], ...] = ()
    planned_at_seconds: float | None = None
    prefill_replicas: int = 0
    decode_replicas: int = 0
    mean_requests_per_second: float = 0.0


@dataclass(frozen=True, slots=True)
class DistServePlan:
    """The plan in force after this tick, and whether it was made now."""

    prefill_replicas: int
    decode_replicas: int
    replanned: bool
    mean_requests_per_second: float


def plan_distserve(
    *, settings: ScalingSettings, now_seconds: float, requests_per_second: float, state: DistServeState
) -> tuple[DistServePlan, DistServeState]:
    """Record this tick's rate; re-plan when none is in force or the interval has passed."""
    knobs = resolved_settings(settings)
    oldest = now_seconds - knobs.rate_window_seconds
    rates = (*(entry for entry in state.rates if entry[0] >= oldest), (now_seconds, requests_per_second))
    due = state.planned_at_seconds is None or now_seconds - state.planned_at_seconds >= knobs.replan_interval_seconds
    if not due:
        held = DistServePlan(state.prefill_replicas, state.decode_replicas, False, state.mean_requests_per_second)
        kept = DistServeState(
            rates,
            state.planned_at_seconds,
            state.prefill_replicas,
            state.decode_replicas,
            held.mean_requests_per_second,
        )
        return held, kept
    mean = sum(rate for _, rate in rates) / len(rates)
    prefill = ceil_replicas(mean / knobs.prefill_goodput_requests_per_second)
    decode = ceil_replicas(mean / knobs.decode_goodput_requests_per_second)
    return DistServePlan(prefill, decode, True, mean), DistServeState(rates, now_seconds, prefill, decode, mean)


@dataclass(frozen=True, slots=True)
class DistServePolicy(BehaviorLimits):
    """The DistServe-style baseline: both roles from the request rate."""

    name: str = "distserve"
    converts: bool = False

    def initial_state(self, *, settings: ScalingSettings) -> DistServeState:
        del settings
        return DistServeState()

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: DistServeState
    ) -> tuple[Recommendation, DistServeState]:
        load = known_load(observation)
        plan, next_state = plan_distserve(
            settings=settings,
            now_seconds=observation.now_seconds,
            requests_per_second=load.arriving_requests_per_second,
            state=state,
        )
        knobs = resolved_settings(settings)
        if plan.replanned:
            reason = Reason(
                reasons.REPLANNED,
                f"mean {plan.mean_requests_per_second:.2f} req/s over {knobs.rate_window_seconds:g} s: "
                f"prefill ceil(/{knobs.prefill_goodput_requests_per_second:.2f}) = {plan.prefill_replicas}, "
                f"decode ceil(/{knobs.decode_goodput_requests_per_second:.2f}) = {plan.decode_replicas}",
            )
        else:
            reason = Reason(reasons.PLAN_HELD, f"next plan within {knobs.replan_interval_seconds:g} s of the last")
        recommendation = Recommendation(
            prefill_replicas=plan.prefill_replicas,
            decode_replicas=plan.decode_replicas,
            reasons=(reason,),
            inputs={
                "arriving_requests_per_second": load.arriving_requests_per_second,
                "planned_requests_per_second": plan.mean_requests_per_second,
                "prefill_goodput_requests_per_second": knobs.prefill_goodput_requests_per_second,
                "decode_goodput_requests_per_second": knobs.decode_goodput_requests_per_second,
            },
        )
        return recommendation, next_state
