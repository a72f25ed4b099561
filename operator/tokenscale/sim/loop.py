"""The control loop in simulated time: the operator's observe → decide → act tick, with the cluster model in place
of Kubernetes and the pods' /metrics.

Every tick (``settings.tick_seconds``) the loop advances the cluster to the tick, scrapes every pod
(`tokenscale.sim.exposition.engine_sample`), keeps each pod's recent samples, builds the observation with
`tokenscale.core.observe.build_observation` and asks `tokenscale.core.decide.decide` for a decision: the very code
the operator runs. It applies the decision as the operator would: restores, rejoins and withdrawals (soft
scale-in), then replica counts (new instances cold-start, surplus ones drain, withdrawn ones first), then
conversions by pod name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tokenscale.core import decide, observe
from tokenscale.core.profile import PerfModel
from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import Decision, EngineSample, Role
from tokenscale.sim.cluster import Cluster, ClusterConfig, RequestOutcomes
from tokenscale.sim.exposition import engine_sample, pod_view
from tokenscale.sim.instances import DecodeInstance, InstanceState, PrefillInstance
from tokenscale.sim.traces import Trace

__all__ = ["DEFAULT_DRAIN_LIMIT_SECONDS", "RunOutcome", "Timeline", "cluster_config_for", "run_policy"]

DEFAULT_DRAIN_LIMIT_SECONDS = 900.0
"""After the horizon the loop runs on until every request has finished, for at most this long."""

Schedule = Callable[[float], tuple[int, int]]


@dataclass(slots=True)
class Timeline:
    """One row per tick, for plots: time, instances provisioned (starting + Ready + draining) and Ready per role,
    converted decoders, and the prompt tokens/s that arrived over the last tick."""

    seconds: list[float] = field(default_factory=list)
    prefill_provisioned: list[int] = field(default_factory=list)
    decode_provisioned: list[int] = field(default_factory=list)
    prefill_ready: list[int] = field(default_factory=list)
    decode_ready: list[int] = field(default_factory=list)
    converted: list[int] = field(default_factory=list)
    arriving_prompt_tokens_per_second: list[float] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class RunOutcome:
    """What one run produced: per-request outcomes, cost, and what the controller did."""

    outcomes: RequestOutcomes
    gpu_seconds: float
    horizon_seconds: float
    end_seconds: float
    scale_out_events: int
    scale_in_events: int
    conversions: int
    timeline: Timeline
    gpu_seconds_by_role: Mapping[Role, float] = field(default_factory=dict)
    """``gpu_seconds`` of each role, for pools priced differently."""


def cluster_config_for(settings: ScalingSettings, *, cold_start_seconds: float | None = None) -> ClusterConfig:
    """The cluster knobs that follow from the scaling settings (converted decoders' chunk and TPOT headroom)."""
    return ClusterConfig(
        cold_start_seconds=cold_start_seconds,
        converted_chunk_tokens=settings.tokenscale.prefill_chunk_tokens,
        converted_step_tpot_fraction=settings.tokenscale.tpot_headroom_ratio,
        converted_kv_reserve_ratio=settings.tokenscale.conversion_kv_reserve_ratio,
        tpot_slo_seconds=settings.slo.tpot_seconds,
    )


def _apply(cluster: Cluster, decision: Decision) -> None:
    for name in decision.restore_pods:
        cluster.restore(name)
    for name in decision.rejoin_pods:
        cluster.rejoin(name)
    for name in decision.withdraw_pods:
        cluster.withdraw(name)
    cluster.set_replicas(Role.PREFILL, decision.prefill_replicas)
    cluster.set_replicas(Role.DECODE, decision.decode_replicas)
    for name in decision.convert_pods:
        cluster.convert(name)


def run_policy(
    *,
    trace: Trace,
    settings: ScalingSettings,
    initial_prefill: int,
    initial_decode: int,
    cluster_config: ClusterConfig | None = None,
    horizon_seconds: float | None = None,
    drain_limit_seconds: float = DEFAULT_DRAIN_LIMIT_SECONDS,
    schedule: Schedule | None = None,
    on_tick: Callable[[float], None] | None = None,
    prefill_perf: PerfModel | None = None,
) -> RunOutcome:
    """Replay ``trace`` through a cluster scaled by ``settings.policy`` and return what happened.

    The cluster starts with ``initial_prefill``/``initial_decode`` Ready instances. Cost counts over
    [0, horizon] (default: the trace's span); requests still running at the horizon finish afterwards (latency
    counted, cost not), for at most ``drain_limit_seconds``. With ``schedule`` (time -> (prefill, decode)) the
    core policy is not consulted: the counts are set from it each tick (used to replay the oracle).
    ``on_tick`` is called with each tick's time (progress reporting). ``prefill_perf`` runs the prefillers on
    another model than the decoders' ``settings.profile.perf`` (pools on different GPU types).
    """
    horizon = trace.span_seconds if horizon_seconds is None else horizon_seconds
    cluster = Cluster(
        perf=settings.profile.perf,
        config=cluster_config or cluster_config_for(settings),
        prefill_perf=prefill_perf,
    )
    cluster.submit_all(
        arrival_seconds=trace.arrival_seconds.tolist(),
        input_tokens=trace.input_tokens.tolist(),
        output_tokens=trace.output_tokens.tolist(),
    )
    cluster.start_instances(Role.PREFILL, initial_prefill, ready_now=True)
    cluster.start_instances(Role.DECODE, initial_decode, ready_now=True)

    tick = settings.tick_seconds
    keep_seconds = settings.window_seconds + 2.0 * tick
    histories: dict[str, list[EngineSample]] = {}
    state = decide.initial_state(settings=settings)
    spec = {Role.PREFILL: initial_prefill, Role.DECODE: initial_decode}
    timeline = Timeline()
    scale_out = scale_in = 0
    arrivals = trace.arrival_seconds
    arrived_index = 0
    input_tokens = trace.input_tokens
    gpu_seconds_at_horizon: float | None = None
    by_role_at_horizon: dict[Role, float] = {}
    k = 0
    while True:
        k += 1
        now = k * tick
        cluster.advance_to(now)
        if gpu_seconds_at_horizon is None and now >= horizon:
            gpu_seconds_at_horizon = cluster.gpu_seconds(until_seconds=horizon)
            by_role_at_horizon = cluster.gpu_seconds_by_role(until_seconds=horizon)
        instances: list[PrefillInstance | DecodeInstance] = [*cluster.prefillers, *cluster.decoders]
        views = []
        # A schedule needs no metrics, so nothing is scraped (a scrape only settles a decoder at a step boundary:
        # outcomes agree to float rounding).
        for instance in instances if schedule is None else ():
            sample = engine_sample(instance, now_seconds=now)
            history = histories.get(instance.name)
            if history is None:
                history = histories[instance.name] = []
            history.append(sample)
            if history[0].timestamp_seconds < now - keep_seconds:
                del history[0]  # one sample in, one out: the history stays a window plus two ticks long
            views.append(pod_view(instance))
        if len(histories) > len(instances):
            alive = {i.name for i in instances}
            for name in [n for n in histories if n not in alive]:
                del histories[name]

        if schedule is not None:
            desired_prefill, desired_decode = schedule(now)
            decision_prefill, decision_decode = desired_prefill, desired_decode
            cluster.set_replicas(Role.PREFILL, desired_prefill)
            cluster.set_replicas(Role.DECODE, desired_decode)
        else:
            observation = observe.build_observation(
                now_seconds=now,
                settings=settings,
                prefill_spec_replicas=spec[Role.PREFILL],
                decode_spec_replicas=spec[Role.DECODE],
                pods=views,
                histories=histories,
            )
            decision, state = decide.decide(settings=settings, observation=observation, state=state)
            _apply(cluster, decision)
            decision_prefill, decision_decode = decision.prefill_replicas, decision.decode_replicas
        for role, desired in ((Role.PREFILL, decision_prefill), (Role.DECODE, decision_decode)):
            scale_out += desired > spec[role]
            scale_in += desired < spec[role]
            spec[role] = desired

        start = arrived_index
        while arrived_index < len(arrivals) and arrivals[arrived_index] <= now:
            arrived_index += 1
        timeline.seconds.append(now)
        timeline.prefill_provisioned.append(len(cluster.prefillers))
        timeline.decode_provisioned.append(len(cluster.decoders))
        timeline.prefill_ready.append(sum(1 for i in cluster.prefillers if i.state == InstanceState.READY))
        timeline.decode_ready.append(sum(1 for i in cluster.decoders if i.state == InstanceState.READY))
        timeline.converted.append(sum(1 for i in cluster.decoders if i.converted))
        timeline.arriving_prompt_tokens_per_second.append(float(input_tokens[start:arrived_index].sum()) / tick)
        if on_tick is not None:
            on_tick(now)
        if now >= horizon and (cluster.all_done or now >= horizon + drain_limit_seconds):
            break

    return RunOutcome(
        outcomes=cluster.outcomes(),
        gpu_seconds=gpu_seconds_at_horizon if gpu_seconds_at_horizon is not None else math.nan,
        horizon_seconds=horizon,
        end_seconds=now,
        scale_out_events=scale_out,
        scale_in_events=scale_in,
        conversions=cluster.conversions,
        timeline=timeline,
        gpu_seconds_by_role=by_role_at_horizon,
    )
