"""The oracle: the cheapest provisioning found that meets the SLO target knowing the future and starting instances
instantly, and the demand bound below it. The oracle's GPU-hours are the denominator of every ``cost_vs_oracle``.

**Demand per bin** (bins of ``bin_seconds``, default 10 s, the control window):

- prefill: the bin's prompt tokens ÷ ``min(V_P(L̄), V_N)`` prefiller-seconds, where ``V_P(L̄)`` is
  `tokenscale.core.velocity.prefill_tokens_per_second` at the bin's mean prompt length (full steps of the engine's
  token budget: its highest throughput);
- decode: request r occupies ``(I_r + O_r) / V_D(I_r, O_r)`` decoder-seconds, where ``V_D`` is
  `tokenscale.core.velocity.decode_tokens_per_second` for its own lengths: the largest concurrency the KV cache
  holds whose step time still meets the TPOT objective; summed over the bin's arrivals.

The **demand schedule** (`oracle_schedule`) rounds each bin's instance-seconds ÷ bin up to instances, at least the
roles' minimum replicas; the scoreboard sizes the static baseline, the bounds and the warm start with it. The
**demand bound** (`lower_bound_gpu_hours`) is the same without the rounding: ``Σ_bins max(min · bin,
instance-seconds)`` per role. No provisioning that meets the objectives processes more tokens per instance than
these peak rates, so it is a lower bound on cost, up to work spilling over a bin's edge (by at most the TTFT
objective) and a request's decoding charged to its arrival bin. Neither meets the SLO: a bin sized for its mean
rate queues its bursts, and a full prefill step (8192 tokens ≈ 0.29 s on an 8B H100) alone outlasts the 0.25 s
objective of a short prompt queued behind it.

**The oracle** (`find_oracle`): a plan per second (``plan_bin_seconds``, one control tick) that, replayed through
the simulator with instant starts, meets ``target_attainment`` of the requests (default 0.95, the issue's goal), as
cheap as a greedy search finds:

1. *start* from the demand schedule's prefill rule per second, ``N_k = max(min, ceil(D_k / (V_k · 1 s)))`` (``D_k``
   prompt tokens arriving in second k, ``V_k = min(V_P(L̄_k), V_N)``; each second's capacity covers its arrivals, so
   no backlog carries over in the fluid sense), and decode from the demand schedule's 10 s bins (a request decodes for
   seconds; with prefill to spare, that decode alone meets the SLO for more than 99% of requests on the bundled
   traces);
2. *replay* the plan (`tokenscale.sim.loop.run_policy` with the schedule and no cold start) and find the requests
   that miss: a TTFT miss is charged to the prefill of its arrival second, a TPOT miss to the decode of every second
   it decoded in;
3. *add* one instance to the seconds with the most misses of each role, the fewest seconds holding
   ``step_share`` (half) of that role's misses, and repeat from 2 until the target is met;
4. *trim* the last step: of the instances it added (most misses first), keep the shortest prefix that still meets
   the target (bisection, each probe a replay, to within a sixteenth of the step).

Why (near-)cheapest: every instance-second the search adds is where requests missed, one at a time, so it buys
capacity only where the replay showed it was short; the result is bracketed by the demand bound below (reported as
``oracle_lower_bound_gpu_hours``) and is itself a plan that meets the target. A uniform headroom (every second's
demand × h, h bisected until the target is met) costs 4–11% more on the scoreboard's four scenarios
(docs/simulator.md, "The oracle"). The search stops after ``max_replays`` replays and then returns its last plan,
whose attainment the scoreboard shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenscale.core import velocity
from tokenscale.core.profile import Profile
from tokenscale.core.settings import ScalingSettings
from tokenscale.sim import loop, report
from tokenscale.sim.traces import Trace

__all__ = [
    "DEFAULT_BIN_SECONDS",
    "DEFAULT_TARGET_ATTAINMENT",
    "Oracle",
    "OracleSchedule",
    "cold_start_overhead_instance_seconds",
    "demand_plan",
    "find_oracle",
    "lower_bound_gpu_hours",
    "oracle_schedule",
    "replay",
]

DEFAULT_BIN_SECONDS = 10.0
"""Bins of the demand bound: the control window."""
DEFAULT_TARGET_ATTAINMENT = 0.95
"""SLO attainment the oracle's plan must reach: the issue's goal for TokenScale."""
PLAN_BIN_SECONDS = 1.0
"""Bins of the oracle's plan: one control tick."""


@dataclass(frozen=True, eq=False)
class OracleSchedule:
    """Instances per role per bin: bin ``k`` covers ``[k·bin_seconds, (k+1)·bin_seconds)``."""

    bin_seconds: float
    prefill_instances: npt.NDArray[np.int64]
    decode_instances: npt.NDArray[np.int64]
    gpus_per_instance: int
    horizon_seconds: float

    @property
    def gpu_hours(self) -> float:
        """GPU-hours of the schedule over [0, horizon] (the last bin may be partial)."""
        widths = np.full(len(self.prefill_instances), self.bin_seconds)
        if len(widths):
            widths[-1] = self.horizon_seconds - self.bin_seconds * (len(widths) - 1)
        instances = self.prefill_instances + self.decode_instances
        return float(np.sum(instances * widths)) * self.gpus_per_instance / 3600.0

    def at(self, t_seconds: float) -> tuple[int, int]:
        """(prefill, decode) instances the schedule holds at ``t_seconds`` (the last bin's after the horizon)."""
        k = min(int(t_seconds // self.bin_seconds), len(self.prefill_instances) - 1)
        return int(self.prefill_instances[max(k, 0)]), int(self.decode_instances[max(k, 0)])

    def peak(self) -> tuple[int, int]:
        return int(self.prefill_instances.max()), int(self.decode_instances.max())

    def with_added(self, *, prefill: npt.NDArray[np.int64], decode: npt.NDArray[np.int64]) -> OracleSchedule:
        """This schedule with ``prefill``/``decode`` instances added per bin."""
        return OracleSchedule(
            bin_seconds=self.bin_seconds,
            prefill_instances=self.prefill_instances + prefill,
            decode_instances=self.decode_instances + decode,
            gpus_per_instance=self.gpus_per_instance,
            horizon_seconds=self.horizon_seconds,
        )


def _decoder_seconds(*, profile: Profile, trace: Trace, tpot_slo_seconds: float) -> npt.NDArray[np.float64]:
    """Decoder-seconds of each request: (I + O) / V_D(I, O), computed once per distinct (I, O) pair."""
    pairs = np.stack([trace.input_tokens, trace.output_tokens], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    per_pair = np.array(
        [
            (i + o)
            / velocity.decode_tokens_per_second(
                perf=profile.perf, input_tokens=float(i), output_tokens=float(o), tpot_slo_seconds=tpot_slo_seconds
            )
            for i, o in unique
        ],
        dtype=np.float64,
    )
    return per_pair[inverse.reshape(-1)]


def _demand_per_bin(
    *, trace: Trace, profile: Profile, tpot_slo_seconds: float, horizon_seconds: float, bin_seconds: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per bin: prefiller-seconds (prompt tokens ÷ min(V_P(L̄), V_N)) and decoder-seconds of its arrivals."""
    bins = max(1, math.ceil(horizon_seconds / bin_seconds))
    index = np.minimum((trace.arrival_seconds // bin_seconds).astype(np.int64), bins - 1)
    prompt_tokens = np.bincount(index, weights=trace.input_tokens.astype(np.float64), minlength=bins)
    requests = np.bincount(index, minlength=bins)
    network = velocity.network_tokens_per_second(perf=profile.perf)
    prefiller_seconds = np.zeros(bins, dtype=np.float64)
    for k in np.nonzero(requests)[0]:
        mean_prompt = prompt_tokens[k] / requests[k]
        rate = min(velocity.prefill_tokens_per_second(perf=profile.perf, prompt_tokens=mean_prompt), network)
        prefiller_seconds[k] = prompt_tokens[k] / rate
    decoder_seconds = np.bincount(
        index,
        weights=_decoder_seconds(profile=profile, trace=trace, tpot_slo_seconds=tpot_slo_seconds),
        minlength=bins,
    ).astype(np.float64)
    return prefiller_seconds, decoder_seconds


def oracle_schedule(
    *,
    trace: Trace,
    profile: Profile,
    tpot_slo_seconds: float,
    horizon_seconds: float,
    bin_seconds: float = DEFAULT_BIN_SECONDS,
    min_prefill: int = 1,
    min_decode: int = 1,
) -> OracleSchedule:
    """The demand schedule's instances per bin over [0, horizon] (module docstring)."""
    prefiller_seconds, decoder_seconds = _demand_per_bin(
        trace=trace,
        profile=profile,
        tpot_slo_seconds=tpot_slo_seconds,
        horizon_seconds=horizon_seconds,
        bin_seconds=bin_seconds,
    )
    prefill = np.ceil(prefiller_seconds / bin_seconds - 1e-9).astype(np.int64)
    decode = np.ceil(decoder_seconds / bin_seconds - 1e-9).astype(np.int64)
    return OracleSchedule(
        bin_seconds=bin_seconds,
        prefill_instances=np.maximum(prefill, min_prefill),
        decode_instances=np.maximum(decode, min_decode),
        gpus_per_instance=profile.perf.gpus_per_instance,
        horizon_seconds=horizon_seconds,
    )


def lower_bound_gpu_hours(
    *,
    trace: Trace,
    profile: Profile,
    tpot_slo_seconds: float,
    horizon_seconds: float,
    bin_seconds: float = DEFAULT_BIN_SECONDS,
    min_prefill: int = 1,
    min_decode: int = 1,
) -> float:
    """The demand bound: Σ over bins of ``max(min · bin, instance-seconds of the bin's demand)`` per role, in
    GPU-hours (module docstring); the demand schedule without its rounding up."""
    prefiller_seconds, decoder_seconds = _demand_per_bin(
        trace=trace,
        profile=profile,
        tpot_slo_seconds=tpot_slo_seconds,
        horizon_seconds=horizon_seconds,
        bin_seconds=bin_seconds,
    )
    widths = np.full(len(prefiller_seconds), bin_seconds)
    widths[-1] = horizon_seconds - bin_seconds * (len(widths) - 1)
    instance_seconds = np.maximum(prefiller_seconds, min_prefill * widths) + np.maximum(
        decoder_seconds, min_decode * widths
    )
    return float(np.sum(instance_seconds)) * profile.perf.gpus_per_instance / 3600.0


def demand_plan(
    *,
    trace: Trace,
    profile: Profile,
    tpot_slo_seconds: float,
    horizon_seconds: float,
    bin_seconds: float = PLAN_BIN_SECONDS,
    bound_bin_seconds: float = DEFAULT_BIN_SECONDS,
    min_prefill: int = 1,
    min_decode: int = 1,
) -> OracleSchedule:
    """The oracle's starting plan (module docstring, step 1): the demand schedule's prefill per ``bin_seconds``,
    its decode per ``bound_bin_seconds`` (decoding outlasts a second), both on the plan's bins."""
    fine, coarse = (
        oracle_schedule(
            trace=trace,
            profile=profile,
            tpot_slo_seconds=tpot_slo_seconds,
            horizon_seconds=horizon_seconds,
            bin_seconds=seconds,
            min_prefill=min_prefill,
            min_decode=min_decode,
        )
        for seconds in (bin_seconds, bound_bin_seconds)
    )
    starts = np.arange(len(fine.prefill_instances)) * bin_seconds
    coarse_bins = np.minimum((starts // bound_bin_seconds).astype(np.int64), len(coarse.decode_instances) - 1)
    return OracleSchedule(
        bin_seconds=bin_seconds,
        prefill_instances=fine.prefill_instances,
        decode_instances=coarse.decode_instances[coarse_bins],
        gpus_per_instance=profile.perf.gpus_per_instance,
        horizon_seconds=horizon_seconds,
    )


def replay(
    *,
    trace: Trace,
    settings: ScalingSettings,
    schedule: OracleSchedule,
    on_tick: Callable[[float], None] | None = None,
) -> loop.RunOutcome:
    """``schedule`` run through the simulator with instant starts (the core policy is not consulted)."""
    initial_prefill, initial_decode = schedule.at(0.0)
    return loop.run_policy(
        trace=trace,
        settings=settings,
        initial_prefill=initial_prefill,
        initial_decode=initial_decode,
        cluster_config=loop.cluster_config_for(settings, cold_start_seconds=0.0),
        schedule=schedule.at,
        on_tick=on_tick,
    )


def cold_start_overhead_instance_seconds(
    *, instances: npt.NDArray[np.int64], bin_seconds: float, cold_start_seconds: float
) -> float:
    """Instance-seconds that running the per-bin ``instances`` costs beyond the plan's own when every instance must
    start ``cold_start_seconds`` before it serves, the future known.

    Instance slot k (held while the plan holds at least k instances) pays, before each of its runs, the shorter of a
    cold start and the gap since its previous run (a gap shorter than a cold start is bridged by keeping the instance:
    restarting would cost more). A run from the plan's first bin pays nothing (the run starts warm). Example, 10 s
    bins, 60 s cold start, one slot held in bins 2–3 and 6: 60 s before bin 2, then the 20 s gap (bins 4–5) bridged:
    80 instance-seconds.
    """
    total_seconds = 0.0
    for slot in range(1, int(instances.max(initial=0)) + 1):
        held = np.concatenate(([False], instances >= slot, [False]))
        edges = np.flatnonzero(held[1:] != held[:-1])
        starts, ends = edges[0::2], edges[1::2]
        gaps_seconds = (starts[1:] - ends[:-1]) * bin_seconds
        first_seconds = cold_start_seconds if starts[0] > 0 else 0.0
        total_seconds += first_seconds + float(np.minimum(gaps_seconds, cold_start_seconds).sum())
    return total_seconds


@dataclass(frozen=True, eq=False)
class Oracle:
    """The oracle's plan, what its replay gave, and the demand bound below it."""

    schedule: OracleSchedule
    lower_bound_gpu_hours: float
    target_attainment: float
    slo_attainment: float
    gpu_hours: float
    """GPU-hours of the replayed plan (instances draining after a scale-in included, as for every policy)."""
    replays: int

    def gpu_hours_with_cold_start(self, cold_start_seconds: float) -> float:
        """GPU-hours of this plan, the future known, when each instance must start ``cold_start_seconds`` before it
        serves (`cold_start_overhead_instance_seconds` of both roles added to the replay's): a plan an online
        policy with that cold start could at best match, and an upper bound on the cheapest such plan."""
        plan = self.schedule
        overhead = sum(
            cold_start_overhead_instance_seconds(
                instances=instances, bin_seconds=plan.bin_seconds, cold_start_seconds=cold_start_seconds
            )
            for instances in (plan.prefill_instances, plan.decode_instances)
        )
        return self.gpu_hours + overhead * plan.gpus_per_instance / 3600.0


def _misses_per_bin(
    *, outcome: loop.RunOutcome, settings: ScalingSettings, bins: int, bin_seconds: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], float]:
    """Misses charged to prefill (TTFT, by arrival bin) and decode (TPOT, every bin decoded in); attainment."""
    outcomes = outcome.outcomes
    ttft_ok, tpot_ok = report.objectives_met(outcomes=outcomes, slo=settings.slo)
    attained = float((ttft_ok & tpot_ok).mean()) if len(ttft_ok) else 1.0
    arrival_bins = np.minimum((outcomes.arrival_seconds[~ttft_ok] // bin_seconds).astype(np.int64), bins - 1)
    prefill = np.bincount(arrival_bins, minlength=bins).astype(np.int64)
    slow = ttft_ok & ~tpot_ok
    first = np.minimum((outcomes.first_token_seconds[slow] // bin_seconds).astype(np.int64), bins - 1)
    last = np.minimum((outcomes.finish_seconds[slow] // bin_seconds).astype(np.int64), bins - 1)
    spans = np.zeros(bins + 1, dtype=np.int64)
    np.add.at(spans, first, 1)
    np.add.at(spans, last + 1, -1)
    return prefill, np.cumsum(spans[:-1]), attained


def _step(
    prefill_misses: npt.NDArray[np.int64], decode_misses: npt.NDArray[np.int64], share: float
) -> list[tuple[int, int, int]]:
    """(misses, role 0 prefill / 1 decode, bin) of the fewest bins per role holding ``share`` of its misses, most
    misses first (ties: prefill, then earlier bins)."""
    chosen: list[tuple[int, int, int]] = []
    for role, misses in enumerate((prefill_misses, decode_misses)):
        total = int(misses.sum())
        if total == 0:
            continue
        order = np.argsort(-misses, kind="stable")
        cumulative = np.cumsum(misses[order])
        count = int(np.searchsorted(cumulative, share * total)) + 1
        chosen += [(int(misses[k]), role, int(k)) for k in order[:count]]
    chosen.sort(key=lambda item: (-item[0], item[1], item[2]))
    return chosen


def _plus(plan: OracleSchedule, chosen: list[tuple[int, int, int]]) -> OracleSchedule:
    """``plan`` with one instance added per chosen (misses, role, bin)."""
    prefill = np.zeros(len(plan.prefill_instances), dtype=np.int64)
    decode = np.zeros(len(plan.decode_instances), dtype=np.int64)
    for _, role, k in chosen:
        (prefill if role == 0 else decode)[k] += 1
    return plan.with_added(prefill=prefill, decode=decode)


def find_oracle(
    *,
    trace: Trace,
    settings: ScalingSettings,
    target_attainment: float = DEFAULT_TARGET_ATTAINMENT,
    bound_bin_seconds: float = DEFAULT_BIN_SECONDS,
    plan_bin_seconds: float = PLAN_BIN_SECONDS,
    step_share: float = 0.5,
    max_replays: int = 60,
) -> Oracle:
    """The oracle for ``trace`` under ``settings`` (its profile, SLO, tick and minimum replicas): module docstring."""
    if not 0.0 < target_attainment <= 1.0:
        raise ValueError("target_attainment must be in (0, 1]")
    horizon = trace.span_seconds
    minimum = {"min_prefill": settings.prefill.min_replicas, "min_decode": settings.decode.min_replicas}
    tpot = settings.slo.tpot_seconds
    bound = lower_bound_gpu_hours(
        trace=trace,
        profile=settings.profile,
        tpot_slo_seconds=tpot,
        horizon_seconds=horizon,
        bin_seconds=bound_bin_seconds,
        **minimum,
    )
    plan = demand_plan(
        trace=trace,
        profile=settings.profile,
        tpot_slo_seconds=tpot,
        horizon_seconds=horizon,
        bin_seconds=plan_bin_seconds,
        bound_bin_seconds=bound_bin_seconds,
        **minimum,
    )
    bins = len(plan.prefill_instances)
    outcome = replay(trace=trace, settings=settings, schedule=plan)
    replays = 1
    prefill_misses, decode_misses, attained = _misses_per_bin(
        outcome=outcome, settings=settings, bins=bins, bin_seconds=plan_bin_seconds
    )
    while attained < target_attainment and replays < max_replays:
        chosen = _step(prefill_misses, decode_misses, step_share)
        if not chosen:
            break
        candidate = _plus(plan, chosen)
        candidate_outcome = replay(trace=trace, settings=settings, schedule=candidate)
        replays += 1
        candidate_misses = _misses_per_bin(
            outcome=candidate_outcome, settings=settings, bins=bins, bin_seconds=plan_bin_seconds
        )
        if candidate_misses[2] >= target_attainment:
            # Trim: the shortest prefix of this step's additions that still meets the target (high always does),
            # found to within a sixteenth of the step: finer probes cost a replay each for a few instance-seconds.
            low, high = 0, len(chosen)
            best, best_outcome, best_attained = candidate, candidate_outcome, candidate_misses[2]
            while high - low > max(1, len(chosen) // 16) and replays < max_replays:
                middle = (low + high) // 2
                probe = _plus(plan, chosen[:middle])
                probe_outcome = replay(trace=trace, settings=settings, schedule=probe)
                replays += 1
                probe_attained = _misses_per_bin(
                    outcome=probe_outcome, settings=settings, bins=bins, bin_seconds=plan_bin_seconds
                )[2]
                if probe_attained >= target_attainment:
                    high, best, best_outcome, best_attained = middle, probe, probe_outcome, probe_attained
                else:
                    low = middle
            plan, outcome, attained = best, best_outcome, best_attained
            break
        plan, outcome = candidate, candidate_outcome
        prefill_misses, decode_misses, attained = candidate_misses
    return Oracle(
        schedule=plan,
        lower_bound_gpu_hours=bound,
        target_attainment=target_attainment,
        slo_attainment=attained,
        gpu_hours=outcome.gpu_seconds / 3600.0,
        replays=replays,
    )
