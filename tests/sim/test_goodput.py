"""DistServe's goodputs found by simulation: below the instance's peak rate, and higher for easier requests."""

from __future__ import annotations

import numpy as np
import pytest
from tests.sim.helpers import TOY

from tokenscale.core.profile import BucketGrid, Profile
from tokenscale.core.settings import SLO
from tokenscale.core.types import Role
from tokenscale.core.velocity import derive_velocities
from tokenscale.sim import goodput
from tokenscale.sim.traces import Trace

PROFILE = Profile(
    name="toy",
    model="toy",
    gpu="toy",
    perf=TOY,
    buckets=BucketGrid(),
    velocities=derive_velocities(perf=TOY, buckets=BucketGrid(), prompt_tokens=1000, tpot_slo_seconds=0.1),
    source="tests",
)


SAMPLE = 30.0  # seconds of arrivals per probe: enough to see a queue build at 90% attainment, and fast


def _lengths(input_tokens: int, output_tokens: int) -> Trace:
    return Trace("lengths", np.zeros(1), np.array([input_tokens]), np.array([output_tokens]), 0.0)


def test_prefill_goodput_is_below_the_peak_rate_but_close() -> None:
    # A 1000-token prompt takes 20 ms alone: at most 50 requests/s, with a 400 ms TTFT objective to queue within.
    found = goodput.instance_goodput(
        role=Role.PREFILL, trace=_lengths(1000, 10), profile=PROFILE, slo=SLO(), sample_seconds=SAMPLE
    )
    assert 25.0 < found < 50.0


def test_shorter_prompts_have_a_higher_prefill_goodput() -> None:
    slo = SLO()
    long = goodput.instance_goodput(
        role=Role.PREFILL, trace=_lengths(1000, 10), profile=PROFILE, slo=slo, sample_seconds=SAMPLE
    )
    short = goodput.instance_goodput(
        role=Role.PREFILL, trace=_lengths(300, 10), profile=PROFILE, slo=slo, sample_seconds=SAMPLE
    )
    assert short > long


def test_decode_goodput_is_bounded_by_the_kv_cache() -> None:
    # 100,000 KV tokens hold 100,000 / (1000 + 200) = 83 requests; each lives 199 steps of at most 10 + 0.1·83 ms.
    found = goodput.instance_goodput(
        role=Role.DECODE, trace=_lengths(1000, 200), profile=PROFILE, slo=SLO(), sample_seconds=SAMPLE
    )
    assert found < 83 / (199 * 0.0101)
    assert found > 0.5 * 83 / (199 * 0.0183)


def test_settings_carry_both_goodputs() -> None:
    settings = goodput.distserve_settings(trace=_lengths(1000, 200), profile=PROFILE, slo=SLO(), sample_seconds=SAMPLE)
    assert settings.prefill_goodput_requests_per_second > settings.decode_goodput_requests_per_second > 0
    assert settings.replan_interval_seconds == pytest.approx(30.0)
