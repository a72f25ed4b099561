"""A pod's `EngineSample` as vLLM V1 exposes it: the metric families a real vLLM pod's ``/metrics`` holds.

Names, types and labels follow ``vllm/v1/metrics/loggers.py`` (read by `tokenscale.metrics.engines.vllm`):
every series carries ``model_name`` and ``engine`` (the engine core's index, ``"0"`` for one engine per pod);
counters end in ``_total`` on exposition; KV capacity is the info gauge ``vllm:cache_config_info`` whose
``num_gpu_blocks × block_size`` is the capacity in tokens. So the text a twin pod serves is read by the metrics
layer exactly as a real pod's (``tests/unit/twin/test_families.py`` checks the round trip).

`PodCollector` is a prometheus_client collector that asks for the pod's sample at each scrape, so a scrape sees
the model at the instant it is served.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from tokenscale.core.types import EngineSample, Histogram

__all__ = ["ENGINE_INDEX", "KV_BLOCK_SIZE_TOKENS", "PodCollector", "vllm_families"]

ENGINE_INDEX = "0"
"""The ``engine`` label of a pod with one engine core (vLLM's data-parallel rank)."""
KV_BLOCK_SIZE_TOKENS = 16
"""vLLM's default KV block size (tokens per block) on CUDA."""

_LABELS = ("model_name", "engine")

_GAUGES = (
    ("vllm:num_requests_running", "Number of requests in model execution batches.", "requests_running"),
    ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", "requests_waiting"),
    ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "kv_cache_usage_ratio"),
)
_COUNTERS = (
    ("vllm:prompt_tokens", "Number of prefill tokens processed.", "prompt_tokens_total"),
    ("vllm:generation_tokens", "Number of generation tokens processed.", "generation_tokens_total"),
    ("vllm:num_preemptions", "Cumulative number of preemption from the engine.", "preemptions_total"),
)
_HISTOGRAMS = (
    (
        "vllm:time_to_first_token_seconds",
        "Histogram of time to first token in seconds.",
        "time_to_first_token_seconds",
    ),
    (
        "vllm:inter_token_latency_seconds",
        "Histogram of inter-token latency in seconds.",
        "inter_token_latency_seconds",
    ),
    ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", "request_prompt_tokens"),
    ("vllm:request_generation_tokens", "Number of generation tokens processed.", "request_generation_tokens"),
)


def _bound_text(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _histogram_family(name: str, documentation: str, histogram: Histogram, labels: list[str]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=list(_LABELS))
    buckets = [
        (_bound_text(bound), count)
        for bound, count in zip(histogram.bucket_upper_bounds, histogram.cumulative_counts, strict=True)
    ]
    family.add_metric(labels, buckets, histogram.sum)
    return family


def _cache_config_info(capacity_tokens: float) -> Metric:
    # A capacity that is not a whole number of blocks is stated in blocks of one token, so that
    # num_gpu_blocks × block_size is the capacity exactly.
    block = KV_BLOCK_SIZE_TOKENS if capacity_tokens % KV_BLOCK_SIZE_TOKENS == 0 else 1
    info = GaugeMetricFamily(
        "vllm:cache_config_info",
        "Information of the LLMEngine CacheConfig",
        labels=["block_size", "num_gpu_blocks", "engine"],
    )
    info.add_metric([str(block), str(int(capacity_tokens) // block), ENGINE_INDEX], 1.0)
    return info


def vllm_families(sample: EngineSample, *, model_name: str) -> list[Metric]:
    """The vLLM metric families of ``sample`` (fields that are None are left out, as an engine that does not
    export them would)."""
    labels = [model_name, ENGINE_INDEX]
    families: list[Metric] = []
    for name, documentation, field in _GAUGES:
        value = getattr(sample, field)
        if value is not None:
            gauge = GaugeMetricFamily(name, documentation, labels=list(_LABELS))
            gauge.add_metric(labels, value)
            families.append(gauge)
    if sample.kv_cache_capacity_tokens is not None:
        families.append(_cache_config_info(sample.kv_cache_capacity_tokens))
    for name, documentation, field in _COUNTERS:
        value = getattr(sample, field)
        if value is not None:
            counter = CounterMetricFamily(name, documentation, labels=list(_LABELS))
            counter.add_metric(labels, value)
            families.append(counter)
    if sample.requests_finished_total is not None:
        success = CounterMetricFamily(
            "vllm:request_success",
            "Count of successfully processed requests.",
            labels=[*_LABELS, "finished_reason"],
        )
        success.add_metric([*labels, "stop"], sample.requests_finished_total)
        families.append(success)
    for name, documentation, field in _HISTOGRAMS:
        histogram = getattr(sample, field)
        if histogram is not None:
            families.append(_histogram_family(name, documentation, histogram, labels))
    return families


class PodCollector(Collector):
    """The families of one pod, from ``sample_of()`` at each scrape; nothing when it returns None (the pod's
    instance has left the model)."""

    def __init__(self, sample_of: Callable[[], EngineSample | None], *, model_name: str) -> None:
        self._sample_of = sample_of
        self._model_name = model_name

    def collect(self) -> Iterator[Metric]:
        sample = self._sample_of()
        if sample is not None:
            yield from vllm_families(sample, model_name=self._model_name)
