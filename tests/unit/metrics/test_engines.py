"""Engine presets read every upstream sample in tests/fixtures/metrics into the sample its text states."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from benchmarks.vllm_payload import vllm_exposition
from prometheus_client.parser import text_string_to_metric_families

from tokenscale.api.v1alpha1 import Engine
from tokenscale.core.types import EngineSample, Histogram
from tokenscale.metrics.engines import PRESETS, UnknownEngineError, preset_for
from tokenscale.metrics.engines.preset import EnginePreset, NoMatchingFamilyError, ScalarField, sample_from_series
from tokenscale.metrics.exposition import SeriesParser

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
INF = math.inf


def read_sample(text: str, engine: str, *, model_name: str | None = None) -> EngineSample:
    preset = preset_for(engine)
    series = SeriesParser().parse(text, preset.series_filter)
    return sample_from_series(preset, series, timestamp_seconds=1.0, model_name=model_name)


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _histogram(buckets: str, total_sum: float, count: float) -> Histogram:
    """``"0.1=2 +Inf=5"`` (le=cumulative count, as in the fixture text) -> the expected histogram."""
    pairs = [pair.split("=") for pair in buckets.split()]
    return Histogram(tuple(float(le) for le, _ in pairs), tuple(float(n) for _, n in pairs), total_sum, count)


# Values copied from the fixture text (see each file's lines).
FIXTURE_SAMPLES: list[Any] = [
    pytest.param(
        "vllm-v1-metrics.txt",
        "vllm",
        {
            "generation_tokens_total": 27453.0,
            "requests_running": 8.0,
            "requests_finished_total": 1.0 + 131.0 + 0.0,  # stop + length + abort
            # TTFT buckets and _count are there but the doc sample elides _sum: mean unknown, so no histogram.
            "time_to_first_token_seconds": None,
            "prompt_tokens_total": None,
        },
        id="vllm-design-doc",
    ),
    pytest.param(
        "sglang-metrics.txt",
        "sglang",
        {
            "prompt_tokens_total": 8.128902e06,
            "generation_tokens_total": 7.557572e06,
            "requests_waiting": 2826.0,
            "requests_running": 162.0,
            "kv_cache_usage_ratio": 0.28,
            "time_to_first_token_seconds": _histogram(
                "0.001=0 0.005=0 0.01=0 0.02=0 0.04=1 0.06=3 0.08=6 0.1=6 0.25=6 0.5=6 0.75=6 1.0=27 2.5=140 5.0=314 "
                "7.5=941 10.0=1330 15.0=1970 20.0=2326 25.0=2417 30.0=2513 +Inf=11008",
                2.3518979474117756e06,
                11008.0,
            ),
            # This older build names inter-token latency time_per_output_token_seconds.
            "inter_token_latency_seconds": _histogram(
                "0.005=1 0.01=73 0.015=382 0.02=593 0.025=855 0.03=1035 0.04=1815 0.05=11685 0.075=433413 "
                "0.1=4.950195e+06 0.15=7.039435e+06 0.2=7.171662e+06 0.3=7.266055e+06 0.4=7.296752e+06 "
                "0.5=7.312226e+06 0.75=7.339675e+06 1.0=7.357747e+06 2.5=7.389414e+06 +Inf=7.400757e+06",
                866964.5791549598,
                7.400757e06,
            ),
            "requests_finished_total": None,
        },
        id="sglang-production-metrics",
    ),
    pytest.param(
        "trtllm-dynamo-metrics.txt",
        "trtllm",
        {
            "requests_finished_total": 150.0 + 5.0,  # stop + length
            # Abbreviated upstream: no +Inf bucket, filled from _count.
            "time_to_first_token_seconds": _histogram("0.01=0 0.05=12 +Inf=150", 8.75, 150.0),
            "inter_token_latency_seconds": _histogram("0.1=120 +Inf=150", 12.5, 150.0),
            "prompt_tokens_total": None,
            "kv_cache_usage_ratio": None,
        },
        id="trtllm-via-dynamo",
    ),
]


@pytest.mark.parametrize(("name", "engine", "expected"), FIXTURE_SAMPLES)
def test_fixture_reads_as_its_text_states(name: str, engine: str, expected: dict[str, Any]) -> None:
    sample = read_sample(fixture(name), engine)
    assert {field: getattr(sample, field) for field in expected} == expected


@pytest.mark.parametrize(
    ("name", "engine"),
    [
        # Only vllm:iteration_tokens_total (not read) before the upstream "..." elision.
        pytest.param("vllm-v1-metrics-usage-doc.txt", "vllm", id="vllm-usage-doc"),
        # Only Dynamo's request counter and duration histogram, neither an engine signal.
        pytest.param("dynamo-component-metrics.txt", "trtllm", id="dynamo-component"),
    ],
)
def test_fixture_without_a_read_family_is_no_matching_family(name: str, engine: str) -> None:
    with pytest.raises(NoMatchingFamilyError):
        read_sample(fixture(name), engine)


def test_dynamo_worker_port_serving_both_reads_like_the_engine_alone() -> None:
    combined = fixture("trtllm-dynamo-metrics.txt") + "\n" + fixture("dynamo-component-metrics.txt")
    assert read_sample(combined, "trtllm") == read_sample(fixture("trtllm-dynamo-metrics.txt"), "trtllm")


def test_trtllm_falls_back_to_dynamo_worker_gauges() -> None:
    text = (
        'dynamo_component_kvstats_gpu_cache_usage_percent{dp_rank="0",dynamo_component="backend"} 0.5\n'
        'dynamo_component_kvstats_gpu_cache_usage_percent{dp_rank="1",dynamo_component="backend"} 0.3\n'
        'dynamo_component_inflight_requests{dynamo_endpoint="generate"} 6\n'
        'dynamo_component_inflight_requests{dynamo_endpoint="clear_kv_blocks"} 0\n'
    )
    sample = read_sample(text, "trtllm")
    assert sample.kv_cache_usage_ratio == pytest.approx(0.4)
    assert sample.requests_running == 6.0
    assert sample.requests_waiting is None


def test_trtllm_prefers_its_own_gauges_and_reads_capacity() -> None:
    labels = 'model_name="q",engine_type="trtllm"'
    text = (
        f"trtllm_kv_cache_utilization{{{labels}}} 0.25\n"
        f"trtllm_num_requests_running{{{labels}}} 3\n"
        f"trtllm_num_requests_waiting{{{labels}}} 4\n"
        f"trtllm_prompt_tokens_total{{{labels}}} 900\n"
        f"trtllm_kv_cache_max_blocks{{{labels}}} 1000\n"
        f"trtllm_kv_cache_tokens_per_block{{{labels}}} 32\n"
        'dynamo_component_kvstats_gpu_cache_usage_percent{dp_rank="0"} 0.9\n'
        "dynamo_component_inflight_requests 9\n"
    )
    sample = read_sample(text, "trtllm")
    assert (sample.kv_cache_usage_ratio, sample.requests_running, sample.requests_waiting) == (0.25, 3.0, 4.0)
    assert (sample.prompt_tokens_total, sample.kv_cache_capacity_tokens) == (900.0, 32000.0)


@pytest.mark.parametrize(
    ("lines", "field", "value"),
    [
        pytest.param(["vllm:kv_cache_usage_perc 0.4"], "kv_cache_usage_ratio", 0.4, id="kv-new-name"),
        pytest.param(["vllm:gpu_cache_usage_perc 0.3"], "kv_cache_usage_ratio", 0.3, id="kv-old-name"),
        pytest.param(
            ["vllm:gpu_cache_usage_perc 0.3", "vllm:kv_cache_usage_perc 0.4"],
            "kv_cache_usage_ratio",
            0.4,
            id="kv-both-new-wins",
        ),
        pytest.param(
            ['vllm:inter_token_latency_seconds_bucket{le="+Inf"} 3', "vllm:inter_token_latency_seconds_sum 0.3"],
            "inter_token_latency_seconds",
            Histogram((INF,), (3.0,), 0.3, 3.0),
            id="itl-new-name",
        ),
        pytest.param(
            ['vllm:time_per_output_token_seconds_bucket{le="+Inf"} 5', "vllm:time_per_output_token_seconds_sum 0.5"],
            "inter_token_latency_seconds",
            Histogram((INF,), (5.0,), 0.5, 5.0),
            id="itl-old-name",
        ),
    ],
)
def test_vllm_reads_both_names_of_a_renamed_metric(lines: list[str], field: str, value: object) -> None:
    assert getattr(read_sample("\n".join(lines), "vllm"), field) == value


def test_sglang_tensor_parallel_copies_are_not_summed_but_data_parallel_ranks_are() -> None:
    text = "".join(
        f'sglang:num_running_reqs{{dp_rank="{dp}",tp_rank="{tp}",model_name="m"}} {value}\n'
        for dp, tp, value in (("0", "0", 5), ("0", "1", 5), ("1", "0", 2), ("1", "1", 2))
    )
    assert read_sample(text, "sglang").requests_running == 7.0


def test_generated_vllm_payload_matches_a_full_library_parse() -> None:
    """Two data-parallel engines: every summed field equals the sum over the library's full parse."""
    text = vllm_exposition(engines=2, seed=3)
    sample = read_sample(text, "vllm", model_name="meta-llama/Llama-3.1-8B-Instruct")
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "le" not in s.labels:
                totals[s.name] = totals.get(s.name, 0.0) + float(s.value)
    assert sample.prompt_tokens_total == totals["vllm:prompt_tokens_total"]
    assert sample.generation_tokens_total == totals["vllm:generation_tokens_total"]
    assert sample.requests_waiting == pytest.approx(totals["vllm:num_requests_waiting"])
    assert sample.requests_finished_total == totals["vllm:request_success_total"]
    assert sample.kv_cache_usage_ratio == pytest.approx(totals["vllm:kv_cache_usage_perc"] / 2)
    assert sample.time_to_first_token_seconds is not None
    assert sample.time_to_first_token_seconds.count == totals["vllm:time_to_first_token_seconds_count"]
    assert sample.time_to_first_token_seconds.sum == pytest.approx(totals["vllm:time_to_first_token_seconds_sum"])


@pytest.mark.parametrize("engine", list(Engine), ids=str)
def test_every_api_engine_has_a_preset(engine: Engine) -> None:
    assert preset_for(engine).engine == engine.value


def test_unknown_engine_error_lists_the_valid_names() -> None:
    with pytest.raises(UnknownEngineError, match="valid engines: sglang, trtllm, vllm"):
        preset_for("tgi")


def test_a_preset_cannot_map_to_a_field_the_sample_lacks() -> None:
    with pytest.raises(ValueError, match="unknown EngineSample field 'tokens'"):
        EnginePreset(engine="x", scalars=(ScalarField("tokens", ("x_total",)),))


def test_presets_read_only_exposition_names_of_their_engine() -> None:
    prefixes = {"vllm": ("vllm:",), "sglang": ("sglang:",), "trtllm": ("trtllm_", "trtllm:", "dynamo_component_")}
    for engine, preset in PRESETS.items():
        assert all(name.startswith(prefixes[engine]) for name in preset.exposition_names)
