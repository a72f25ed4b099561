"""Scenario settings derived offline from the trace: TokenScale's convertible count, HeteroScale's pressure test,
and the runs' cold start."""

from __future__ import annotations

import numpy as np
import pytest

from tokenscale.api.profiles import load_profile
from tokenscale.core.settings import DistServeSettings
from tokenscale.sim import scoreboard
from tokenscale.sim.traces import Trace

# An idle 8B H100 decoder converted: a 7 ms decode step leaves 73 ms of 0.8 x 100 ms for a chunk of
# 0.03·c + 4.2e-7·c² ms: c = 2355 tokens in a 79.98 ms mixed step, 29,445 prompt tokens/s.
V_CONV = 29_445.0


def _bursty(burst_tokens_per_second: float) -> Trace:
    """100 bins of 10 s, two of them at the burst rate and the others empty: the 0.99 quantile of the per-bin
    rate is the burst rate, the mean 2% of it."""
    per_bin = int(burst_tokens_per_second * 10)
    return Trace(
        "bursty", np.array([5.0, 15.0]), np.array([per_bin, per_bin], dtype=np.int64), np.ones(2, np.int64), 1000.0
    )


@pytest.mark.parametrize(
    ("bursts_over_v_conv", "expected"),
    [
        pytest.param(2.5, 3, id="2.5-decoders-of-burst"),
        pytest.param(3.5, 4, id="3.5-decoders-of-burst"),
        pytest.param(0.1, 1, id="at-least-one"),
    ],
)
def test_convertible_count_covers_the_burst_above_the_mean(bursts_over_v_conv: float, expected: int) -> None:
    # q0.99 − mean = 0.98 x burst rate; choose the burst so that this is the given multiple of V_conv
    trace = _bursty(bursts_over_v_conv * V_CONV / 0.98)
    scenario = scoreboard.Scenario.prepare(trace_name="bursty", trace=trace, profile=load_profile("llama-3.1-8b-h100"))
    settings = scenario.settings_for("static")
    assert scoreboard.convertible_decoder_count(trace=trace, settings=settings) == expected


def test_heteroscale_ratio_and_target_come_from_the_goodputs() -> None:
    # one prefiller keeps the SLO up to 2 req/s, one decoder up to 10 req/s; 50 output tokens on average
    goodputs = DistServeSettings(prefill_goodput_requests_per_second=2.0, decode_goodput_requests_per_second=10.0)
    trace = Trace("t", np.array([0.0, 1.0]), np.array([100, 100], dtype=np.int64), np.array([40, 60], np.int64), 2.0)
    knobs = scoreboard.pressure_tested_heteroscale(goodputs, trace)
    assert knobs.prefill_to_decode_ratio == pytest.approx(5.0)  # 10 / 2 prefillers per decoder
    assert knobs.target_decode_tokens_per_second == pytest.approx(500.0)  # 10 req/s x 50 tokens


def test_another_cold_start_keeps_the_oracle_and_tells_the_policies() -> None:
    trace = Trace("t", np.arange(0.0, 30.0), np.full(30, 500, np.int64), np.full(30, 20, np.int64), 30.0)
    scenario = scoreboard.Scenario.prepare(trace_name="t", trace=trace, profile=load_profile("llama-3.1-8b-h100"))
    found = scenario.oracle
    fast = scenario.with_cold_start(10.0)
    assert fast.oracle is found
    assert fast.settings_for("tokenscale").profile.perf.cold_start_seconds == 10.0
    assert scenario.settings_for("tokenscale").profile.perf.cold_start_seconds == 60.0  # the profile's own
