"""What a simulated pod exposes: its `EngineSample` (as the metrics layer builds from a vLLM pod) and its `PodView`.

This is the one place that maps the cluster model onto vLLM's metrics, shared by the simulated-time control loop
and the real-time twin:

- counters since the instance started: ``prompt_tokens_total`` (prompt tokens prefilled there: prefillers and
  converted decoders), ``generation_tokens_total`` (tokens a decoder emitted, the first one included; a prefiller's
  single sampled token is not exported, so rates do not double count), ``requests_finished_total``;
- gauges: ``requests_running`` (in the current step or decoding batch), ``requests_waiting`` (queued), KV usage
  (a decoder's KV tokens held over its capacity; a prefiller's, the prompts of its current step) and capacity;
- cumulative histograms with vLLM V1's bucket bounds: TTFT (a prefiller from arrival to the end of prefill, a
  decoder from arrival to the first token out), inter-token latency (per emitted token), prompt and generation
  lengths of finished requests (a prefiller finishes a request when its prefill completes: prompt length only).
"""

from __future__ import annotations

import itertools
import math

from tokenscale.core.types import EngineSample, Histogram, PodView, Role, ServingRole
from tokenscale.sim.instances import (
    GENERATION_TOKENS_BUCKETS,
    INTER_TOKEN_LATENCY_BUCKETS_SECONDS,
    PROMPT_TOKENS_BUCKETS,
    TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS,
    DecodeInstance,
    InstanceState,
    PrefillInstance,
)

__all__ = ["engine_sample", "pod_view"]


_BOUNDS_WITH_INF = {
    id(bounds): (*bounds, math.inf)
    for bounds in (
        TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS,
        INTER_TOKEN_LATENCY_BUCKETS_SECONDS,
        PROMPT_TOKENS_BUCKETS,
        GENERATION_TOKENS_BUCKETS,
    )
}


def _histogram(
    instance: PrefillInstance | DecodeInstance, bounds: tuple[float, ...], counts: list[float], total: float
) -> Histogram:
    # A histogram without a new observation since the last scrape is the same value: reuse it.
    key = id(counts)
    previous = instance.exposed.get(key)
    if previous is not None and previous.sum == total and previous.count == sum(counts):
        return previous
    cumulative = tuple(itertools.accumulate(counts))
    histogram = Histogram(
        bucket_upper_bounds=_BOUNDS_WITH_INF[id(bounds)],
        cumulative_counts=cumulative,
        sum=total,
        count=cumulative[-1],
    )
    instance.exposed[key] = histogram
    return histogram


def engine_sample(instance: PrefillInstance | DecodeInstance, *, now_seconds: float) -> EngineSample:
    """The scrape of ``instance`` at ``now_seconds`` (the cluster must have been advanced to ``now_seconds``)."""
    capacity = float(instance.perf.kv_capacity_tokens)
    if isinstance(instance, DecodeInstance):
        instance.settle(now_seconds)
        running = float(instance.requests_running)
        waiting = float(instance.requests_waiting)
        kv_used = instance.kv_tokens_used()
    else:
        running = float(instance.requests_running)
        waiting = float(instance.requests_waiting)
        kv_used = float(sum(r.prefilled_tokens + chunk for r, chunk in instance.step))
    return EngineSample(
        timestamp_seconds=now_seconds,
        prompt_tokens_total=instance.prompt_tokens_total,
        generation_tokens_total=instance.generation_tokens_total,
        requests_waiting=waiting,
        requests_running=running,
        kv_cache_usage_ratio=min(1.0, kv_used / capacity),
        kv_cache_capacity_tokens=capacity,
        preemptions_total=0.0,
        requests_finished_total=instance.finished_requests,
        time_to_first_token_seconds=_histogram(
            instance, TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS, instance.ttft_hist, instance.ttft_sum_seconds
        ),
        inter_token_latency_seconds=_histogram(
            instance, INTER_TOKEN_LATENCY_BUCKETS_SECONDS, instance.itl_hist, instance.itl_sum_seconds
        ),
        request_prompt_tokens=_histogram(
            instance, PROMPT_TOKENS_BUCKETS, instance.prompt_tokens_hist, instance.request_tokens_sums[0]
        ),
        request_generation_tokens=_histogram(
            instance, GENERATION_TOKENS_BUCKETS, instance.generation_tokens_hist, instance.request_tokens_sums[1]
        ),
    )


def pod_view(instance: PrefillInstance | DecodeInstance) -> PodView:
    """What the controller's pod listing says of ``instance``: role, role label, readiness (a starting or
    draining instance is not Ready). Load fields are left for `tokenscale.core.observe` to fill."""
    converted = isinstance(instance, DecodeInstance) and instance.converted
    if instance.role == Role.PREFILL:
        serving = ServingRole.PREFILL
    else:
        serving = ServingRole.CONVERTED if converted else ServingRole.DECODE
    ready = instance.state == InstanceState.READY
    return PodView(
        name=instance.name,
        role=instance.role,
        serving_role=serving,
        ready=ready,
        ready_since_seconds=instance.ready_seconds if ready else None,
        converted_since_seconds=(
            instance.converted_since_seconds if isinstance(instance, DecodeInstance) and converted else None
        ),
    )
