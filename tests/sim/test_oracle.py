"""The oracle: the demand bound (per-bin counts from peak velocities), and the plan that meets the SLO target."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenscale.api.profiles import load_profile
from tokenscale.core import velocity
from tokenscale.core.settings import ScalingSettings
from tokenscale.sim import oracle
from tokenscale.sim.report import attainment
from tokenscale.sim.scoreboard import Scenario
from tokenscale.sim.traces import Trace, burst_trace


def _trace(times: list[float], inputs: list[int], outputs: list[int], span: float) -> Trace:
    return Trace("t", np.array(times), np.array(inputs, dtype=np.int64), np.array(outputs, dtype=np.int64), span)


def test_prefill_instances_cover_each_bins_prompt_tokens() -> None:
    profile = load_profile("llama-3.1-8b-h100")
    v_p = velocity.prefill_tokens_per_second(perf=profile.perf, prompt_tokens=2000)
    # Bin 0: 10 requests of 2000 tokens; bin 1: none; bin 2: enough for 2.5 instances over 10 s.
    many = math.ceil(2.5 * v_p * 10 / 2000)
    times = [1.0] * 10 + [25.0] * many
    trace = _trace(times, [2000] * len(times), [10] * len(times), 30.0)
    schedule = oracle.oracle_schedule(trace=trace, profile=profile, tpot_slo_seconds=0.1, horizon_seconds=30.0)
    assert schedule.prefill_instances.tolist() == [1, 1, math.ceil(many * 2000 / (v_p * 10))]
    assert schedule.prefill_instances[2] == 3
    assert schedule.decode_instances.tolist() == [1, 1, 1]


def test_decode_instances_cover_decoder_seconds() -> None:
    profile = load_profile("qwen-2.5-32b-tp4-a100")
    v_d = velocity.decode_tokens_per_second(
        perf=profile.perf, input_tokens=1000, output_tokens=500, tpot_slo_seconds=0.1
    )
    per_request = 1500 / v_d  # decoder-seconds
    count = math.ceil(3.2 * 10 / per_request)  # a bit over 3.2 decoders for a 10 s bin
    trace = _trace([0.5] * count, [1000] * count, [500] * count, 10.0)
    schedule = oracle.oracle_schedule(trace=trace, profile=profile, tpot_slo_seconds=0.1, horizon_seconds=10.0)
    assert schedule.decode_instances.tolist() == [4]


def test_gpu_hours_count_every_instance_and_the_partial_last_bin() -> None:
    profile = load_profile("qwen-2.5-32b-tp4-a100")  # 4 GPUs per instance
    trace = _trace([1.0], [100], [10], 25.0)
    schedule = oracle.oracle_schedule(trace=trace, profile=profile, tpot_slo_seconds=0.1, horizon_seconds=25.0)
    # Bins of 10, 10 and 5 s, one prefiller and one decoder each: 2 × 25 s × 4 GPUs.
    assert schedule.gpu_hours == pytest.approx(2 * 25 * 4 / 3600)
    assert schedule.at(24.0) == (1, 1)
    assert schedule.at(1e6) == (1, 1)


def test_oracle_never_goes_below_the_minimum() -> None:
    profile = load_profile("llama-3.1-8b-h100")
    empty = _trace([], [], [], 60.0)
    schedule = oracle.oracle_schedule(
        trace=empty, profile=profile, tpot_slo_seconds=0.1, horizon_seconds=60.0, min_prefill=2, min_decode=3
    )
    assert schedule.prefill_instances.tolist() == [2] * 6
    assert schedule.decode_instances.tolist() == [3] * 6


def test_demand_plan_sizes_prefill_per_second_and_spreads_decode_over_its_bins() -> None:
    profile = load_profile("llama-3.1-8b-h100")
    v_p = velocity.prefill_tokens_per_second(perf=profile.perf, prompt_tokens=2000)
    # Second 3: 2000-token prompts worth 2.5 prefillers for one second (-> 3); second 12: one prompt (-> 1).
    many = math.ceil(2.5 * v_p / 2000)
    times = [3.5] * many + [12.0]
    trace = _trace(times, [2000] * len(times), [10] * len(times), 20.0)
    plan = oracle.demand_plan(trace=trace, profile=profile, tpot_slo_seconds=0.1, horizon_seconds=20.0)
    bound = oracle.oracle_schedule(trace=trace, profile=profile, tpot_slo_seconds=0.1, horizon_seconds=20.0)
    assert plan.bin_seconds == 1.0
    assert plan.prefill_instances.tolist() == [1, 1, 1, 3] + [1] * 16
    # Decode keeps the 10 s bins of the demand bound, one value per second.
    assert plan.decode_instances.tolist() == [bound.decode_instances[0]] * 10 + [bound.decode_instances[1]] * 10


@pytest.fixture(scope="module")
def burst() -> tuple[Trace, ScalingSettings]:
    # 40 req/s of 200-token prompts, and 20 s at 8x from t = 30 s: a short prompt has 0.25 s, about one full
    # prefill step, so the per-second demand plan misses during the burst.
    trace = burst_trace(
        base_rate_per_second=40,
        burst_factor=8,
        burst_seconds=20,
        period_seconds=1000,
        duration_seconds=90,
        seed=3,
        first_burst_seconds=30,
        input_tokens=200,
        output_tokens=50,
    )
    scenario = Scenario.prepare(trace_name="burst", trace=trace, profile=load_profile("llama-3.1-8b-h100"))
    return trace, scenario.settings_for("static")


@pytest.mark.parametrize("target", [pytest.param(0.9, id="90%"), pytest.param(0.99, id="99%")])
def test_the_oracle_meets_its_target_with_instant_starts(burst: tuple[Trace, ScalingSettings], target: float) -> None:
    trace, settings = burst
    found = oracle.find_oracle(trace=trace, settings=settings, target_attainment=target)
    start = oracle.demand_plan(trace=trace, profile=settings.profile, tpot_slo_seconds=0.1, horizon_seconds=90.0)
    replayed = oracle.replay(trace=trace, settings=settings, schedule=found.schedule)
    attained = attainment(outcomes=replayed.outcomes, slo=settings.slo).slo
    assert found.replays > 1  # the starting plan misses the target: the search had to add instances
    assert attained >= target
    assert attained == found.slo_attainment
    assert replayed.gpu_seconds / 3600 == found.gpu_hours
    assert np.all(found.schedule.prefill_instances >= start.prefill_instances)
    assert found.gpu_hours >= found.lower_bound_gpu_hours


def test_a_higher_target_never_gives_a_smaller_plan(burst: tuple[Trace, ScalingSettings]) -> None:
    trace, settings = burst
    low = oracle.find_oracle(trace=trace, settings=settings, target_attainment=0.9)
    high = oracle.find_oracle(trace=trace, settings=settings, target_attainment=0.99)
    assert np.all(high.schedule.prefill_instances >= low.schedule.prefill_instances)
    assert np.all(high.schedule.decode_instances >= low.schedule.decode_instances)
    assert high.gpu_hours > low.gpu_hours


def test_a_starting_plan_that_meets_the_target_is_kept(burst: tuple[Trace, ScalingSettings]) -> None:
    trace, settings = burst
    start = oracle.demand_plan(trace=trace, profile=settings.profile, tpot_slo_seconds=0.1, horizon_seconds=90.0)
    replayed = oracle.replay(trace=trace, settings=settings, schedule=start)
    reached = attainment(outcomes=replayed.outcomes, slo=settings.slo).slo
    found = oracle.find_oracle(trace=trace, settings=settings, target_attainment=reached)
    assert found.replays == 1
    assert found.schedule.prefill_instances.tolist() == start.prefill_instances.tolist()
    assert found.slo_attainment == reached


def test_the_search_stops_after_max_replays(burst: tuple[Trace, ScalingSettings]) -> None:
    trace, settings = burst
    found = oracle.find_oracle(trace=trace, settings=settings, target_attainment=1.0, max_replays=2)
    assert found.replays == 2
    assert found.slo_attainment < 1.0


@pytest.mark.parametrize("target", [pytest.param(0.0, id="zero"), pytest.param(1.01, id="above-one")])
def test_a_target_outside_zero_to_one_is_an_error(burst: tuple[Trace, ScalingSettings], target: float) -> None:
    trace, settings = burst
    with pytest.raises(ValueError, match="target_attainment"):
        oracle.find_oracle(trace=trace, settings=settings, target_attainment=target)


@pytest.mark.parametrize(
    ("instances", "bin_seconds", "cold_start_seconds", "expected"),
    [
        # docstring example: held in bins 2-3 and 6 (10 s bins): 60 s before bin 2, the 20 s gap bridged
        pytest.param([0, 0, 1, 1, 0, 0, 1], 10.0, 60.0, 80.0, id="gap-shorter-than-a-cold-start-bridged"),
        # the 20 s gap with a 10 s cold start: restart (10 s) beats keeping (20 s); 10 + 10
        pytest.param([0, 0, 1, 1, 0, 0, 1], 10.0, 10.0, 20.0, id="gap-longer-than-a-cold-start-restarts"),
        # held from the first bin: warm, nothing to pay
        pytest.param([1, 1, 1, 1], 1.0, 60.0, 0.0, id="warm-from-the-start"),
        # slot 1 from bin 0 (warm); slot 2 in bins 1 and 3 (a start, 5 s, then the 1 s gap bridged);
        # slot 3 in bin 3 (5 s)
        pytest.param([1, 2, 1, 3], 1.0, 5.0, 5.0 + 1.0 + 5.0, id="stacked-slots"),
        pytest.param([0, 0, 0], 1.0, 60.0, 0.0, id="nothing-held"),
    ],
)
def test_cold_start_overhead_pays_one_start_per_run_and_bridges_short_gaps(
    instances: list[int], bin_seconds: float, cold_start_seconds: float, expected: float
) -> None:
    got = oracle.cold_start_overhead_instance_seconds(
        instances=np.asarray(instances, dtype=np.int64), bin_seconds=bin_seconds, cold_start_seconds=cold_start_seconds
    )
    assert got == pytest.approx(expected)


def test_the_oracle_with_cold_starts_costs_more_the_longer_they_are(burst: tuple[Trace, ScalingSettings]) -> None:
    trace, settings = burst
    found = oracle.find_oracle(trace=trace, settings=settings)
    costs = [found.gpu_hours_with_cold_start(seconds) for seconds in (0.0, 10.0, 60.0)]
    assert costs[0] == found.gpu_hours
    assert costs[0] < costs[1] < costs[2]
