"""Heterogeneous pools in the simulator: prefill and decode on different models, KV transfer at a share of the
link, cost per role, and the experiment's scoring."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tests.sim.helpers import NO_OVERHEAD, TOY
from tests.unit.core.helpers import TOY_PROFILE

from tokenscale.core.profile import Profile, Velocities
from tokenscale.core.types import Role
from tokenscale.sim import hetero, traces
from tokenscale.sim.cluster import Cluster, ClusterConfig

# A prefill GPU twice as slow per token: prefill(1000) = 10 + 0.02·1000 = 30 ms instead of 20 ms.
SLOW_PREFILL = dataclasses.replace(TOY, prefill_ms_per_token=0.02)


def _one_request(**cluster_args: object) -> float:
    cluster = Cluster(perf=TOY, **{"config": NO_OVERHEAD, **cluster_args})  # type: ignore[arg-type]
    cluster.start_instances(Role.PREFILL, 1, ready_now=True)
    cluster.start_instances(Role.DECODE, 1, ready_now=True)
    cluster.submit(arrival_seconds=1.0, input_tokens=1000, output_tokens=11)
    cluster.advance_to(5.0)
    return float(cluster.outcomes().ttft_seconds[0])


@pytest.mark.parametrize(
    ("cluster_args", "ttft"),
    [
        # 20 ms prefill + 0.5 ms + 1000 · 1e5 B / 1e10 B/s = 10 ms transfer.
        pytest.param({}, 0.0305, id="one-model"),
        pytest.param({"prefill_perf": SLOW_PREFILL}, 0.0405, id="prefillers-on-their-own-model"),
        # Half the link: the 10 ms of bytes take 20 ms.
        pytest.param(
            {"config": ClusterConfig(disaggregation_overhead_seconds=0.0, kv_bandwidth_ratio=0.5)},
            0.0405,
            id="kv-across-domains-at-half-bandwidth",
        ),
    ],
)
def test_prefill_model_and_kv_bandwidth_share_set_the_first_token(cluster_args: dict[str, object], ttft: float) -> None:
    assert _one_request(**cluster_args) == pytest.approx(ttft)


def test_kv_transfer_runs_at_the_slower_ends_link() -> None:
    slow_link = dataclasses.replace(TOY, link_bytes_per_second=5e9)
    cluster = Cluster(perf=TOY, prefill_perf=slow_link)

    # 0.5 ms + 1000 · 1e5 B / 5e9 B/s = 20.5 ms.
    assert cluster.kv_transfer_seconds(tokens=1000) == pytest.approx(0.0205)


def test_gpu_seconds_split_by_role() -> None:
    two_gpus = dataclasses.replace(TOY, gpus_per_instance=2)
    cluster = Cluster(perf=TOY, prefill_perf=two_gpus)
    cluster.start_instances(Role.PREFILL, 2, ready_now=True)
    cluster.start_instances(Role.DECODE, 1, ready_now=True)
    cluster.advance_to(10.0)

    by_role = cluster.gpu_seconds_by_role(until_seconds=10.0)

    # Two prefillers of 2 GPUs and one decoder of 1 GPU, for 10 s.
    assert by_role == {Role.PREFILL: 40.0, Role.DECODE: 10.0}
    assert sum(by_role.values()) == cluster.gpu_seconds(until_seconds=10.0)


def _profile(name: str, gpu: str, *, prefill: float, decode: float) -> Profile:
    return dataclasses.replace(
        TOY_PROFILE,
        name=name,
        gpu=gpu,
        velocities=Velocities(
            prefill_tokens_per_second=prefill,
            network_tokens_per_second=2 * prefill,
            decode_tokens_per_second=(decode,) * 9,
        ),
    )


FAST = _profile("fast", "F", prefill=30_000.0, decode=100_000.0)
CHEAP = _profile("cheap", "C", prefill=10_000.0, decode=60_000.0)


def test_composite_profile_takes_each_roles_velocity_and_the_decoders_model() -> None:
    both = hetero.composite_profile(prefill=FAST, decode=CHEAP)

    assert both.velocities.prefill_tokens_per_second == 30_000.0
    assert both.velocities.network_tokens_per_second == 20_000.0  # min(60k, 20k)
    assert both.velocities.decode_tokens_per_second == CHEAP.velocities.decode_tokens_per_second
    assert both.perf == CHEAP.perf
    assert hetero.composite_profile(prefill=FAST, decode=FAST) is FAST


def test_composite_profile_refuses_two_models() -> None:
    other = dataclasses.replace(CHEAP, model="another")
    with pytest.raises(ValueError, match="one model"):
        hetero.composite_profile(prefill=FAST, decode=other)


def _trace(count: int, *, input_tokens: int, output_tokens: int) -> traces.Trace:
    return traces.Trace(
        name="t",
        arrival_seconds=np.linspace(0.0, 59.0, count),
        input_tokens=np.full(count, input_tokens, dtype=np.int64),
        output_tokens=np.full(count, output_tokens, dtype=np.int64),
        span_seconds=60.0,
    )


def _per_million(*, prefill_seconds: float, prefill_price: float, decode_seconds: float, decode_price: float) -> float:
    """Cost per million tokens of requests of 1000 tokens that hold each role that many seconds."""
    return 1e6 / 1000 * (prefill_seconds * prefill_price + decode_seconds * decode_price) / 3600


@pytest.mark.parametrize(
    ("prefill", "decode", "expected"),
    [
        # A request of 900 in + 100 out holds a prefiller 900 / V_P s and a decoder 1000 / V_D s.
        pytest.param(
            FAST,
            FAST,
            _per_million(
                prefill_seconds=900 / 30_000, prefill_price=3.0, decode_seconds=1000 / 100_000, decode_price=3.0
            ),
            id="fast-only",
        ),
        pytest.param(
            CHEAP,
            CHEAP,
            _per_million(
                prefill_seconds=900 / 10_000, prefill_price=1.0, decode_seconds=1000 / 60_000, decode_price=1.0
            ),
            id="cheap-only",
        ),
        pytest.param(
            FAST,
            CHEAP,
            _per_million(
                prefill_seconds=900 / 30_000, prefill_price=3.0, decode_seconds=1000 / 60_000, decode_price=1.0
            ),
            id="fast-prefill-cheap-decode",
        ),
    ],
)
def test_steady_state_cost_prices_each_roles_seconds_per_token(
    prefill: Profile, decode: Profile, expected: float
) -> None:
    pair = hetero.PoolPair("p", prefill, decode)

    cost = hetero.steady_state_cost_per_million_tokens(
        trace=_trace(10, input_tokens=900, output_tokens=100), pair=pair, prices={"F": 3.0, "C": 1.0}
    )

    assert cost == pytest.approx(expected)


def test_kv_transfer_seconds_per_request_scale_with_the_link_share() -> None:
    trace = _trace(3, input_tokens=1000, output_tokens=10)

    inside = hetero.kv_transfer_seconds(trace=trace, profile=TOY_PROFILE)
    across = hetero.kv_transfer_seconds(trace=trace, profile=TOY_PROFILE, bandwidth_ratio=0.8)

    # Toy profile: 0.5 ms + 1000 · 1e5 B / 1e9 B/s = 100.5 ms; at 80% of the link 125.5 ms.
    assert inside == pytest.approx([0.1005] * 3)
    assert across == pytest.approx([0.1255] * 3)


def test_run_pair_prices_each_roles_gpu_hours_and_counts_the_traces_tokens() -> None:
    trace = _trace(30, input_tokens=200, output_tokens=20)
    pair = hetero.PoolPair("toy", TOY_PROFILE, TOY_PROFILE)

    record = hetero.run_pair(trace=trace, pair=pair, prices={TOY_PROFILE.gpu: 2.0}, policy="static")

    assert record.tokens == 30 * 220
    assert record.cost == pytest.approx(2.0 * (record.prefill_gpu_hours + record.decode_gpu_hours))
    assert record.cost_per_million_tokens == pytest.approx(1e6 * record.cost / record.tokens)
    assert record.homogeneous
    assert record.prefill_gpu_hours > 0
    assert record.decode_gpu_hours > 0
