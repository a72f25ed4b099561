"""The policy scoreboard: every (trace, profile, policy) run under the same conditions, scored and recorded.

Conditions shared by every policy of a (trace, profile) pair:

- the trace, rate-scaled by ``rate_scale`` (`tokenscale.sim.traces.scale_rate`, seeded) and cut at ``duration``;
- the demand bound of that trace (`tokenscale.sim.oracle.oracle_schedule`: per 10 s bin, the fewest instances
  covering its mean demand), which sizes the start and the bounds: the run starts with its largest counts over the
  first minute, Ready (a warm service, the same for all); ``max_replicas`` is ``max(16, 2 × its peak)`` per role,
  ``min_replicas`` 1;
- the static baseline holds the demand bound's peak counts from the start (provisioned for the worst 10 s bin);
- the oracle (`tokenscale.sim.oracle.find_oracle`): the cheapest plan found that meets ``oracle_target`` (0.95) of
  the SLO with instant starts; every run's cost is also given as a ratio to its GPU-hours;
- DistServe's per-instance goodputs come from `tokenscale.sim.goodput` on the trace's lengths (its own method);
- SLO: TokenScale's tiers (< 256 tokens 0.25 s, < 1024 0.4 s, else 2 s) and TPOT 0.1 s; tick 1 s; window 10 s;
  the generic behaviour (`tokenscale.core.settings.Behavior`) and every policy's own defaults.

The pseudo-policy ``oracle`` replays the oracle's plan with instant starts (its attainment is at least the target).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tokenscale.core import conversion
from tokenscale.core import settings as core_settings
from tokenscale.core.policies import registry
from tokenscale.core.profile import Profile
from tokenscale.core.types import PodView, Role, ServingRole
from tokenscale.sim import goodput, loop, oracle, report, traces

__all__ = [
    "GOODPUT_POLICIES",
    "JSON_FIELDS",
    "ORACLE_POLICY",
    "RunRecord",
    "Scenario",
    "convertible_decoder_count",
    "markdown_table",
    "pressure_tested_heteroscale",
    "run_one",
    "runs_json",
    "scoreboard_policy_names",
]

GOODPUT_POLICIES = ("distserve", "heteroscale", "tokenscale-prefill-only")
"""Policies configured from the per-instance goodputs (`Scenario.distserve`): DistServe's own sizing, HeteroScale's
pressure-tested ratio and target, the ablation's DistServe-style decode sizing."""
ORACLE_POLICY = "oracle"
"""The pseudo-policy that replays the oracle's schedule with instant starts."""

_WARM_START_SECONDS = 60.0


def scoreboard_policy_names() -> tuple[str, ...]:
    """Every registered core policy, then the oracle replay."""
    return (*registry.policy_names(), ORACLE_POLICY)


@dataclass(frozen=True, eq=False)
class Scenario:
    """A (trace, profile) pair prepared for runs: the rescaled trace, its oracle, and the settings template."""

    trace_name: str
    trace: traces.Trace
    profile: Profile
    rate_scale: float
    seed: int
    demand_bound: oracle.OracleSchedule
    slo: core_settings.SLO
    cold_start_seconds: float | None
    oracle_target: float = oracle.DEFAULT_TARGET_ATTAINMENT

    @classmethod
    def prepare(
        cls,
        *,
        trace_name: str,
        trace: traces.Trace,
        profile: Profile,
        rate_scale: float = 1.0,
        seed: int = 0,
        duration_seconds: float | None = None,
        cold_start_seconds: float | None = None,
        slo: core_settings.SLO | None = None,
        oracle_bin_seconds: float = oracle.DEFAULT_BIN_SECONDS,
        oracle_target: float = oracle.DEFAULT_TARGET_ATTAINMENT,
    ) -> Scenario:
        scaled = trace if rate_scale == 1.0 else traces.scale_rate(trace, factor=rate_scale, seed=seed)
        if duration_seconds is not None:
            scaled = traces.truncate(scaled, duration_seconds=duration_seconds)
        objectives = slo or core_settings.SLO()
        schedule = oracle.oracle_schedule(
            trace=scaled,
            profile=profile,
            tpot_slo_seconds=objectives.tpot_seconds,
            horizon_seconds=scaled.span_seconds,
            bin_seconds=oracle_bin_seconds,
        )
        return cls(
            trace_name, scaled, profile, rate_scale, seed, schedule, objectives, cold_start_seconds, oracle_target
        )

    @functools.cached_property
    def distserve(self) -> core_settings.DistServeSettings:
        """DistServe's goodputs on this trace and profile (`tokenscale.sim.goodput`), computed once when needed."""
        return goodput.distserve_settings(trace=self.trace, profile=self.profile, slo=self.slo, seed=self.seed)

    @functools.cached_property
    def oracle(self) -> oracle.Oracle:
        """The oracle of this trace and profile (`tokenscale.sim.oracle.find_oracle`), found once when needed; it
        does not depend on the cold start (its instances start instantly)."""
        return oracle.find_oracle(
            trace=self.trace, settings=self.settings_for("static"), target_attainment=self.oracle_target
        )

    def initial_counts(self) -> tuple[int, int]:
        """The demand bound's largest counts over the first minute."""
        bins = max(1, math.ceil(_WARM_START_SECONDS / self.demand_bound.bin_seconds))
        return (
            int(self.demand_bound.prefill_instances[:bins].max()),
            int(self.demand_bound.decode_instances[:bins].max()),
        )

    def with_cold_start(self, cold_start_seconds: float | None) -> Scenario:
        """This scenario at another cold start, keeping what was already found (the oracle and the goodputs do
        not depend on it: the oracle starts instantly, the goodputs come from fixed instances)."""
        other = dataclasses.replace(self, cold_start_seconds=cold_start_seconds)
        for name in ("oracle", "distserve"):
            if name in self.__dict__:
                other.__dict__[name] = self.__dict__[name]
        return other

    @property
    def profile_for_runs(self) -> Profile:
        """The profile with the runs' cold start, so that policies know how long a new instance takes."""
        if self.cold_start_seconds is None:
            return self.profile
        perf = dataclasses.replace(self.profile.perf, cold_start_seconds=self.cold_start_seconds)
        return dataclasses.replace(self.profile, perf=perf)

    def settings_for(self, policy: str) -> core_settings.ScalingSettings:
        peak_prefill, peak_decode = self.demand_bound.peak()
        profile = self.profile_for_runs
        base = core_settings.ScalingSettings(
            policy=policy,
            prefill=core_settings.RoleBounds(min_replicas=1, max_replicas=max(16, 2 * peak_prefill)),
            decode=core_settings.RoleBounds(min_replicas=1, max_replicas=max(16, 2 * peak_decode)),
            behavior=core_settings.Behavior(),
            slo=self.slo,
            profile=profile,
            static=core_settings.StaticSettings(prefill_replicas=peak_prefill, decode_replicas=peak_decode),
            distserve=self.distserve if policy in GOODPUT_POLICIES else None,
        )
        if policy == "heteroscale":
            return dataclasses.replace(base, heteroscale=pressure_tested_heteroscale(self.distserve, self.trace))
        if policy.startswith("tokenscale"):
            count = convertible_decoder_count(trace=self.trace, settings=base)
            return dataclasses.replace(
                base, tokenscale=dataclasses.replace(base.tokenscale, convertible_decoders_max=count)
            )
        return base


def pressure_tested_heteroscale(
    goodputs: core_settings.DistServeSettings, trace: traces.Trace
) -> core_settings.HeteroScaleSettings:
    """HeteroScale's ratio and per-decoder target from a pressure test of the workload, as its paper sets them
    (reference/algorithms.md §2.3, Algorithm 1): the per-instance goodputs at the SLO (`tokenscale.sim.goodput`,
    one instance under the trace's lengths), ``r = goodput_D / goodput_P`` prefillers per decoder and
    ``T_D = goodput_D · mean output tokens`` generation tokens/s per decoder."""
    decode = goodputs.decode_goodput_requests_per_second
    return core_settings.HeteroScaleSettings(
        prefill_to_decode_ratio=decode / goodputs.prefill_goodput_requests_per_second,
        target_decode_tokens_per_second=decode * float(np.mean(trace.output_tokens)),
    )


def convertible_decoder_count(
    *, trace: traces.Trace, settings: core_settings.ScalingSettings, quantile: float = 0.99, bin_seconds: float = 10.0
) -> int:
    """TokenScale's static count of convertible decoders, set offline from the trace's burst ratio
    (reference/algorithms.md §1.5): ``C = ceil((λ_q − λ_mean) / V_conv)``, λ the prompt tokens/s per 10 s bin
    (q = 0.99), ``V_conv`` what an idle decoder adds converted (`tokenscale.core.conversion`); at least 1."""
    bins = max(1, math.ceil(trace.span_seconds / bin_seconds))
    index = np.minimum((trace.arrival_seconds // bin_seconds).astype(np.int64), bins - 1)
    rates = np.bincount(index, weights=trace.input_tokens.astype(np.float64), minlength=bins) / bin_seconds
    burst = float(np.quantile(rates, quantile)) - float(np.mean(rates))
    perf = settings.profile.perf
    idle = PodView(name="idle", role=Role.DECODE, serving_role=ServingRole.DECODE, ready=True, load_known=True)
    headroom_ms = 1000.0 * settings.tokenscale.tpot_headroom_ratio * settings.slo.tpot_seconds
    cap = settings.tokenscale.prefill_chunk_tokens or perf.max_num_batched_tokens
    chunk = conversion.chunk_budget_tokens(
        perf=perf, room_ms=headroom_ms - perf.decode_step_ms(kv_tokens=0.0, sequences=0.0), cap_tokens=cap
    )
    added = conversion.converted_prefill_tokens_per_second(perf=perf, pod=idle, chunk_tokens=chunk)
    return max(1, math.ceil(burst / added - 1e-9))


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of the scoreboard: the JSON object of one (trace, profile, policy) run."""

    trace: str
    profile: str
    policy: str
    rate_scale: float
    seed: int
    cold_start_seconds: float
    requests: int
    completed: int
    slo_attainment: float
    ttft_attainment: float
    tpot_attainment: float
    ttft_p50_seconds: float | None
    ttft_p99_seconds: float | None
    tpot_p50_seconds: float | None
    tpot_p99_seconds: float | None
    gpu_hours: float
    oracle_gpu_hours: float
    oracle_lower_bound_gpu_hours: float
    cost_vs_oracle: float
    mean_prefill_instances: float
    mean_decode_instances: float
    scale_out_events: int
    scale_in_events: int
    conversions: int
    horizon_seconds: float


JSON_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RunRecord))
"""Keys of every run object, in order (documented in docs/simulator.md)."""


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


def run_one(
    scenario: Scenario, policy: str, *, on_tick: Callable[[float], None] | None = None
) -> tuple[RunRecord, loop.RunOutcome]:
    """Run ``policy`` (a core policy name or ``oracle``) on ``scenario``; the record and the raw outcome."""
    is_oracle = policy == ORACLE_POLICY
    settings = scenario.settings_for("static" if is_oracle else policy)
    config = loop.cluster_config_for(settings, cold_start_seconds=0.0 if is_oracle else scenario.cold_start_seconds)
    found = scenario.oracle
    if is_oracle:
        outcome = oracle.replay(trace=scenario.trace, settings=settings, schedule=found.schedule, on_tick=on_tick)
    else:
        initial_prefill, initial_decode = scenario.initial_counts()
        if settings.static is not None and policy == "static":
            # A fixed provisioning is in place from the start; it never pays a cold start.
            initial_prefill, initial_decode = settings.static.prefill_replicas, settings.static.decode_replicas
        outcome = loop.run_policy(
            trace=scenario.trace,
            settings=settings,
            initial_prefill=initial_prefill,
            initial_decode=initial_decode,
            cluster_config=config,
            on_tick=on_tick,
        )
    scores = report.attainment(outcomes=outcome.outcomes, slo=scenario.slo)
    ttft = outcome.outcomes.ttft_seconds
    tpot = outcome.outcomes.tpot_seconds
    gpu_hours = outcome.gpu_seconds / 3600.0
    oracle_hours = found.gpu_hours
    timeline = outcome.timeline
    within = np.asarray(timeline.seconds) <= outcome.horizon_seconds
    record = RunRecord(
        trace=scenario.trace_name,
        profile=scenario.profile.name,
        policy=policy,
        rate_scale=scenario.rate_scale,
        seed=scenario.seed,
        cold_start_seconds=config.cold_start_seconds
        if config.cold_start_seconds is not None
        else scenario.profile.perf.cold_start_seconds,
        requests=len(scenario.trace),
        completed=int(np.sum(~np.isnan(outcome.outcomes.finish_seconds))),
        slo_attainment=round(scores.slo, 6),
        ttft_attainment=round(scores.ttft, 6),
        tpot_attainment=round(scores.tpot, 6),
        ttft_p50_seconds=_round(report.percentile(ttft, 50)),
        ttft_p99_seconds=_round(report.percentile(ttft, 99)),
        tpot_p50_seconds=_round(report.percentile(tpot, 50)),
        tpot_p99_seconds=_round(report.percentile(tpot, 99)),
        gpu_hours=round(gpu_hours, 6),
        oracle_gpu_hours=round(oracle_hours, 6),
        oracle_lower_bound_gpu_hours=round(found.lower_bound_gpu_hours, 6),
        cost_vs_oracle=round(gpu_hours / oracle_hours, 6) if oracle_hours > 0 else math.nan,
        mean_prefill_instances=round(float(np.mean(np.asarray(timeline.prefill_provisioned)[within])), 6),
        mean_decode_instances=round(float(np.mean(np.asarray(timeline.decode_provisioned)[within])), 6),
        scale_out_events=outcome.scale_out_events,
        scale_in_events=outcome.scale_in_events,
        conversions=outcome.conversions,
        horizon_seconds=round(outcome.horizon_seconds, 6),
    )
    return record, outcome


def runs_json(records: Sequence[RunRecord]) -> str:
    """The stable JSON document: ``{"runs": [...]}`` with keys in `JSON_FIELDS` order, two-space indent."""
    runs: list[dict[str, Any]] = [dataclasses.asdict(r) for r in records]
    return json.dumps({"runs": runs}, indent=2, allow_nan=False) + "\n"


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{1000.0 * seconds:,.0f}"


def markdown_table(records: Sequence[RunRecord]) -> str:
    """The records as a Markdown table (percentages, milliseconds, GPU-hours), one row per run in order."""
    lines = [
        "| trace | profile | policy | SLO | TTFT ok | TPOT ok | TTFT p50 / p99 ms | TPOT p50 / p99 ms | GPU-h "
        "| × oracle | mean P / D | scale out / in | conversions |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in records:
        lines.append(
            f"| {r.trace} ×{r.rate_scale:g} | {r.profile} | {r.policy} | {100 * r.slo_attainment:.1f}% "
            f"| {100 * r.ttft_attainment:.1f}% | {100 * r.tpot_attainment:.1f}% "
            f"| {_ms(r.ttft_p50_seconds)} / {_ms(r.ttft_p99_seconds)} "
            f"| {_ms(r.tpot_p50_seconds)} / {_ms(r.tpot_p99_seconds)} | {r.gpu_hours:.2f} "
            f"| {r.cost_vs_oracle:.2f} | {r.mean_prefill_instances:.2f} / {r.mean_decode_instances:.2f} "
            f"| {r.scale_out_events} / {r.scale_in_events} | {r.conversions} |"
        )
    return "\n".join(lines) + "\n"
