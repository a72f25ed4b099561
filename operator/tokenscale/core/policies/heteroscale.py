"""HeteroScale: one throughput signal sizes both roles at a P/D ratio, with a latency safety net and soft
scale-in (algorithms.md §2.3).

- **Proportional** [secondary; our form reconstructed]: the metric over the per-decoder target is the capacity
  demand ``c = decode TPS / T_D`` (in decoders), split into roles by the ratio: ``I_D = ceil(c)``,
  ``I_P = ceil(r · c)`` (each role rounded on its own, so a fraction of a decoder does not cost a whole ``r``
  prefillers). ``T_D`` (per-decoder target) and ``r`` (P:D ratio) are configured (the paper sets both from a
  pressure test of the service under its workload) or derived from the profile at the grid's middle bucket (input
  I, output O) [reconstructed]: ``T_D = V_D,mid · O / (I + O)`` (generation tokens/s one decoder sustains at the
  TPOT objective) and ``r = (I / min(V_P, V_N)) / ((I + O) / V_D,mid)`` (prefill versus decode instance-seconds
  per request).
- **Hysteresis** on ``u = max(c / D, r · c / P)``, the busier role's share of its target: scale out when
  ``u > 1 + tolerance_up``, in when ``u < 1 − tolerance_down``; a scale-in closes ``scale_in_damping`` of each
  role's gap to its target (at least one pod, at most the behaviour's step); P and D always move in the same
  decision and never against each other.
- **Cooldowns**: ``scale_out_cooldown_seconds`` since the last scale-out, ``scale_in_cooldown_seconds`` since the
  last change of either kind.
- **Latency safety net** (scale-out only, within the scale-out cooldown) [secondary: +10%/+20%; tiers
  reconstructed]: inter-token-latency p90 against the TPOT objective and TTFT p90 against the TTFT tier of the
  mean prompt; above ``severe_latency_ratio`` (1.2) × objective both roles grow by ``severe_step_ratio`` (20%),
  above ``moderate_latency_ratio`` (1.0) × by ``moderate_step_ratio`` (10%).
- **Soft scale-in** [secondary; state machine reconstructed]: a scale-in first *withdraws* the victims (least
  loaded Ready pods; converted decoders never) from routing, keeping replicas, and watches for
  ``soft_scale_in_seconds``. It is aborted (victims rejoin; counts as a scale-in for the cooldown) on any latency
  breach or when the decoders still serving would run above ``1 + tolerance_up`` × target; when the period ends
  with every input known, the replicas fall by the victims (removed first); otherwise it keeps watching. 0 s
  scales in directly.

The shared scale-in stabilisation is replaced by the cooldowns and the observation period (window 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenscale.core import guards, reasons
from tokenscale.core.policies.base import BehaviorLimits, Recommendation, ceil_replicas, known_load
from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import LoadSignals, Observation, PodView, Reason, ServingRole

__all__ = [
    "HeteroScalePolicy",
    "HeteroScaleState",
    "SoftScaleIn",
    "latency_step_ratio",
    "prefill_to_decode_ratio",
    "target_decode_tokens_per_second",
]

_MIDDLE_BUCKET = 4


def target_decode_tokens_per_second(settings: ScalingSettings) -> float:
    """T_D: configured, or the generation tokens/s one decoder sustains at the middle bucket."""
    configured = settings.heteroscale.target_decode_tokens_per_second
    if configured is not None:
        return configured
    prompt, output = settings.profile.buckets.representative(_MIDDLE_BUCKET)
    return settings.profile.velocities.decode_tokens_per_second[_MIDDLE_BUCKET] * output / (prompt + output)


def prefill_to_decode_ratio(settings: ScalingSettings) -> float:
    """r: configured, or prefill versus decode instance-seconds per request at the middle bucket."""
    configured = settings.heteroscale.prefill_to_decode_ratio
    if configured is not None:
        return configured
    velocities = settings.profile.velocities
    prompt, output = settings.profile.buckets.representative(_MIDDLE_BUCKET)
    prefill_seconds = prompt / min(velocities.prefill_tokens_per_second, velocities.network_tokens_per_second)
    decode_seconds = (prompt + output) / velocities.decode_tokens_per_second[_MIDDLE_BUCKET]
    return prefill_seconds / decode_seconds


def latency_step_ratio(*, settings: ScalingSettings, load: LoadSignals) -> tuple[float, str]:
    """(growth share, reason code) of the latency safety net; (0, "") without a breach."""
    knobs = settings.heteroscale
    breaches = []
    if load.itl_p90_seconds is not None:
        breaches.append(load.itl_p90_seconds / settings.slo.tpot_seconds)
    if load.ttft_p90_seconds is not None:
        tier = settings.slo.ttft_seconds_for(input_tokens=int(load.mean_prompt_tokens))
        breaches.append(load.ttft_p90_seconds / tier)
    worst = max(breaches, default=0.0)
    if worst > knobs.severe_latency_ratio:
        return knobs.severe_step_ratio, reasons.LATENCY_SEVERE
    if worst > knobs.moderate_latency_ratio:
        return knobs.moderate_step_ratio, reasons.LATENCY_MODERATE
    return 0.0, ""


@dataclass(frozen=True, slots=True)
class SoftScaleIn:
    """A scale-in under observation: when it started and the withdrawn pods of each role."""

    started_seconds: float
    prefill_pods: tuple[str, ...]
    decode_pods: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HeteroScaleState:
    last_scale_out_seconds: float | None = None
    last_scale_in_seconds: float | None = None
    soft: SoftScaleIn | None = None


def _victims(pods: Sequence[PodView], count: int) -> tuple[str, ...]:
    """The ``count`` least loaded Ready pods that may leave (never a converted decoder)."""
    eligible = [p for p in pods if p.ready and p.serving_role is not ServingRole.CONVERTED]
    eligible.sort(key=lambda p: (p.requests_running + p.requests_waiting, p.kv_cache_usage_ratio, p.name))
    return tuple(p.name for p in eligible[: max(0, count)])


@dataclass(frozen=True, slots=True)
class HeteroScalePolicy(BehaviorLimits):
    """HeteroScale's coordinated P/D policy (module docstring)."""

    name: str = "heteroscale"
    converts: bool = False

    def initial_state(self, *, settings: ScalingSettings) -> HeteroScaleState:
        del settings
        return HeteroScaleState()

    def stabilization_seconds(self, *, settings: ScalingSettings) -> float:
        del settings
        return 0.0

    def recommend(
        self, *, settings: ScalingSettings, observation: Observation, state: HeteroScaleState
    ) -> tuple[Recommendation, HeteroScaleState]:
        load = known_load(observation)
        knobs = settings.heteroscale
        now = observation.now_seconds
        target = target_decode_tokens_per_second(settings)
        ratio = prefill_to_decode_ratio(settings)
        prefill_now, decode_now = observation.prefill.spec_replicas, observation.decode.spec_replicas
        tps = load.generation_tokens_per_second
        demand = tps / target
        utilisation = max(_share(demand, decode_now), _share(ratio * demand, prefill_now))
        decode_target = ceil_replicas(demand)
        prefill_target = max(settings.prefill.min_replicas, ceil_replicas(ratio * demand))
        step, latency_code = latency_step_ratio(settings=settings, load=load)
        inputs = {
            "decode_tokens_per_second": tps,
            "target_decode_tokens_per_second": target,
            "prefill_to_decode_ratio": ratio,
            "decode_utilisation": utilisation,
            "ttft_p90_seconds": load.ttft_p90_seconds or 0.0,
            "itl_p90_seconds": load.itl_p90_seconds or 0.0,
        }
        proportional = (
            f"decode {tps:.0f} tok/s at {utilisation:.2f} x target {target:.0f} per decoder: "
            f"I_D = {decode_target}, I_P = ceil({ratio:.2f} x {demand:.2f}) = {prefill_target}"
        )
        found: list[Reason] = []
        rejoin: tuple[str, ...] = ()

        def answer(
            prefill: int, decode: int, next_state: HeteroScaleState, **pods: tuple[str, ...]
        ) -> tuple[Recommendation, HeteroScaleState]:
            return Recommendation(prefill, decode, reasons=tuple(found), inputs=inputs, **pods), next_state

        if state.soft is not None:
            soft = _present(state.soft, observation)
            serving = decode_now - len(soft.decode_pods)
            remaining = tps / (target * serving) if serving > 0 else float("inf")
            if step > 0 or remaining > 1.0 + knobs.tolerance_up:
                why = "latency breach" if step > 0 else f"the remaining decoders would run at {remaining:.2f} x target"
                found.append(Reason(reasons.SOFT_SCALE_IN_ABORTED, f"{why}: withdrawn pods rejoin"))
                rejoin = soft.prefill_pods + soft.decode_pods
                # An aborted attempt counts as a scale-in for the cooldown, so withdrawals do not flap.
                state = HeteroScaleState(state.last_scale_out_seconds, now, None)
            elif now - soft.started_seconds >= knobs.soft_scale_in_seconds and not observation.unknown_reasons:
                prefill = prefill_now - len(soft.prefill_pods)
                decode = decode_now - len(soft.decode_pods)
                found.append(
                    Reason(
                        reasons.SOFT_SCALE_IN_COMPLETED,
                        f"objectives held for {knobs.soft_scale_in_seconds:g} s: removing the withdrawn pods "
                        f"({prefill_now} -> {prefill} prefill, {decode_now} -> {decode} decode)",
                    )
                )
                return answer(prefill, decode, HeteroScaleState(state.last_scale_out_seconds, now, None))
            else:
                found.append(
                    Reason(
                        reasons.SOFT_SCALE_IN_OBSERVING,
                        f"{len(soft.prefill_pods)} prefill and {len(soft.decode_pods)} decode pods withdrawn "
                        f"since {now - soft.started_seconds:.0f} s",
                    )
                )
                return answer(prefill_now, decode_now, HeteroScaleState(*_times(state), soft))

        may_scale_out = guards.cooldown_elapsed(
            now_seconds=now,
            last_seconds=state.last_scale_out_seconds,
            cooldown_seconds=knobs.scale_out_cooldown_seconds,
        )
        last_change = max(
            (t for t in (state.last_scale_out_seconds, state.last_scale_in_seconds) if t is not None), default=None
        )
        may_scale_in = guards.cooldown_elapsed(
            now_seconds=now, last_seconds=last_change, cooldown_seconds=knobs.scale_in_cooldown_seconds
        )
        wants_out = step > 0 or utilisation > 1.0 + knobs.tolerance_up
        wants_in = not wants_out and utilisation < 1.0 - knobs.tolerance_down

        if (wants_out and not may_scale_out) or (wants_in and not may_scale_in):
            found.append(Reason(reasons.COOLDOWN_ACTIVE, f"{proportional}; waiting for the cooldown"))
            return answer(prefill_now, decode_now, state, rejoin_pods=rejoin)

        if wants_out:
            decode = max(decode_now, decode_target, settings.decode.min_replicas)
            prefill = max(prefill_now, prefill_target)
            if step > 0:
                decode = max(decode, ceil_replicas(decode_now * (1.0 + step)))
                prefill = max(prefill, ceil_replicas(prefill_now * (1.0 + step)))
                found.append(
                    Reason(latency_code, f"latency p90 over its objective: both roles +{step:.0%}; {proportional}")
                )
            else:
                found.append(Reason(reasons.DECODE_THROUGHPUT, proportional))
            next_state = HeteroScaleState(now, state.last_scale_in_seconds, None)
            return answer(prefill, decode, next_state, rejoin_pods=rejoin)

        if wants_in:
            decode, prefill = self._scale_in_targets(
                settings=settings,
                decode_now=decode_now,
                prefill_now=prefill_now,
                decode_target=decode_target,
                prefill_target=prefill_target,
            )
            if (decode, prefill) != (decode_now, prefill_now) and observation.unknown_reasons:
                found.append(
                    Reason(
                        reasons.SCALE_IN_BLOCKED_UNKNOWN_INPUT, f"{proportional}; no scale-in while pods are unknown"
                    )
                )
                return answer(prefill_now, decode_now, state, rejoin_pods=rejoin)
            if (decode, prefill) != (decode_now, prefill_now):
                if knobs.soft_scale_in_seconds <= 0:
                    found.append(Reason(reasons.DECODE_THROUGHPUT, proportional))
                    return answer(prefill, decode, HeteroScaleState(state.last_scale_out_seconds, now, None))
                soft = SoftScaleIn(
                    started_seconds=now,
                    prefill_pods=_victims(observation.prefill.pods, prefill_now - prefill),
                    decode_pods=_victims(observation.decode.pods, decode_now - decode),
                )
                found.append(
                    Reason(
                        reasons.SOFT_SCALE_IN_STARTED,
                        f"{proportional}; withdrawing {len(soft.prefill_pods)} prefill and "
                        f"{len(soft.decode_pods)} decode pods for {knobs.soft_scale_in_seconds:g} s",
                    )
                )
                next_state = HeteroScaleState(*_times(state), soft)
                return answer(
                    prefill_now,
                    decode_now,
                    next_state,
                    withdraw_pods=soft.prefill_pods + soft.decode_pods,
                    rejoin_pods=rejoin,
                )

        found.append(Reason(reasons.WITHIN_TOLERANCE, proportional))
        return answer(prefill_now, decode_now, state, rejoin_pods=rejoin)

    def _scale_in_targets(
        self, *, settings: ScalingSettings, decode_now: int, prefill_now: int, decode_target: int, prefill_target: int
    ) -> tuple[int, int]:
        """Damped, step-limited scale-in of each role toward its target (never below its minimum); neither rises."""
        step = settings.behavior.max_scale_down_step
        damping = settings.heteroscale.scale_in_damping

        def lowered(now: int, target: int, minimum: int) -> int:
            removed = min(step, max(1, ceil_replicas(damping * (now - target))))
            return min(now, max(minimum, target, now - removed))

        return (
            lowered(decode_now, decode_target, settings.decode.min_replicas),
            lowered(prefill_now, prefill_target, settings.prefill.min_replicas),
        )


def _share(demand: float, replicas: int) -> float:
    """``demand / replicas``: the role's share of its target (infinite with demand on no replicas)."""
    if replicas > 0:
        return demand / replicas
    return float("inf") if demand > 0 else 0.0


def _times(state: HeteroScaleState) -> tuple[float | None, float | None]:
    return state.last_scale_out_seconds, state.last_scale_in_seconds


def _present(soft: SoftScaleIn, observation: Observation) -> SoftScaleIn:
    """The withdrawal without pods that have gone meanwhile."""
    prefill = {p.name for p in observation.prefill.pods}
    decode = {p.name for p in observation.decode.pods}
    return SoftScaleIn(
        soft.started_seconds,
        tuple(n for n in soft.prefill_pods if n in prefill),
        tuple(n for n in soft.decode_pods if n in decode),
    )
