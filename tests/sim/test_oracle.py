"""The oracle: per-bin instance counts from peak velocities, and its cost."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenscale.api.profiles import load_profile
from tokenscale.core import velocity
from tokenscale.sim import oracle
from tokenscale.sim.traces import Trace


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
