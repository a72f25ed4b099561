"""The cluster model against hand-computed cases (toy profile with round numbers) and a brute-force decoder."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.sim.helpers import NO_OVERHEAD, TOY, make_cluster

from tokenscale.core import conversion
from tokenscale.core.profile import PerfModel
from tokenscale.core.types import PodView, Role, ServingRole
from tokenscale.sim.cluster import Cluster, ClusterConfig
from tokenscale.sim.instances import InstanceState


@pytest.mark.parametrize(
    ("overhead", "ttft"),
    [
        pytest.param(0.0, 0.0305, id="prefill-plus-transfer"),  # 20 ms + 10.5 ms
        pytest.param(0.045, 0.0755, id="plus-disaggregation-overhead"),  # + 45 ms
    ],
)
def test_one_request_through_an_idle_cluster(overhead: float, ttft: float) -> None:
    cluster = make_cluster(config=ClusterConfig(disaggregation_overhead_seconds=overhead))
    cluster.submit(arrival_seconds=1.0, input_tokens=1000, output_tokens=11)
    cluster.advance_to(5.0)
    out = cluster.outcomes()
    assert out.ttft_seconds[0] == pytest.approx(ttft)
    # 10 decode steps alone: 10 + 0.1·1 = 10.1 ms each.
    assert out.tpot_seconds[0] == pytest.approx(0.0101)
    assert out.finish_seconds[0] == pytest.approx(1.0 + ttft + 10 * 0.0101)


def test_decode_step_grows_with_kv_tokens() -> None:
    perf = dataclasses.replace(TOY, decode_ms_per_kv_token=0.001)
    cluster = make_cluster(perf)
    cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=4)
    cluster.advance_to(5.0)
    # Steps over K = 1000, 1001, 1002 KV tokens: 10 + 0.1 + 0.001·K ms.
    expected = sum(10.1 + 0.001 * k for k in (1000, 1001, 1002)) / 3 / 1000
    assert cluster.outcomes().tpot_seconds[0] == pytest.approx(expected)


def test_prefill_queues_at_saturation() -> None:
    # Five 1000-token prompts at once; the budget fits one per step: prefill k ends at 20·(k+1) ms.
    cluster = make_cluster()
    for _ in range(5):
        cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=2)
    cluster.advance_to(5.0)
    expected = [0.020 * (k + 1) + 0.0105 for k in range(5)]
    assert cluster.outcomes().ttft_seconds.tolist() == pytest.approx(expected)


def test_prefill_batches_short_prompts_under_the_token_budget() -> None:
    # Four 250-token prompts share one step: 10 + 0.01·1000 = 20 ms; each transfer 0.5 + 2.5 = 3 ms.
    cluster = make_cluster()
    for _ in range(4):
        cluster.submit(arrival_seconds=0.0, input_tokens=250, output_tokens=2)
    cluster.advance_to(5.0)
    assert cluster.outcomes().ttft_seconds.tolist() == pytest.approx([0.023] * 4)


def test_long_prompt_is_chunked_and_costs_its_attention_once() -> None:
    # 2500 tokens over budget 1000: steps of 1000, 1000, 500. With c = 1e-5 ms/token², whole it would cost
    # 10·3 fixed + 0.01·2500 + 1e-5·2500² = 30 + 25 + 62.5; chunked, the cross terms make up the same 62.5.
    perf = dataclasses.replace(TOY, prefill_ms_per_token_squared=1e-5)
    cluster = make_cluster(perf)
    cluster.submit(arrival_seconds=0.0, input_tokens=2500, output_tokens=2)
    cluster.advance_to(5.0)
    transfer = 0.5 + 2500 * 1e5 / 1e10 * 1000
    assert cluster.outcomes().ttft_seconds[0] == pytest.approx((30 + 25 + 62.5 + transfer) / 1000)


def test_kv_capacity_admission_queues_until_memory_frees() -> None:
    # KV 2500 tokens; each request reserves 1000 + 101 = 1101: two fit, the third waits.
    perf = dataclasses.replace(TOY, kv_capacity_tokens=2500, max_num_batched_tokens=4000)
    cluster = make_cluster(perf)
    for _ in range(3):
        cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=101)
    cluster.advance_to(10.0)
    out = cluster.outcomes()
    # One prefill step of 3000 tokens: 10 + 30 = 40 ms; transfers end at 50.5 ms; the two decode together
    # (10.2 ms steps) and finish 100 steps later at 50.5 + 1020 = 1070.5 ms; the third is admitted then.
    assert out.ttft_seconds[:2].tolist() == pytest.approx([0.0505, 0.0505])
    assert out.finish_seconds[:2].tolist() == pytest.approx([1.0705, 1.0705])
    assert out.ttft_seconds[2] == pytest.approx(1.0705 + 0.0105)
    assert out.tpot_seconds[2] == pytest.approx(0.0101)


def test_max_num_seqs_caps_the_batch() -> None:
    perf = dataclasses.replace(TOY, max_num_seqs=1, max_num_batched_tokens=4000)
    cluster = make_cluster(perf)
    for _ in range(2):
        cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=11)
    cluster.advance_to(10.0)
    out = cluster.outcomes()
    # One request per prefill step too (20 ms each); the first decodes 10 × 10.1 ms from 30.5 ms, and only then
    # is the second (prefilled at 40 ms) admitted.
    assert out.finish_seconds[0] == pytest.approx(0.0305 + 0.101)
    assert out.ttft_seconds[1] == pytest.approx(0.0305 + 0.101 + 0.0105)


def test_cold_start_delays_the_first_prefill() -> None:
    cluster = Cluster(perf=TOY, config=NO_OVERHEAD)
    cluster.start_instances(Role.DECODE, 1, ready_now=True)
    cluster.start_instances(Role.PREFILL, 1)  # cold start 30 s from t = 0
    cluster.submit(arrival_seconds=1.0, input_tokens=1000, output_tokens=2)
    cluster.advance_to(29.9)
    assert math.isnan(cluster.outcomes().first_token_seconds[0])
    assert cluster.prefillers[0].state == InstanceState.STARTING
    cluster.advance_to(60.0)
    assert cluster.outcomes().ttft_seconds[0] == pytest.approx(30.0 - 1.0 + 0.0305)
    # Cost counts from the scale-out decision, starting time included: 60 s for each instance.
    assert cluster.gpu_seconds(until_seconds=60.0) == pytest.approx(120.0)


def test_configured_cold_start_overrides_the_profile() -> None:
    cluster = Cluster(perf=TOY, config=ClusterConfig(cold_start_seconds=5.0))
    (instance,) = cluster.start_instances(Role.PREFILL, 1)
    cluster.advance_to(4.9)
    assert instance.state == InstanceState.STARTING
    cluster.advance_to(5.0)
    assert instance.state == InstanceState.READY


def _burst(cluster: Cluster, *, requests: int) -> None:
    for k in range(requests):
        cluster.submit(arrival_seconds=0.001 * k, input_tokens=1000, output_tokens=50)


def test_conversion_absorbs_a_burst_without_breaking_tpot() -> None:
    config = ClusterConfig(disaggregation_overhead_seconds=0.0, converted_chunk_tokens=512)
    without = make_cluster(decode=2, config=config)
    _burst(without, requests=60)
    without.advance_to(30.0)

    converted = make_cluster(decode=2, config=config)
    _burst(converted, requests=60)
    assert converted.convert("decode-0")
    converted.advance_to(30.0)

    plain, helped = without.outcomes(), converted.outcomes()
    # 60 × 20 ms of prefill on one prefiller: the last waits ≈ 1.2 s; a converted decoder adds ≈ 512 tokens
    # per ≈ 15 ms step (≈ 2/3 of a prefiller), so the burst drains ≈ 40% sooner.
    assert np.max(helped.ttft_seconds) < 0.7 * np.max(plain.ttft_seconds)
    assert converted.decoders[0].prompt_tokens_total > 0
    # Restricted chunked prefill keeps every decode step within τ·TPOT = 0.8 × 100 ms.
    assert np.max(helped.tpot_seconds) <= 0.08
    assert converted.all_done
    assert without.all_done


def test_restored_decoder_takes_no_new_prefill() -> None:
    cluster = make_cluster(decode=2)
    cluster.convert("decode-0")
    cluster.restore("decode-0")
    _burst(cluster, requests=10)
    cluster.advance_to(10.0)
    assert cluster.decoders[0].prompt_tokens_total == 0
    assert cluster.all_done


@pytest.mark.parametrize(
    ("converted", "admitted"),
    [
        # KV 10,000; each request reserves 1000 + 1000 tokens.
        pytest.param(False, 5, id="whole-cache"),
        pytest.param(True, 2, id="converted-keeps-half-for-prefills"),  # 50% reserve: 5,000 -> 2 requests
    ],
)
def test_conversion_reserves_kv_for_burst_prefills(converted: bool, admitted: int) -> None:
    perf = dataclasses.replace(TOY, kv_capacity_tokens=10_000, max_num_batched_tokens=8000)
    config = ClusterConfig(disaggregation_overhead_seconds=0.0, converted_kv_reserve_ratio=0.5)
    cluster = make_cluster(perf, config=config)
    for _ in range(6):
        cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=1000)
    cluster.advance_to(0.001)  # the prefiller took all six in one 70 ms step; nothing is left to pull
    if converted:
        assert cluster.convert("decode-0")
    cluster.advance_to(0.5)
    decoder = cluster.decoders[0]
    assert decoder.prompt_tokens_total == 0
    assert decoder.admitted == admitted
    assert len(cluster.decode_queue) == 6 - admitted


def test_drain_on_scale_in_finishes_in_flight_work_then_removes() -> None:
    cluster = make_cluster(prefill=2, decode=2)
    for k in range(4):
        cluster.submit(arrival_seconds=0.0 + 0.001 * k, input_tokens=1000, output_tokens=200)
    cluster.advance_to(0.5)  # all four decoding, spread over both decoders
    busy = [d for d in cluster.decoders if d.admitted]
    assert len(busy) == 2
    cluster.set_replicas(Role.DECODE, 1)
    draining = [d for d in cluster.decoders if d.state == InstanceState.DRAINING]
    assert len(draining) == 1
    (victim,) = draining
    for k in range(4):
        cluster.submit(arrival_seconds=1.0 + 0.001 * k, input_tokens=1000, output_tokens=10)
    cluster.advance_to(20.0)
    assert cluster.all_done
    assert victim.state == InstanceState.REMOVED
    assert victim.finished_requests == 2  # only what it held before the drain
    # It left when its last request finished, and cost GPU-seconds until then.
    last = float(np.nanmax(cluster.outcomes().finish_seconds[:4]))
    assert victim.removed_seconds <= last + 1e-9
    assert victim.gpu_seconds(until_seconds=20.0) == pytest.approx(victim.removed_seconds)


def test_scale_in_removes_starting_instances_first_without_draining() -> None:
    cluster = make_cluster(prefill=1)
    cluster.advance_to(1.0)
    cluster.set_replicas(Role.PREFILL, 3)
    cluster.advance_to(2.0)
    cluster.set_replicas(Role.PREFILL, 1)
    assert [p.state for p in cluster.prefillers] == [InstanceState.READY]
    # The two starters cost one second each.
    assert cluster.gpu_seconds(until_seconds=2.0) == pytest.approx(2.0 + 2.0 + 1.0 + 1.0)


def _reference_finish_times(perf: PerfModel, joins: list[tuple[float, int, int]]) -> list[float]:
    """Brute force, one step at a time: a request whose first token is out at x joins the step starting at x
    (idle decoder) or the next boundary; each step lasts a + b·K + c·B ms."""
    finish = [math.nan] * len(joins)
    order = sorted(range(len(joins)), key=lambda i: joins[i][0])
    batch: dict[int, int] = {}  # request -> tokens generated by decode steps
    t = -math.inf
    position = 0
    while position < len(order) or batch:
        if not batch:
            t = max(t, joins[order[position]][0])
        while position < len(order) and joins[order[position]][0] <= t:
            i = order[position]
            position += 1
            if joins[i][2] <= 1:
                finish[i] = joins[i][0]
            else:
                batch[i] = 0
        if not batch:
            continue
        kv = sum(joins[i][1] + g for i, g in batch.items())
        t += perf.decode_step_ms(kv_tokens=kv, sequences=len(batch)) / 1000.0
        for i in list(batch):
            batch[i] += 1
            if batch[i] == joins[i][2] - 1:
                finish[i] = t
                del batch[i]
    return finish


@settings(max_examples=40, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=2.0, allow_nan=False),
            st.integers(min_value=1, max_value=3000),
            st.integers(min_value=1, max_value=120),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_closed_form_decoding_matches_step_by_step(requests: list[tuple[float, int, int]]) -> None:
    perf = dataclasses.replace(TOY, decode_ms_per_kv_token=0.002, max_num_batched_tokens=4000)
    cluster = make_cluster(perf, prefill=30)
    for arrival, input_tokens, output_tokens in sorted(requests):
        cluster.submit(arrival_seconds=arrival, input_tokens=input_tokens, output_tokens=output_tokens)
    cluster.advance_to(100.0)
    out = cluster.outcomes()
    joins = [
        (float(x), int(i), int(o))
        for x, i, o in zip(out.first_token_seconds, out.input_tokens, out.output_tokens, strict=True)
    ]
    assert out.finish_seconds.tolist() == pytest.approx(_reference_finish_times(perf, joins), abs=1e-9)


def test_a_converted_decoders_mixed_step_is_the_planners() -> None:
    # No prefiller: the converted decoder prefills everything. Request A (1000 tokens) is prefilled in a whole step
    # of its own and decodes; B (20,000 tokens) then rides on A's decode steps. With one sequence decoding, a step
    # takes 10.1 ms, so within 0.8 x 100 ms the chunk may take 69.9 ms: 6990 tokens at 0.01 ms (no second fixed
    # cost), an 80 ms mixed step, exactly as the conversion planner computes it.
    perf = dataclasses.replace(TOY, max_num_batched_tokens=8000)
    cluster = make_cluster(perf, prefill=0, decode=1)
    decoder = cluster.decoders[0]
    assert cluster.convert(decoder.name)
    cluster.submit(arrival_seconds=0.0, input_tokens=1000, output_tokens=200)
    cluster.submit(arrival_seconds=0.05, input_tokens=20_000, output_tokens=10)
    cluster.advance_to(0.06)  # A decodes from 0.02 s; B joined at the boundary after 0.05 s
    ((request, chunk),) = decoder.segment_prefill
    assert request.input_tokens == 20_000
    view = PodView(
        name=decoder.name,
        role=Role.DECODE,
        serving_role=ServingRole.CONVERTED,
        ready=True,
        load_known=True,
        requests_running=1.0,
    )
    planned = conversion.chunk_budget_tokens(
        perf=perf, room_ms=80.0 - perf.decode_step_ms(kv_tokens=0, sequences=1), cap_tokens=perf.max_num_batched_tokens
    )
    assert chunk == planned == 6990
    step_seconds = decoder.segment_end_seconds - decoder.base_seconds
    assert step_seconds == pytest.approx(conversion.mixed_step_ms(perf=perf, pod=view, chunk_tokens=chunk) / 1000)
    assert step_seconds == pytest.approx(0.080)
    cluster.advance_to(decoder.segment_end_seconds)
    assert decoder.prompt_tokens_total == 1000 + 6990
