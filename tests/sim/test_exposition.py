"""A simulated pod's EngineSample and PodView: counters, gauges and histograms as a vLLM pod exports them."""

from __future__ import annotations

import dataclasses
import math

import pytest
from tests.sim.helpers import NO_OVERHEAD, TOY, make_cluster

from tokenscale.core.types import Role, ServingRole
from tokenscale.sim.cluster import Cluster, ClusterConfig
from tokenscale.sim.exposition import engine_sample, pod_view
from tokenscale.sim.instances import INTER_TOKEN_LATENCY_BUCKETS_SECONDS


def test_decoder_counts_generated_tokens_and_inter_token_latencies() -> None:
    cluster = make_cluster()
    cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=11)
    cluster.submit(arrival_seconds=5.0, input_tokens=500, output_tokens=5)
    cluster.advance_to(10.0)
    sample = engine_sample(cluster.decoders[0], now_seconds=10.0)
    assert sample.generation_tokens_total == 16  # every emitted token, the first ones included
    assert sample.requests_finished_total == 2
    itl = sample.inter_token_latency_seconds
    assert itl is not None
    # 10 + 4 decode steps of 10.1 ms each: all in the (0.01, 0.025] bucket.
    assert itl.count == 14
    assert itl.sum == pytest.approx(14 * 0.0101)
    assert itl.bucket_upper_bounds == (*INTER_TOKEN_LATENCY_BUCKETS_SECONDS, math.inf)
    assert itl.cumulative_counts[0] == 0
    assert itl.cumulative_counts[1] == 14
    generation = sample.request_generation_tokens
    assert generation is not None
    assert generation.sum == 16
    assert sample.prompt_tokens_total == 0  # its KV arrived by transfer


def test_itl_buckets_split_a_segment_whose_steps_grow() -> None:
    # Steps of 10 + 0.1 + 0.0101·K ms with K from 1000: 20.2 ms, 20.2101, ... cross 25 ms after 476 steps.
    perf = dataclasses.replace(TOY, decode_ms_per_kv_token=0.0101)
    cluster = make_cluster(perf)
    cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=701)
    cluster.advance_to(60.0)
    itl = engine_sample(cluster.decoders[0], now_seconds=60.0).inter_token_latency_seconds
    assert itl is not None
    assert itl.cumulative_counts[1] == sum(1 for k in range(700) if 10.1 + 0.0101 * (1000 + k) <= 25.0) == 476
    assert itl.cumulative_counts[2] == 700


def test_scrape_mid_segment_reports_the_tokens_so_far() -> None:
    cluster = make_cluster()
    cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=1001)
    # First token at 30.5 ms, then 10.1 ms steps: by 1.0305 s, 99 steps are done (the 100th ends at 1.0405).
    cluster.advance_to(1.0355)
    sample = engine_sample(cluster.decoders[0], now_seconds=1.0355)
    assert sample.generation_tokens_total == 1 + 99
    assert sample.requests_running == 1
    # KV: the prompt plus the 99 tokens decoded so far.
    assert sample.kv_cache_usage_ratio == pytest.approx((1000 + 99) / TOY.kv_capacity_tokens)


def test_waiting_requests_are_counted_once_across_pods() -> None:
    cluster = make_cluster(prefill=3)
    for _ in range(40):
        cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=5)
    cluster.advance_to(0.001)  # three steps of one 1000-token prompt each are running
    samples = [engine_sample(p, now_seconds=0.001) for p in cluster.prefillers]
    assert sum(s.requests_running or 0 for s in samples) == 3
    assert sum(s.requests_waiting or 0 for s in samples) == 37 == len(cluster.prefill_queue)
    # Spread over the pods (each waiting request counts on its least-loaded home).
    assert max(s.requests_waiting or 0 for s in samples) - min(s.requests_waiting or 0 for s in samples) <= 1


def test_prefiller_counts_prompt_tokens_and_its_ttft() -> None:
    cluster = make_cluster()
    cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=3)
    cluster.advance_to(1.0)
    sample = engine_sample(cluster.prefillers[0], now_seconds=1.0)
    assert sample.prompt_tokens_total == 1000
    assert sample.generation_tokens_total == 0
    ttft = sample.time_to_first_token_seconds
    assert ttft is not None
    assert ttft.count == 1
    assert ttft.sum == pytest.approx(0.020)  # arrival to the end of its prefill
    prompts = sample.request_prompt_tokens
    assert prompts is not None
    assert prompts.sum == 1000


@pytest.mark.parametrize(
    ("setup", "ready", "serving_role"),
    [
        pytest.param("starting", False, ServingRole.DECODE, id="starting-is-not-ready"),
        pytest.param("ready", True, ServingRole.DECODE, id="ready"),
        pytest.param("converted", True, ServingRole.CONVERTED, id="converted"),
        pytest.param("draining", False, ServingRole.DECODE, id="draining-is-not-ready"),
    ],
)
def test_pod_view_reports_readiness_and_role_label(setup: str, ready: bool, serving_role: ServingRole) -> None:
    cluster = Cluster(perf=TOY, config=ClusterConfig(disaggregation_overhead_seconds=0.0))
    cluster.start_instances(Role.PREFILL, 1, ready_now=True)
    (decoder,) = cluster.start_instances(Role.DECODE, 1, ready_now=setup != "starting")
    cluster.advance_to(2.0)
    if setup == "converted":
        cluster.convert(decoder.name)
    if setup == "draining":
        cluster.submit(arrival_seconds=2.0, input_tokens=1000, output_tokens=500)
        cluster.advance_to(2.5)
        cluster.set_replicas(Role.DECODE, 0)
    view = pod_view(decoder)
    assert view.role is Role.DECODE
    assert view.ready is ready
    assert view.serving_role is serving_role
    assert (view.converted_since_seconds == 2.0) is (setup == "converted")
    assert view.load_known is False  # left for the observation builder


def test_unchanged_histogram_is_the_same_value_between_scrapes() -> None:
    cluster = make_cluster()
    cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=3)
    cluster.advance_to(1.0)
    first = engine_sample(cluster.prefillers[0], now_seconds=1.0)
    second = engine_sample(cluster.prefillers[0], now_seconds=2.0)
    assert first.time_to_first_token_seconds is second.time_to_first_token_seconds
    cluster.submit(arrival_seconds=2.5, input_tokens=1000, output_tokens=3)
    cluster.advance_to(3.0)
    third = engine_sample(cluster.prefillers[0], now_seconds=3.0)
    assert third.time_to_first_token_seconds is not None
    assert third.time_to_first_token_seconds.count == 2


def test_no_overhead_config_is_the_default_elsewhere() -> None:
    # The fixture used above removes the 45 ms disaggregation overhead; the default keeps it.
    assert NO_OVERHEAD.disaggregation_overhead_seconds == 0.0
    assert ClusterConfig().disaggregation_overhead_seconds == pytest.approx(0.045)
