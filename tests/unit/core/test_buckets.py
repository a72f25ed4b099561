"""Per-bucket arrival rates from length histograms whose bounds do not line up with the grid's edges."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from tests.unit.core.helpers import length_histogram

from tokenscale.core import buckets
from tokenscale.core.profile import BucketGrid

GRID = BucketGrid()  # input edges 446 / 1236, output edges 50 / 139


def _input_shares(total_tokens: float) -> buckets.LengthShares | None:
    # 10 requests in (200, 500] and 10 in (1000, 2000]
    histogram = length_histogram({500.0: 10, 2000.0: 10}, total_tokens)
    return buckets.length_shares(
        histogram=histogram,
        edges_tokens=GRID.input_edges_tokens,
        representative_tokens=GRID.representative_input_tokens,
    )


def test_histogram_buckets_spread_over_grid_buckets_by_overlap() -> None:
    shares = _input_shares(18_500.0)
    assert shares is not None
    # (200, 500]: 246/300 of 10 below 446 (8.2), 54/300 above (1.8);
    # (1000, 2000]: 236/1000 below 1236 (2.36), 7.64 above
    assert shares.request_shares == pytest.approx((8.2 / 20, 4.16 / 20, 7.64 / 20))
    # masses at the overlaps' midpoints: 8.2*323; 1.8*473 + 2.36*1118; 7.64*1618 (they add up to 18,500)
    assert shares.mean_tokens == pytest.approx((323.0, (1.8 * 473 + 2.36 * 1118) / 4.16, 1618.0))


def test_token_masses_are_rescaled_to_the_exact_sum() -> None:
    shares = _input_shares(37_000.0)  # twice the midpoint estimate
    assert shares is not None
    assert shares.mean_tokens == pytest.approx((646.0, 2 * (1.8 * 473 + 2.36 * 1118) / 4.16, 3236.0))


def test_inf_bucket_goes_to_the_bucket_of_its_lower_bound() -> None:
    histogram = length_histogram({float("inf"): 4}, 4 * 20_000.0)
    shares = buckets.length_shares(
        histogram=histogram,
        edges_tokens=GRID.input_edges_tokens,
        representative_tokens=GRID.representative_input_tokens,
    )
    assert shares == buckets.LengthShares((0.0, 0.0, 1.0), (289.0, 1000.0, 20_000.0))


def test_empty_histogram_gives_no_shares() -> None:
    empty = length_histogram({}, 0.0)
    assert (
        buckets.length_shares(histogram=empty, edges_tokens=(446, 1236), representative_tokens=(1.0, 2.0, 3.0)) is None
    )


@pytest.mark.parametrize(
    ("tokens", "index"),
    [
        pytest.param(100.0, 0, id="short"),
        pytest.param(446.0, 1, id="edge-moves-up"),
        pytest.param(5000.0, 2, id="long"),
    ],
)
def test_point_shares_put_everything_in_one_bucket(tokens: float, index: int) -> None:
    shares = buckets.point_shares(
        tokens=tokens, edges_tokens=(446, 1236), representative_tokens=(289.0, 1000.0, 3011.0)
    )
    assert shares.request_shares[index] == 1.0
    assert sum(shares.request_shares) == 1.0
    assert shares.mean_tokens[index] == tokens


INPUTS = buckets.LengthShares((0.5, 0.5, 0.0), (300.0, 1000.0, 3011.0))
OUTPUTS = buckets.LengthShares((0.0, 1.0, 0.0), (18.0, 100.0, 352.0))


def test_bucket_rates_are_request_rate_times_shares_times_tokens() -> None:
    rates = buckets.bucket_token_rates(arriving_requests_per_second=10.0, inputs=INPUTS, outputs=OUTPUTS)
    # bucket (0, 1): 10 req/s * 0.5 * 1 * (300 + 100) = 2000; bucket (1, 1): 10 * 0.5 * (1000 + 100) = 5500
    assert rates == pytest.approx((0.0, 2000.0, 0.0, 0.0, 5500.0, 0.0, 0.0, 0.0, 0.0))


@dataclass(frozen=True)
class LongAnswersForLongPrompts:
    """A predictor that sends input bucket 1 to output bucket 2."""

    def predict(self, *, input_bucket: int, outputs: buckets.LengthShares) -> buckets.LengthShares:
        if input_bucket == 1:
            return buckets.LengthShares((0.0, 0.0, 1.0), outputs.mean_tokens)
        return outputs


def test_predictor_decides_the_output_bucket_of_each_input_bucket() -> None:
    rates = buckets.bucket_token_rates(
        arriving_requests_per_second=10.0, inputs=INPUTS, outputs=OUTPUTS, predictor=LongAnswersForLongPrompts()
    )
    # bucket (1, 2): 10 * 0.5 * (1000 + 352) = 6760 instead of bucket (1, 1)
    assert rates == pytest.approx((0.0, 2000.0, 0.0, 0.0, 0.0, 6760.0, 0.0, 0.0, 0.0))
