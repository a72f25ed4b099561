"""The twin's vLLM text is read by the metrics layer into exactly the sample the simulator's exposition gives."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.sim.helpers import TOY, make_cluster

from tokenscale.core.types import EngineSample, Role
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.engines.preset import sample_from_series
from tokenscale.metrics.exposition import SeriesParser
from tokenscale.sim.cluster import Cluster
from tokenscale.sim.exposition import engine_sample
from tokenscale.twin.families import PodCollector, vllm_families

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"


def text_of(sample: EngineSample | None, *, model_name: str = MODEL) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PodCollector(lambda: sample, model_name=model_name))
    return generate_latest(registry).decode()


def read_back(text: str, *, timestamp_seconds: float, model_name: str | None = MODEL) -> EngineSample:
    preset = preset_for("vllm")
    series = SeriesParser().parse(text, preset.series_filter)
    return sample_from_series(preset, series, timestamp_seconds=timestamp_seconds, model_name=model_name)


def _burst(cluster: Cluster) -> None:
    for i in range(40):
        cluster.submit(arrival_seconds=0.05 * i, input_tokens=300 + 97 * i, output_tokens=5 + 11 * i)


def bursty(*, decoders: int = 1, convert_first: bool = False) -> Cluster:
    cluster = make_cluster(decode=decoders)
    if convert_first:
        cluster.convert(cluster.decoders[0].name)
    _burst(cluster)
    return cluster


STATES: list[object] = [
    # (cluster, scrape time, role, index): instances at different points of a 40-request burst.
    pytest.param(bursty, 0.7, Role.PREFILL, 0, id="prefiller-mid-burst"),
    pytest.param(bursty, 1.3, Role.DECODE, 0, id="decoder-mid-burst"),
    pytest.param(lambda: bursty(decoders=2, convert_first=True), 0.9, Role.DECODE, 0, id="converted-decoder"),
    pytest.param(bursty, 60.0, Role.DECODE, 0, id="decoder-after-the-burst"),
    pytest.param(make_cluster, 5.0, Role.DECODE, 0, id="idle-decoder"),
]


@pytest.mark.parametrize(("make", "now", "role", "index"), STATES)
def test_twin_text_reads_back_as_the_simulators_sample(
    make: Callable[[], Cluster], now: float, role: Role, index: int
) -> None:
    cluster = make()
    cluster.advance_to(now)
    expected = engine_sample(cluster.instances(role)[index], now_seconds=now)
    assert read_back(text_of(expected), timestamp_seconds=now) == expected


def test_a_sample_with_traffic_exercises_every_family() -> None:
    cluster = bursty()
    cluster.advance_to(1.3)
    sample = engine_sample(cluster.decoders[0], now_seconds=1.3)
    assert sample.generation_tokens_total
    assert sample.requests_running
    assert sample.inter_token_latency_seconds is not None
    assert sample.inter_token_latency_seconds.count
    assert sample.request_generation_tokens is not None
    assert sample.request_generation_tokens.count


@pytest.mark.parametrize(
    "capacity_tokens",
    [pytest.param(440_000.0, id="whole-blocks-of-16"), pytest.param(440_001.0, id="not-whole-blocks")],
)
def test_kv_capacity_reads_back_exactly(capacity_tokens: float) -> None:
    sample = EngineSample(timestamp_seconds=3.0, kv_cache_capacity_tokens=capacity_tokens, requests_running=1.0)
    assert read_back(text_of(sample), timestamp_seconds=3.0).kv_cache_capacity_tokens == capacity_tokens


def test_series_carry_model_name_and_engine_labels() -> None:
    cluster = make_cluster()
    _burst(cluster)
    cluster.advance_to(1.0)
    families = vllm_families(engine_sample(cluster.decoders[0], now_seconds=1.0), model_name=MODEL)
    for family in families:
        for sample in family.samples:
            if family.name == "vllm:cache_config_info":
                assert sample.labels["engine"] == "0"
                continue
            assert sample.labels["model_name"] == MODEL
            assert sample.labels["engine"] == "0"


def test_other_models_series_are_not_read_as_this_models() -> None:
    sample = EngineSample(timestamp_seconds=1.0, prompt_tokens_total=5.0)
    with pytest.raises(ValueError, match="no vllm metric family"):
        read_back(text_of(sample, model_name="other/model"), timestamp_seconds=1.0)


def test_families_have_the_names_and_types_of_a_real_vllm_pod() -> None:
    real = {
        family.name: family.type
        for family in text_string_to_metric_families(
            "\n".join(
                line
                for line in (FIXTURES / "vllm-v1-metrics.txt").read_text().splitlines()
                if line.startswith("# TYPE")  # the sample lines hold upstream elisions
            )
        )
    }
    cluster = make_cluster()
    _burst(cluster)
    cluster.advance_to(2.0)
    ours = {
        f.name: f.type for f in vllm_families(engine_sample(cluster.decoders[0], now_seconds=2.0), model_name=MODEL)
    }
    shared = set(real) & set(ours)
    assert {"vllm:num_requests_running", "vllm:generation_tokens", "vllm:time_to_first_token_seconds"} <= shared
    assert {name: ours[name] for name in shared} == {name: real[name] for name in shared}


def test_a_pod_whose_instance_left_serves_no_series() -> None:
    assert text_of(None) == ""


def test_the_toy_profile_capacity_is_what_a_scrape_reports() -> None:
    cluster = make_cluster(dataclasses.replace(TOY, kv_capacity_tokens=123_456))
    cluster.advance_to(1.0)
    sample = engine_sample(cluster.decoders[0], now_seconds=1.0)
    assert read_back(text_of(sample), timestamp_seconds=1.0).kv_cache_capacity_tokens == 123_456
