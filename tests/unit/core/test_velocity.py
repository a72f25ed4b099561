"""Velocities derived from a performance model, checked against hand-computed values."""

from __future__ import annotations

import dataclasses

import pytest
from tests.unit.core import helpers

from tokenscale.api import profiles
from tokenscale.core import velocity
from tokenscale.core.profile import BucketGrid

# The core tests' toy instance: prefill 10 + 0.01·L ms, decode step 10 + 0.1·B ms, KV 100,000 tokens,
# 1e5 bytes per token over 1e9 bytes/s, 256 sequences, 1000-token steps.
TOY = helpers.TOY_PERF


def test_prefill_velocity_is_budget_over_step_time() -> None:
    # step = 10 + 0.01 * 1000 = 20 ms for 1000 tokens -> 50,000 tokens/s
    assert velocity.prefill_tokens_per_second(perf=TOY, prompt_tokens=500) == pytest.approx(50_000)


def test_prefill_velocity_falls_with_prompt_length_through_attention() -> None:
    quadratic = dataclasses.replace(TOY, prefill_ms_per_token_squared=1e-5)
    short = velocity.prefill_tokens_per_second(perf=quadratic, prompt_tokens=100)
    long = velocity.prefill_tokens_per_second(perf=quadratic, prompt_tokens=4000)
    assert long < short


def test_network_velocity_is_link_over_kv_bytes() -> None:
    # 1e9 B/s / 1e5 B per token = 10,000 tokens/s
    assert velocity.network_tokens_per_second(perf=TOY) == pytest.approx(10_000)


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "tpot", "expected"),
    [
        # memory-bound: residency 1000 + 50 = 1050 -> floor(100000/1050) = 95 sequences;
        # step = 10 + 0.1*95 = 19.5 ms; V_D = 95 * 1100 / (100 * 0.0195) = 53,589.7
        pytest.param(1000, 100, 0.1, 95 * 1100 / (100 * 0.0195), id="memory-bound"),
        # seq-cap-bound: residency 10 + 5 = 15 -> memory 6666, cap 256; step = 10 + 25.6 = 35.6 ms
        pytest.param(10, 10, 0.1, 256 * 20 / (10 * 0.0356), id="max-num-seqs-bound"),
        # latency-bound: TPOT 20 ms -> (20 - 10) / 0.1 = 100 sequences; step 20 ms
        pytest.param(10, 10, 0.02, 100 * 20 / (10 * 0.020), id="tpot-bound"),
    ],
)
def test_decode_velocity_cases(input_tokens: float, output_tokens: float, tpot: float, expected: float) -> None:
    got = velocity.decode_tokens_per_second(
        perf=TOY, input_tokens=input_tokens, output_tokens=output_tokens, tpot_slo_seconds=tpot
    )
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "bucket"),
    [
        pytest.param(0, 0, 0, id="smallest"),
        pytest.param(445, 49, 0, id="just-below-both-edges"),
        pytest.param(446, 49, 3, id="input-edge-moves-row"),
        pytest.param(445, 50, 1, id="output-edge-moves-column"),
        pytest.param(5000, 5000, 8, id="largest"),
    ],
)
def test_bucket_index_is_row_major_by_input(input_tokens: int, output_tokens: int, bucket: int) -> None:
    assert BucketGrid().index(input_tokens=input_tokens, output_tokens=output_tokens) == bucket


@pytest.mark.parametrize("name", profiles.bundled_profile_names())
def test_bundled_profiles_load_with_positive_velocities(name: str) -> None:
    profile = profiles.load_profile(name)
    v = profile.velocities
    assert profile.name == name
    assert v.prefill_tokens_per_second > 1000
    # Longer outputs release KV more slowly: V_D falls along each row of the grid.
    for row in range(3):
        row_velocities = v.decode_tokens_per_second[3 * row : 3 * row + 3]
        assert list(row_velocities) == sorted(row_velocities, reverse=True)


def test_unknown_profile_lists_the_bundled_ones() -> None:
    with pytest.raises(ValueError, match=r"llama-3\.1-8b-h100"):
        profiles.load_profile("gpt-9")
