"""Observations from engine samples: rates, unknown pods, extrapolation, the arriving rate and its recent view."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from tests.unit.core.helpers import make_settings, pod, sample, single_length_histogram

from tokenscale.core import observe
from tokenscale.core.types import EngineSample, Histogram, Observation, PodView, Role, ServingRole

SETTINGS = make_settings()  # window 10 s, recent 2 s, tick 1 s, stale after 3 s
NOW = 10.0
TIMES = [float(t) for t in range(11)]


def prefill_history(
    *,
    tokens_per_second: float = 20_000.0,
    prompt_tokens: float = 1000.0,
    waiting: Callable[[float], float] = lambda t: 0.0,
    times: list[float] = TIMES,
    reset_at: float | None = None,
    histograms: bool = True,
) -> list[EngineSample]:
    out = []
    for t in times:
        # an engine restarted just after the scrape at ``reset_at`` counts from 0 again
        elapsed = t - reset_at if reset_at is not None and t > reset_at else t
        total = tokens_per_second * elapsed
        out.append(
            sample(
                t,
                prompt_tokens_total=total,
                requests_waiting=waiting(t),
                request_prompt_tokens=single_length_histogram(total / prompt_tokens, prompt_tokens)
                if histograms
                else None,
            )
        )
    return out


def decode_history(
    *, tokens_per_second: float = 2000.0, output_tokens: float = 100.0, itl: Histogram | None = None
) -> list[EngineSample]:
    return [
        sample(
            t,
            generation_tokens_total=tokens_per_second * t,
            requests_running=40.0,
            kv_cache_usage_ratio=0.5,
            request_generation_tokens=single_length_histogram(tokens_per_second * t / output_tokens, output_tokens),
            inter_token_latency_seconds=itl,
        )
        for t in TIMES
    ]


PODS = (pod("p0", Role.PREFILL, known=False), pod("d0", known=False), pod("d1", known=False))


def build(histories: dict[str, list[EngineSample]], pods: tuple[PodView, ...] = PODS) -> Observation:
    return observe.build_observation(
        now_seconds=NOW,
        settings=SETTINGS,
        prefill_spec_replicas=sum(p.role is Role.PREFILL for p in pods),
        decode_spec_replicas=sum(p.role is Role.DECODE for p in pods),
        pods=pods,
        histories=histories,
    )


def test_steady_load_gives_processed_rate_and_one_bucket() -> None:
    obs = build({"p0": prefill_history(), "d0": decode_history(), "d1": decode_history()})
    load = obs.load
    assert load is not None
    assert obs.unknown_reasons == ()
    assert load.arriving_prompt_tokens_per_second == pytest.approx(20_000)
    assert load.arriving_requests_per_second == pytest.approx(20)  # 20k tok/s / 1000 tokens
    assert load.generation_tokens_per_second == pytest.approx(4000)  # 2 decoders x 2k
    assert (load.mean_prompt_tokens, load.mean_generation_tokens) == pytest.approx((1000, 100))
    # every request is 1000 in / 100 out: bucket (1, 1) gets 20 req/s * 1100 tokens
    assert load.bucket_tokens_per_second == pytest.approx((0, 0, 0, 0, 22_000, 0, 0, 0, 0))
    assert load.decode_requests_running_per_pod == 40.0
    assert all(p.load_known for p in obs.prefill.pods + obs.decode.pods)


def test_growing_queue_raises_the_arriving_rate() -> None:
    # 5 more requests wait each second, 1000 tokens each: 20k processed + 5k
    obs = build({"p0": prefill_history(waiting=lambda t: 5 * t), "d0": decode_history(), "d1": decode_history()})
    assert obs.load is not None
    assert obs.load.arriving_prompt_tokens_per_second == pytest.approx(25_000)
    assert obs.load.arriving_requests_per_second == pytest.approx(25)
    assert obs.load.requests_waiting == 50.0


def test_burst_onset_shows_in_the_recent_window_first() -> None:
    # the queue jumps from 0 to 50 in the last second: the 10 s window sees 50/10 = 5 req/s of growth,
    # the 2 s window 50/2 = 25 req/s
    obs = build(
        {
            "p0": prefill_history(waiting=lambda t: 50.0 if t >= 10 else 0.0),
            "d0": decode_history(),
            "d1": decode_history(),
        }
    )
    assert obs.load is not None
    assert obs.load.arriving_prompt_tokens_per_second == pytest.approx(25_000)
    assert obs.load.recent_arriving_prompt_tokens_per_second == pytest.approx(45_000)


def test_counter_reset_does_not_drop_the_rate() -> None:
    # 0 -> 100k over 0..5 s, restart, 0 -> 100k over 5..10 s: 200k / 10 s
    obs = build({"p0": prefill_history(reset_at=5.0), "d0": decode_history(), "d1": decode_history()})
    assert obs.load is not None
    assert obs.load.processed_prompt_tokens_per_second == pytest.approx(20_000)


def test_zero_load_is_known_and_zero() -> None:
    obs = build(
        {
            "p0": prefill_history(tokens_per_second=0.0),
            "d0": decode_history(tokens_per_second=0.0),
            "d1": decode_history(tokens_per_second=0.0),
        }
    )
    assert obs.load is not None
    assert obs.unknown_reasons == ()
    assert obs.load.arriving_prompt_tokens_per_second == 0.0
    assert obs.load.arriving_requests_per_second == 0.0
    assert sum(obs.load.bucket_tokens_per_second) == 0.0


@pytest.mark.parametrize(
    ("d1_history", "reason"),
    [
        pytest.param(None, "no metrics sample", id="missing-pod"),
        pytest.param([sample(t, generation_tokens_total=2000.0 * t) for t in (0.0, 1.0, 6.0)], "stale", id="stale-pod"),
        pytest.param([sample(10.0, generation_tokens_total=5.0)], "needs two samples", id="warming-up-pod"),
        pytest.param(
            [sample(t, prompt_tokens_total=1.0 * t) for t in TIMES], "generation tokens", id="counter-not-exposed"
        ),
    ],
)
def test_unknown_ready_pod_is_reported_and_assumed_at_mean_load(
    d1_history: list[EngineSample] | None, reason: str
) -> None:
    histories = {"p0": prefill_history(), "d0": decode_history()}
    if d1_history is not None:
        histories["d1"] = d1_history
    obs = build(histories)
    assert obs.load is not None
    assert len(obs.unknown_reasons) == 1
    assert obs.unknown_reasons[0].startswith("d1: ")
    assert reason in obs.unknown_reasons[0]
    d1 = next(p for p in obs.decode.pods if p.name == "d1")
    assert not d1.load_known
    # never zero load: d1 counts at d0's 2000 tok/s
    assert obs.load.generation_tokens_per_second == pytest.approx(4000)


def test_unready_pod_without_samples_blocks_nothing() -> None:
    pods = (*PODS, pod("d2", ready=False, known=False))
    obs = build({"p0": prefill_history(), "d0": decode_history(), "d1": decode_history()}, pods)
    assert obs.load is not None
    assert obs.unknown_reasons == ()
    assert obs.decode.ready_replicas == 2


def test_role_without_known_ready_pod_makes_load_unknown() -> None:
    obs = build({"d0": decode_history(), "d1": decode_history()})
    assert obs.load is None
    assert obs.unknown_reasons[0].startswith("prefill: no Ready pod with fresh metrics")


def test_converted_decoder_counts_in_prefill_work_and_in_decode() -> None:
    pods = (PODS[0], PODS[1], pod("d1", serving=ServingRole.CONVERTED, known=False))
    converted = [
        sample(t, prompt_tokens_total=5000.0 * t, generation_tokens_total=1000.0 * t, requests_waiting=0.0)
        for t in TIMES
    ]
    obs = build({"p0": prefill_history(), "d0": decode_history(), "d1": converted}, pods)
    assert obs.load is not None
    assert obs.load.processed_prompt_tokens_per_second == pytest.approx(25_000)
    assert obs.load.generation_tokens_per_second == pytest.approx(3000)


def test_without_length_histograms_means_fall_back_to_the_grid() -> None:
    decode = [sample(t, generation_tokens_total=2000.0 * t) for t in TIMES]
    obs = build({"p0": prefill_history(histograms=False), "d0": decode, "d1": decode})
    assert obs.load is not None
    grid = SETTINGS.profile.buckets
    assert obs.load.mean_prompt_tokens == grid.representative_input_tokens[1]
    assert obs.load.mean_generation_tokens == grid.representative_output_tokens[1]
    # everything in the bucket of (1000, 90): (1, 1)
    assert obs.load.bucket_tokens_per_second[4] == pytest.approx(20 * (1000 + 90))


def test_latency_p90_from_the_window_delta() -> None:
    bounds = (0.05, 0.1, 0.2, math.inf)

    def itl_at(t: float) -> Histogram:
        # per second: 8 steps <= 0.05 s, 2 in (0.1, 0.2]
        return Histogram(bounds, (8 * t, 8 * t, 10 * t, 10 * t), 0.5 * t, 10 * t)

    decode = [sample(t, generation_tokens_total=2000.0 * t, inter_token_latency_seconds=itl_at(t)) for t in TIMES]
    obs = build({"p0": prefill_history(), "d0": decode, "d1": decode})
    assert obs.load is not None
    # 200 steps, p90 rank 180 lies 20/40 into (0.1, 0.2]: 0.15 s
    assert obs.load.itl_p90_seconds == pytest.approx(0.15)
    assert obs.load.ttft_p90_seconds is None
