"""Variants: a role's capacity split across pools of different GPU types, cheapest tokens/s first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.unit.core.helpers import TOY_VELOCITIES

from tokenscale.core import variants
from tokenscale.core.types import Role

# H100: 30k tokens/s for 3.0 per GPU-hour (1e-4 per token/s); A100: 10k tokens/s for 1.5 (1.5e-4 per token/s).
# The H100's tokens are cheaper, but one A100 instance costs half of one H100.
H100 = variants.Variant(name="h100", tokens_per_second=30_000.0, gpus_per_instance=1, cost_per_gpu_hour=3.0)
A100 = variants.Variant(name="a100", tokens_per_second=10_000.0, gpus_per_instance=1, cost_per_gpu_hour=1.5)


def _variant(base: variants.Variant, **changes: int) -> variants.Variant:
    return variants.Variant(
        name=base.name,
        tokens_per_second=base.tokens_per_second,
        gpus_per_instance=base.gpus_per_instance,
        cost_per_gpu_hour=base.cost_per_gpu_hour,
        min_replicas=changes.get("min_replicas", base.min_replicas),
        max_replicas=changes.get("max_replicas", base.max_replicas),
    )


@pytest.mark.parametrize(
    ("demand", "pools", "current", "room", "expected"),
    [
        # 65k: two H100 (60k), then 5k left: one A100 (1.5) beats one H100 (3.0).
        pytest.param(
            65_000, (H100, A100), {}, None, ({"h100": 2, "a100": 1}, 0), id="residual-on-the-cheapest-instance"
        ),
        # 85k: two H100, then 25k left: one H100 (3.0) beats three A100 (4.5).
        pytest.param(85_000, (H100, A100), {}, None, ({"h100": 3, "a100": 0}, 0), id="residual-on-the-cheapest-tokens"),
        # Room for one more H100 only: 30k there, then 35k on A100 (3 whole, then 1 for the last 5k).
        pytest.param(
            65_000, (H100, A100), {}, {"h100": 1}, ({"h100": 1, "a100": 4}, 0), id="free-gpus-limit-the-cheap-variant"
        ),
        # The H100 pool tops out at 2: 60k there, the other 40k on four A100.
        pytest.param(
            100_000, (_variant(H100, max_replicas=2), A100), {}, None, ({"h100": 2, "a100": 4}, 0), id="variant-maximum"
        ),
        # 1 H100 + 2 A100 = 50k at most: 50k of 100k uncovered.
        pytest.param(
            100_000,
            (_variant(H100, max_replicas=1), _variant(A100, max_replicas=2)),
            {},
            None,
            ({"h100": 1, "a100": 2}, 50_000),
            id="every-variant-exhausted",
        ),
        # Growth keeps what runs: 1 H100 + 1 A100 (40k) need 20k more: one H100 (3.0) or two A100 (3.0) tie, and
        # the H100's tokens are the cheaper.
        pytest.param(
            60_000, (H100, A100), {"h100": 1, "a100": 1}, None, ({"h100": 2, "a100": 1}, 0), id="scale-out-adds-only"
        ),
        # 90k running, 60k needed: the A100 capacity (most expensive per token/s) goes first, all 30k of it.
        pytest.param(
            60_000,
            (H100, A100),
            {"h100": 2, "a100": 3},
            None,
            ({"h100": 2, "a100": 0}, 0),
            id="scale-in-expensive-first",
        ),
        # The A100 pool keeps its minimum of 1 (70k); an H100 cannot go without falling below 60k.
        pytest.param(
            60_000,
            (H100, _variant(A100, min_replicas=1)),
            {"h100": 2, "a100": 3},
            None,
            ({"h100": 2, "a100": 1}, 0),
            id="scale-in-keeps-minimums",
        ),
        # 50k needed of 70k: A100 capacity first (20k), then no H100 may go.
        pytest.param(
            50_000,
            (H100, A100),
            {"h100": 2, "a100": 2},
            None,
            ({"h100": 2, "a100": 0}, 0),
            id="scale-in-stops-at-demand",
        ),
        pytest.param(
            40_000,
            (H100, A100),
            {"h100": 1, "a100": 1},
            {"h100": 0},
            ({"h100": 1, "a100": 1}, 0),
            id="demand-met-holds",
        ),
    ],
)
def test_split_covers_the_demand_with_the_cheapest_capacity(
    demand: float,
    pools: tuple[variants.Variant, ...],
    current: dict[str, int],
    room: dict[str, int] | None,
    expected: tuple[dict[str, int], float],
) -> None:
    replicas, shortfall = expected
    split = variants.split_capacity(demand_tokens_per_second=demand, variants=pools, current=current, room=room)

    assert dict(split.replicas) == replicas
    assert split.capacity_tokens_per_second == sum(replicas[v.name] * v.tokens_per_second for v in pools)
    assert split.shortfall_tokens_per_second == pytest.approx(shortfall)
    assert (variants.CAPACITY_SHORT in {r.code for r in split.reasons}) == (shortfall > 0)


def test_bounds_apply_first_and_a_minimum_is_not_limited_by_free_gpus() -> None:
    pools = (_variant(H100, min_replicas=2), _variant(A100, max_replicas=1))

    # Demand 0 with 0 H100 (below its minimum 2) and 3 A100 (above its maximum 1), and no free GPUs at all.
    split = variants.split_capacity(
        demand_tokens_per_second=0.0, variants=pools, current={"a100": 3}, room={"h100": 0, "a100": 0}
    )

    assert dict(split.replicas) == {"h100": 2, "a100": 0}
    assert [r.code for r in split.reasons][:2] == [variants.VARIANT_BOUNDED, variants.VARIANT_BOUNDED]


def test_reasons_say_what_each_variant_gained_or_lost() -> None:
    split = variants.split_capacity(
        demand_tokens_per_second=65_000, variants=(H100, A100), current={"h100": 1, "a100": 0}
    )

    codes = {r.message.split(":")[0]: r.code for r in split.reasons}
    assert codes == {"h100": variants.VARIANT_SCALE_OUT, "a100": variants.VARIANT_SCALE_OUT}


@pytest.mark.parametrize(
    "pools",
    [
        pytest.param((), id="none"),
        pytest.param((H100, H100), id="duplicate-names"),
    ],
)
def test_split_refuses_no_or_duplicate_variants(pools: tuple[variants.Variant, ...]) -> None:
    with pytest.raises(ValueError, match="distinct"):
        variants.split_capacity(demand_tokens_per_second=1.0, variants=pools, current={})


@pytest.mark.parametrize(
    ("decided", "expected_demand"),
    [
        # Capacity 3.4 reference instances of 10k: the policy is told 3 (rounded down).
        pytest.param(3, 34_000.0, id="same-count-holds-the-capacity"),
        pytest.param(4, 40_000.0, id="more-is-a-scale-out-above-capacity"),
        pytest.param(2, 20_000.0, id="fewer-is-a-scale-in-below-capacity"),
    ],
)
def test_demand_follows_the_decided_count_and_holds_on_no_change(decided: int, expected_demand: float) -> None:
    assert variants.reference_replicas(capacity_tokens_per_second=34_000.0, reference_tokens_per_second=10_000.0) == 3
    demand = variants.demand_tokens_per_second(
        decided_replicas=decided, capacity_tokens_per_second=34_000.0, reference_tokens_per_second=10_000.0
    )
    assert demand == pytest.approx(expected_demand)


def test_reference_replicas_ignores_float_noise_below_a_whole_instance() -> None:
    three = 3 * 0.1  # 0.30000000000000004
    assert variants.reference_replicas(capacity_tokens_per_second=three, reference_tokens_per_second=0.1) == 3


@pytest.mark.parametrize(
    ("role", "rates", "expected"),
    [
        # min(V_P 10k, V_N 20k).
        pytest.param(Role.PREFILL, (), 10_000.0, id="prefill-min-of-compute-and-network"),
        # No mix: the middle bucket (row 1, column 1): 20k.
        pytest.param(Role.DECODE, (), 20_000.0, id="decode-middle-bucket-without-rates"),
        # 40k tokens/s in bucket 0 (V 40k) and 20k in bucket 2 (V 10k): 60k / (1 + 2) = 20k.
        pytest.param(Role.DECODE, (40_000.0, 0, 20_000.0, 0, 0, 0, 0, 0, 0), 20_000.0, id="decode-harmonic-mix"),
        # Everything in bucket 0: that bucket's 40k.
        pytest.param(Role.DECODE, (5.0, 0, 0, 0, 0, 0, 0, 0, 0), 40_000.0, id="decode-one-bucket"),
    ],
)
def test_instance_velocity_of_a_role(role: Role, rates: tuple[float, ...], expected: float) -> None:
    value = variants.instance_tokens_per_second(velocities=TOY_VELOCITIES, role=role, bucket_tokens_per_second=rates)
    assert value == pytest.approx(expected)


def test_cost_per_token_orders_variants_by_price_over_velocity() -> None:
    tp4 = variants.Variant(name="tp4", tokens_per_second=40_000.0, gpus_per_instance=4, cost_per_gpu_hour=1.0)

    assert tp4.cost_per_instance_hour == 4.0
    assert H100.cost_per_token_per_second == pytest.approx(3.0 / 30_000)
    assert tp4.cost_per_token_per_second == pytest.approx(4.0 / 40_000)


_pools = st.lists(
    st.tuples(
        st.floats(min_value=1_000, max_value=50_000),
        st.integers(min_value=1, max_value=4),
        st.floats(min_value=0.1, max_value=10),
        st.integers(min_value=0, max_value=3),
    ),
    min_size=1,
    max_size=4,
)


@given(
    pools=_pools,
    demand=st.floats(min_value=0, max_value=500_000),
    current=st.lists(st.integers(min_value=0, max_value=20), min_size=4, max_size=4),
)
def test_split_moves_one_way_and_covers_the_demand_when_nothing_limits_it(
    pools: list[tuple[float, int, float, int]], demand: float, current: list[int]
) -> None:
    made = [
        variants.Variant(
            name=f"v{i}",
            tokens_per_second=v,
            gpus_per_instance=g,
            cost_per_gpu_hour=c,
            min_replicas=m,
            max_replicas=1000,
        )
        for i, (v, g, c, m) in enumerate(pools)
    ]
    now = {v.name: max(current[i], v.min_replicas) for i, v in enumerate(made)}

    split = variants.split_capacity(demand_tokens_per_second=demand, variants=made, current=now)

    deltas = [split.replicas[v.name] - now[v.name] for v in made]
    assert all(d >= 0 for d in deltas) or all(d <= 0 for d in deltas)
    assert split.capacity_tokens_per_second >= demand - 1e-6
    assert all(split.replicas[v.name] >= v.min_replicas for v in made)
    if any(d < 0 for d in deltas):
        # A scale-in leaves no instance the demand does not need: each variant is at its minimum, or losing one
        # more instance of it would fall below the demand.
        assert all(
            split.replicas[v.name] == v.min_replicas
            or split.capacity_tokens_per_second - v.tokens_per_second < demand + 1e-6
            for v in made
        )
