"""Exposition parsing and pod-level aggregation: filter, memo, +Inf fill, process/engine labels, model filter."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.engines.preset import NoMatchingFamilyError, sample_from_series
from tokenscale.metrics.exposition import ExpositionError, SeriesFilter, SeriesParser

VLLM = preset_for("vllm")
MODEL = 'model_name="m"'


def parse_vllm(text: str, *, model_name: str | None = None) -> EngineSample:
    series = SeriesParser().parse(text, VLLM.series_filter)
    return sample_from_series(VLLM, series, timestamp_seconds=7.0, model_name=model_name)


def test_lines_of_other_families_are_never_parsed() -> None:
    text = "\n".join(
        [
            "# HELP vllm:num_requests_running Number of requests.",
            "# TYPE vllm:num_requests_running gauge",
            "...",
            "\x00\x01 binary junk {{{ \ufffd",
            'http_requests_total{handler="/x" this is not exposition',
            f"vllm:num_requests_running{{{MODEL}}} 3.0",
            "vllm:iteration_tokens_total_bucket{le=oops} nonsense",
        ]
    )
    assert parse_vllm(text).requests_running == 3.0


def test_a_malformed_line_of_a_wanted_family_is_an_error() -> None:
    with pytest.raises(ExpositionError, match="malformed"):
        parse_vllm('vllm:num_requests_running{model_name="m} 3.0\n')


def test_prefix_sharing_names_are_dropped_after_parsing() -> None:
    # `vllm:prompt_tokens_total_created` starts with a wanted name but is another series.
    text = f"vllm:prompt_tokens_total{{{MODEL}}} 10\nvllm:prompt_tokens_total_created{{{MODEL}}} 1.7e9\n"
    assert parse_vllm(text).prompt_tokens_total == 10.0


def test_counter_is_read_under_its_exposed_total_name() -> None:
    sample = parse_vllm(f"# TYPE vllm:prompt_tokens counter\nvllm:prompt_tokens_total{{{MODEL}}} 12345.0\n")
    assert sample.prompt_tokens_total == 12345.0
    assert sample.timestamp_seconds == 7.0


@pytest.mark.parametrize(
    ("lines", "bounds", "counts", "total"),
    [
        pytest.param(
            ['{le="0.1"} 2', '{le="1.0"} 5', "_count{} 9", "_sum{} 4.5"],
            (0.1, 1.0, math.inf),
            (2.0, 5.0, 9.0),
            9.0,
            id="missing-inf-filled-from-count",
        ),
        pytest.param(
            ['{le="0.1"} 2', '{le="+Inf"} 6', "_sum{} 4.5"],
            (0.1, math.inf),
            (2.0, 6.0),
            6.0,
            id="missing-count-taken-from-inf",
        ),
        pytest.param(
            ["_count{} 3", "_sum{} 1.5"],
            (math.inf,),
            (3.0,),
            3.0,
            id="no-buckets-only-count",
        ),
    ],
)
def test_histogram_is_completed_from_what_is_exposed(
    lines: list[str], bounds: tuple[float, ...], counts: tuple[float, ...], total: float
) -> None:
    text = "".join(_ttft_line(line) for line in lines)
    histogram = parse_vllm(text).time_to_first_token_seconds
    assert histogram is not None
    assert histogram.bucket_upper_bounds == bounds
    assert histogram.cumulative_counts == counts
    assert histogram.count == total
    assert histogram.sum == 4.5 if "_sum{} 4.5" in lines else 1.5


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(['{le="0.1"} 2', '{le="+Inf"} 6', "_count{} 6"], id="no-sum"),
        pytest.param(['{le="0.1"} 2', "_sum{} 1.0"], id="neither-inf-nor-count"),
    ],
)
def test_incomplete_histogram_is_absent_not_invented(lines: list[str]) -> None:
    text = "".join(_ttft_line(line) for line in lines) + f"vllm:num_requests_running{{{MODEL}}} 1\n"
    assert parse_vllm(text).time_to_first_token_seconds is None


def _ttft_line(line: str) -> str:
    """``'{le="0.1"} 2'`` -> a bucket line, ``'_sum{} 4.5'`` -> the _sum line, all with the model label."""
    if line.startswith("{"):
        labels, value = line[1:].split("} ")
        return f"vllm:time_to_first_token_seconds_bucket{{{labels},{MODEL}}} {value}\n"
    suffix, value = line.split("{} ")
    return f"vllm:time_to_first_token_seconds{suffix}{{{MODEL}}} {value}\n"


def test_counts_add_up_over_engines_and_processes() -> None:
    text = "".join(
        f'vllm:num_requests_waiting{{engine="{engine}",pid="{pid}",{MODEL}}} {value}\n'
        for engine, pid, value in (("0", "11", 3), ("0", "12", 0), ("1", "11", 4))
    )
    assert parse_vllm(text).requests_waiting == 7.0


def test_kv_usage_takes_the_process_copy_that_holds_it_then_averages_engines() -> None:
    # vLLM PR #28792: one API-server process carries the engine's value, the other copies read 0.
    text = "".join(
        f'vllm:kv_cache_usage_perc{{engine="{engine}",pid="{pid}",{MODEL}}} {value}\n'
        for engine, pid, value in (("0", "271", 0.0), ("0", "273", 0.6), ("1", "271", 0.2), ("1", "273", 0.0))
    )
    assert parse_vllm(text).kv_cache_usage_ratio == pytest.approx((0.6 + 0.2) / 2)


def test_kv_capacity_counts_each_engine_once_whatever_the_process_copies() -> None:
    text = "".join(
        f'vllm:cache_config_info{{block_size="16",engine="{engine}",num_gpu_blocks="{blocks}",pid="{pid}",{MODEL}}} 1\n'
        for engine, blocks, pid in (("0", "1000", "1"), ("0", "1000", "2"), ("1", "500", "1"))
    )
    assert parse_vllm(text).kv_cache_capacity_tokens == (1000 + 500) * 16


def test_kv_capacity_is_unknown_before_blocks_are_allocated() -> None:
    text = f'vllm:cache_config_info{{block_size="16",num_gpu_blocks="None",{MODEL}}} 1\n'
    text += f"vllm:num_requests_running{{{MODEL}}} 0\n"
    assert parse_vllm(text).kv_cache_capacity_tokens is None


def test_histograms_add_up_bucket_by_bucket_over_engines() -> None:
    text = ""
    for engine, (low, total, total_sum) in {"0": (1, 4, 2.0), "1": (2, 3, 0.5)}.items():
        labels = f'engine="{engine}",{MODEL}'
        text += f'vllm:request_prompt_tokens_bucket{{{labels},le="100.0"}} {low}\n'
        text += f'vllm:request_prompt_tokens_bucket{{{labels},le="+Inf"}} {total}\n'
        text += f"vllm:request_prompt_tokens_count{{{labels}}} {total}\n"
        text += f"vllm:request_prompt_tokens_sum{{{labels}}} {total_sum}\n"
    histogram = parse_vllm(text).request_prompt_tokens
    assert histogram is not None
    assert histogram.cumulative_counts == (3.0, 7.0)
    assert (histogram.sum, histogram.count) == (2.5, 7.0)


def test_model_name_filter_keeps_one_model_and_model_free_series() -> None:
    text = (
        'vllm:prompt_tokens_total{model_name="a"} 10\n'
        'vllm:prompt_tokens_total{model_name="b"} 32\n'
        'vllm:num_requests_running{model_name="b"} 2\n'
        "vllm:num_requests_waiting 5\n"
    )
    only_a = parse_vllm(text, model_name="a")
    assert (only_a.prompt_tokens_total, only_a.requests_running, only_a.requests_waiting) == (10.0, None, 5.0)
    assert parse_vllm(text).prompt_tokens_total == 42.0


def test_a_model_that_is_not_served_is_no_matching_family() -> None:
    with pytest.raises(NoMatchingFamilyError, match="model_name='other'"):
        parse_vllm(f"vllm:prompt_tokens_total{{{MODEL}}} 10\n", model_name="other")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(f"vllm:prompt_tokens_total{{{MODEL}}} NaN\n", "finite non-negative", id="nan-counter"),
        pytest.param(f"vllm:prompt_tokens_total{{{MODEL}}} +Inf\n", "finite non-negative", id="inf-counter"),
        pytest.param(f"vllm:prompt_tokens_total{{{MODEL}}} -3\n", "finite non-negative", id="negative-counter"),
        pytest.param(f"vllm:kv_cache_usage_perc{{{MODEL}}} 65\n", "fraction", id="percent-not-fraction"),
        pytest.param(f"vllm:prompt_tokens_total{{{MODEL}}} 1_000\n", "invalid number", id="underscore-number"),
        pytest.param(f"vllm:prompt_tokens_total{{{MODEL}}} 1 2 3\n", "optional timestamp", id="three-tokens"),
        pytest.param(f"vllm:prompt_tokens_total{{{MODEL}}}\n", "optional timestamp", id="no-value"),
        pytest.param(
            f"vllm:prompt_tokens_total{{{MODEL}}} 1\nvllm:prompt_tokens_total{{{MODEL}}} 2\n",
            "duplicate",
            id="duplicate-series",
        ),
        pytest.param(
            f'vllm:time_to_first_token_seconds_bucket{{le="1",{MODEL}}} 5\n'
            f'vllm:time_to_first_token_seconds_bucket{{le="2",{MODEL}}} 4\n'
            f"vllm:time_to_first_token_seconds_count{{{MODEL}}} 5\n"
            f"vllm:time_to_first_token_seconds_sum{{{MODEL}}} 1\n",
            "decrease",
            id="falling-buckets",
        ),
        pytest.param(
            f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="1",{MODEL}}} 1\n'
            f'vllm:time_to_first_token_seconds_bucket{{engine="1",le="2",{MODEL}}} 1\n'
            f"vllm:time_to_first_token_seconds_sum{{{MODEL}}} 1\n"
            f"vllm:time_to_first_token_seconds_count{{{MODEL}}} 2\n",
            "disagree",
            id="bucket-layouts-differ",
        ),
        pytest.param(
            f'vllm:time_to_first_token_seconds_bucket{{le="x",{MODEL}}} 1\n', "invalid number", id="le-not-a-number"
        ),
        pytest.param(f'vllm:prompt_tokens_total{{{MODEL},x="{"a" * 5000}"}} 1\n', "longer than", id="line-too-long"),
    ],
)
def test_values_the_engine_cannot_mean_are_errors(text: str, message: str) -> None:
    with pytest.raises(ExpositionError, match=message):
        parse_vllm(text)


def test_memoised_and_fresh_parses_agree_with_the_library() -> None:
    text = (
        f'vllm:prompt_tokens_total{{{MODEL},x="a\\"}}b"}} 1.5e3\n'
        f'vllm:generation_tokens_total{{{MODEL},y="\\\\"}} 7 1700000000000\n'
        "vllm:num_requests_waiting\t2\n"
    )
    parser = SeriesParser()
    first = parser.parse(text, VLLM.series_filter)
    second = parser.parse(text, VLLM.series_filter)
    assert first == second
    reference = {
        (s.name, tuple(sorted(s.labels.items()))): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert {(s.id.name, s.id.labels): s.value for s in first} == reference


def test_memo_stays_bounded() -> None:
    parser = SeriesParser(max_memo_entries=8)
    for round_index in range(5):
        text = "".join(f'vllm:prompt_tokens_total{{i="{round_index}-{i}"}} 1\n' for i in range(6))
        assert len(parser.parse(text, VLLM.series_filter)) == 6
    assert len(parser._memo) <= 8


def test_filter_finds_the_first_and_last_line_without_trailing_newline() -> None:
    wanted = SeriesFilter(prefixes=["a_x", "b_y"], names=["a_x", "b_y"])
    assert wanted.candidate_lines("a_x 1\nzzz 2\nb_y 3") == ["a_x 1", "b_y 3"]
