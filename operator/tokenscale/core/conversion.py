"""Convertible decoders: which decode pods take prefill work during a burst, and when they go back.

The mechanism is TokenScale's [paper]; every rule below is [reconstructed] (algorithms.md §1.5).

- Ready prefill capacity ``cap_P = N_P,ready · min(V_P, V_N)``; the arriving rate λ is TokenScale's sizing
  rate (the higher of the window and recent estimates).
- A converted decoder runs *restricted chunked prefill*: each decode step also prefills a chunk of ``c`` tokens.
  The chunk shares the step's fixed cost (scheduler, weight read), so the step takes
  ``t(c) = ITL(B, K) + t_marg(c)`` with ``t_marg(c) = b·c + c₂·c²`` (`PerfModel.prefill_chunk_ms`; B the pod's
  running requests, K = KV usage × capacity). The chunk budget is the largest ``c`` with ``t(c) ≤ τ · TPOT``
  (`chunk_budget_tokens`), at most ``prefill_chunk_tokens`` when set, else the engine's token budget; the pod
  then adds ``V_conv = c / t(c)`` prefill tokens/s. The simulator sizes each mixed step with the same function.
- **Convert** when ``λ > h · cap_P``: Ready decode pods with fresh metrics, least decode load first (running
  requests, then KV usage, then name), each only if its budget is at least `MIN_CHUNK_TOKENS` (decode keeps its
  objective), until ``cap_P + Σ V_conv ≥ λ`` or ``convertible_decoders_max`` pods are converted.
- **Restore** a converted pod when (in this order) it has been converted ``max_conversion_seconds`` (it then
  rests as long before it may convert again), its decode step leaves no room for `MIN_CHUNK_TOKENS` within the
  TPOT objective itself (hysteresis against τ), or λ has stayed below ``l · cap_P`` (converted capacity not
  counted: enough new prefillers are Ready) for ``restore_after_ticks`` ticks *and* the restore is stable:
  ``restore_stabilization_seconds`` S have passed since the later of the pod's conversion and the last tick with
  ``λ > h · cap_P`` (conversion pressure). TokenScale's λ here includes the prompt backlog over the tightest TTFT
  objective, which the converted pods themselves drain within a tick or two; without S the low-water mark held two
  ticks after nearly every conversion and the backlog rebuilt moments later (docs/algorithms.md §4, "Flapping").
  A pod converted at t is thus restored by the low-water rule no earlier than ``t + S``: at most one
  convert/restore cycle per pod per S.
- ``l ≤ h`` (`tokenscale.core.settings.TokenScaleSettings`), so a low-water restore and a conversion never fall in
  one tick; a pod restored in a tick is never converted in it.

A pod's conversion time is its ``converted_since_seconds`` (set by whoever flipped its label) or else the time
this module first saw or made it converted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tokenscale.core import reasons
from tokenscale.core.profile import PerfModel
from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import Observation, PodView, Reason, Role, ServingRole

__all__ = [
    "MIN_CHUNK_TOKENS",
    "ConversionPlan",
    "ConversionState",
    "chunk_budget_tokens",
    "conversion_in_use",
    "converted_prefill_tokens_per_second",
    "expired_conversions",
    "mixed_step_ms",
    "plan_conversion",
]

_MAX_NAMES_IN_REASON = 3

MIN_CHUNK_TOKENS = 16
"""The smallest prefill chunk worth a mixed step: one KV block (16 tokens in vLLM). A decoder converts only if its
budget reaches it, and a converted one always prefills at least this much per step, so its prompts progress."""


@dataclass(frozen=True, slots=True)
class ConversionState:
    """Memory between ticks: low-water ticks in a row, the last tick with conversion pressure, conversion start
    times, pods resting after expiry."""

    low_water_ticks: int = 0
    pressure_seconds: float | None = None
    """When arrivals last exceeded ``h · cap_P``; ``None``: not since this memory began."""
    converted_since: tuple[tuple[str, float], ...] = ()
    resting_since: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class ConversionPlan:
    """Pods to convert and restore now, and the prefill capacity the converted pods give afterwards."""

    convert_pods: tuple[str, ...]
    restore_pods: tuple[str, ...]
    converted_after: int
    converted_prefill_tokens_per_second: float
    reasons: tuple[Reason, ...]


def chunk_budget_tokens(*, perf: PerfModel, room_ms: float, cap_tokens: int, prior_tokens: float = 0.0) -> int:
    """The largest whole ``c`` in ``[0, cap_tokens]`` with ``perf.prefill_chunk_ms(c, prior_tokens) ≤ room_ms``.

    ``room_ms`` is what the step may still spend on prefill (e.g. ``τ · TPOT − ITL``); the chunk pays no fixed cost.
    Solves ``c₂·c² + (b + 2·c₂·p)·c − room ≤ 0`` for its positive root, then checks the integers around it.
    """
    if room_ms <= 0.0 or cap_tokens <= 0:
        return 0
    quadratic = perf.prefill_ms_per_token_squared
    linear = perf.prefill_ms_per_token + 2.0 * quadratic * prior_tokens
    if quadratic > 0.0:
        root = (-linear + math.sqrt(linear * linear + 4.0 * quadratic * room_ms)) / (2.0 * quadratic)
    elif linear > 0.0:
        root = room_ms / linear
    else:
        return cap_tokens
    tokens = min(cap_tokens, math.floor(root))
    while tokens > 0 and perf.prefill_chunk_ms(tokens=tokens, prior_tokens=prior_tokens) > room_ms:
        tokens -= 1
    while tokens < cap_tokens and perf.prefill_chunk_ms(tokens=tokens + 1, prior_tokens=prior_tokens) <= room_ms:
        tokens += 1
    return tokens


def _decode_step_ms(*, perf: PerfModel, pod: PodView) -> float:
    return perf.decode_step_ms(
        kv_tokens=pod.kv_cache_usage_ratio * perf.kv_capacity_tokens, sequences=pod.requests_running
    )


def _chunk_for(*, perf: PerfModel, pod: PodView, step_limit_ms: float, cap_tokens: int) -> int:
    """The pod's chunk budget: the largest chunk keeping its mixed step within ``step_limit_ms``."""
    return chunk_budget_tokens(
        perf=perf, room_ms=step_limit_ms - _decode_step_ms(perf=perf, pod=pod), cap_tokens=cap_tokens
    )


def mixed_step_ms(*, perf: PerfModel, pod: PodView, chunk_tokens: int) -> float:
    """One decode step of ``pod`` with a prefill chunk of ``chunk_tokens`` folded in: ``ITL(B, K) + t_marg(c)``."""
    return _decode_step_ms(perf=perf, pod=pod) + perf.prefill_chunk_ms(tokens=chunk_tokens)


def converted_prefill_tokens_per_second(*, perf: PerfModel, pod: PodView, chunk_tokens: int) -> float:
    """``V_conv = c / t(c)``: prefill tokens/s a converted decoder adds at its current decode load."""
    return 1000.0 * chunk_tokens / mixed_step_ms(perf=perf, pod=pod, chunk_tokens=chunk_tokens)


def conversion_in_use(*, converts: bool, settings: ScalingSettings) -> bool:
    """Whether decoders may convert: the policy uses them and ``convertible_decoders_max`` is above 0."""
    return converts and settings.tokenscale.convertible_decoders_max > 0


def _converted(observation: Observation) -> list[PodView]:
    return [p for p in observation.decode.pods if p.serving_role is ServingRole.CONVERTED]


def _since(pod: PodView, remembered: dict[str, float], now_seconds: float) -> float:
    if pod.converted_since_seconds is not None:
        return pod.converted_since_seconds
    return remembered.get(pod.name, now_seconds)


def _calm_seconds(*, since: float, pressure_seconds: float | None, now: float) -> float:
    """Seconds since the later of a pod's conversion and the last conversion pressure."""
    latest = since if pressure_seconds is None else max(since, pressure_seconds)
    return now - latest


def expired_conversions(*, settings: ScalingSettings, observation: Observation) -> tuple[str, ...]:
    """Converted pods whose own ``converted_since_seconds`` is ``max_conversion_seconds`` or more ago.

    Needs no load, so it also applies while a decision holds for unknown input.
    """
    limit = settings.tokenscale.max_conversion_seconds
    return tuple(
        p.name
        for p in _converted(observation)
        if p.converted_since_seconds is not None and observation.now_seconds - p.converted_since_seconds >= limit
    )


def _candidates(pods: Sequence[PodView], excluded: set[str]) -> list[PodView]:
    eligible = [
        p
        for p in pods
        if p.role is Role.DECODE
        and p.serving_role is ServingRole.DECODE
        and p.ready
        and p.load_known
        and p.name not in excluded
    ]
    eligible.sort(key=lambda p: (p.requests_running, p.kv_cache_usage_ratio, p.name))
    return eligible


def plan_conversion(
    *,
    settings: ScalingSettings,
    observation: Observation,
    state: ConversionState,
    arriving_prompt_tokens_per_second: float,
    ready_prefill_tokens_per_second: float,
    enabled: bool,
) -> tuple[ConversionPlan, ConversionState]:
    """This tick's conversions and restorations (module docstring), and the next state.

    With ``enabled`` false (see `conversion_in_use`) the plan is empty: `tokenscale.core.decide` restores the
    converted pods of a policy that does not use them.
    """
    now = observation.now_seconds
    knobs = settings.tokenscale
    perf = settings.profile.perf
    cap = knobs.prefill_chunk_tokens if knobs.prefill_chunk_tokens is not None else perf.max_num_batched_tokens
    tpot_ms = 1000.0 * settings.slo.tpot_seconds
    headroom_ms = knobs.tpot_headroom_ratio * tpot_ms
    converted = _converted(observation)
    remembered = dict(state.converted_since)
    resting = {name: t for name, t in state.resting_since if now - t < knobs.max_conversion_seconds}
    found: list[Reason] = []
    restore: list[str] = []

    if not enabled:
        return ConversionPlan((), (), 0, 0.0, ()), ConversionState()

    for pod in converted:
        age = now - _since(pod, remembered, now)
        if age >= knobs.max_conversion_seconds:
            restore.append(pod.name)
            resting[pod.name] = now
            found.append(
                Reason(
                    reasons.CONVERSION_EXPIRED,
                    f"{pod.name} converted {age:.0f} s >= {knobs.max_conversion_seconds:g} s",
                    Role.DECODE,
                )
            )
        elif (
            pod.load_known and _chunk_for(perf=perf, pod=pod, step_limit_ms=tpot_ms, cap_tokens=cap) < MIN_CHUNK_TOKENS
        ):
            restore.append(pod.name)
            found.append(
                Reason(
                    reasons.CONVERSION_BREAKS_TPOT,
                    f"{pod.name} decode step {_decode_step_ms(perf=perf, pod=pod):.0f} ms leaves no room for a "
                    f"{MIN_CHUNK_TOKENS}-token chunk within TPOT {tpot_ms:g} ms",
                    Role.DECODE,
                )
            )

    pressure = arriving_prompt_tokens_per_second > knobs.activate_ratio * ready_prefill_tokens_per_second
    pressure_seconds = now if pressure else state.pressure_seconds
    low_water = arriving_prompt_tokens_per_second < knobs.deactivate_ratio * ready_prefill_tokens_per_second
    low_water_ticks = state.low_water_ticks + 1 if low_water and converted else 0
    if low_water_ticks >= knobs.restore_after_ticks:
        due: list[str] = []
        held: list[tuple[str, float]] = []
        for pod in converted:
            if pod.name in restore:
                continue
            calm = _calm_seconds(since=_since(pod, remembered, now), pressure_seconds=pressure_seconds, now=now)
            if calm >= knobs.restore_stabilization_seconds:
                due.append(pod.name)
            else:
                held.append((pod.name, calm))
        if due:
            restore.extend(due)
            found.append(
                Reason(
                    reasons.CONVERSION_LOW_WATER,
                    f"arrivals {arriving_prompt_tokens_per_second:.0f} tok/s below {knobs.deactivate_ratio:g} x "
                    f"Ready prefill capacity {ready_prefill_tokens_per_second:.0f} tok/s for {low_water_ticks} "
                    f"ticks: restoring {len(due)}",
                    Role.DECODE,
                )
            )
        if held:
            # Held pods keep counting low-water ticks: each goes at the first tick its stabilisation has passed.
            shown = ", ".join(f"{name} {calm:.0f} s" for name, calm in held[:_MAX_NAMES_IN_REASON])
            found.append(
                Reason(
                    reasons.CONVERSION_STABILIZED,
                    f"low water for {low_water_ticks} ticks, but restoring waits until "
                    f"{knobs.restore_stabilization_seconds:g} s have passed since the conversion or the last "
                    f"conversion pressure ({shown})",
                    Role.DECODE,
                )
            )
        else:
            low_water_ticks = 0

    restored = set(restore)
    remaining = [p for p in converted if p.name not in restored]
    # A converted pod prefills at least MIN_CHUNK_TOKENS per step even when decode leaves less room.
    converted_capacity = sum(
        converted_prefill_tokens_per_second(
            perf=perf,
            pod=p,
            chunk_tokens=max(MIN_CHUNK_TOKENS, _chunk_for(perf=perf, pod=p, step_limit_ms=headroom_ms, cap_tokens=cap)),
        )
        for p in remaining
    )
    convert: list[str] = []
    if pressure:
        deficit = arriving_prompt_tokens_per_second - ready_prefill_tokens_per_second - converted_capacity
        slots = knobs.convertible_decoders_max - len(remaining)
        for pod in _candidates(observation.decode.pods, restored | set(resting)):
            if deficit <= 0 or slots <= 0:
                break
            chunk = _chunk_for(perf=perf, pod=pod, step_limit_ms=headroom_ms, cap_tokens=cap)
            if chunk < MIN_CHUNK_TOKENS:
                continue
            gained = converted_prefill_tokens_per_second(perf=perf, pod=pod, chunk_tokens=chunk)
            convert.append(pod.name)
            converted_capacity += gained
            deficit -= gained
            slots -= 1
        if convert:
            found.append(
                Reason(
                    reasons.BURST_CONVERSION,
                    f"arrivals {arriving_prompt_tokens_per_second:.0f} tok/s > {knobs.activate_ratio:g} x Ready "
                    f"prefill capacity {ready_prefill_tokens_per_second:.0f} tok/s: converting {len(convert)}",
                    Role.DECODE,
                )
            )
        if deficit > 0:
            found.append(
                Reason(
                    reasons.CONVERSION_CAPPED,
                    f"{deficit:.0f} tok/s beyond Ready and converted prefill capacity; no further decoder may "
                    f"convert (max {knobs.convertible_decoders_max}, TPOT headroom {knobs.tpot_headroom_ratio:g})",
                    Role.DECODE,
                )
            )

    next_since = tuple([(p.name, _since(p, remembered, now)) for p in remaining] + [(name, now) for name in convert])
    present = {p.name for p in observation.decode.pods}
    next_state = ConversionState(
        low_water_ticks=low_water_ticks,
        pressure_seconds=pressure_seconds,
        converted_since=next_since,
        resting_since=tuple(sorted((n, t) for n, t in resting.items() if n in present)),
    )
    plan = ConversionPlan(
        convert_pods=tuple(convert),
        restore_pods=tuple(restore),
        converted_after=len(remaining) + len(convert),
        converted_prefill_tokens_per_second=converted_capacity,
        reasons=tuple(found),
    )
    return plan, next_state
