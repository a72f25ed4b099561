"""vLLM V1 (``vllm/v1/metrics/loggers.py``): every engine series carries ``model_name`` and ``engine``.

Counters are exposed with ``_total``. Renames read both ways: ``kv_cache_usage_perc`` (0–1) before the
deprecated ``gpu_cache_usage_perc`` (also 0–1), ``inter_token_latency_seconds`` before the deprecated
``time_per_output_token_seconds``. KV capacity is ``num_gpu_blocks × block_size`` from the labels of the info
gauge ``cache_config_info``, summed over engines. KV transfer is read from the NIXL connector's metrics.

The API server mounts prometheus_client's ASGI app at ``/metrics``, so the scrape asks for the preset's samples
only (``?name[]=…``, `EnginePreset.name_query`): with one API server the registry is prometheus_client's
default one, which honours it. With ``--api-server-count > 1`` vLLM switches to prometheus_client's
multiprocess mode on a plain ``CollectorRegistry()``, which answers that query with an empty page; the
scraper then reads such a pod's whole exposition (`tokenscale.metrics.scraper`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tokenscale.metrics import exposition
from tokenscale.metrics.engines.preset import Aggregation, DerivedField, EnginePreset, HistogramField, ScalarField
from tokenscale.metrics.exposition import Series

__all__ = ["PRESET"]

_CACHE_CONFIG_INFO = "vllm:cache_config_info"


def _kv_capacity_tokens(by_name: Mapping[str, Sequence[Series]], copy_labels: tuple[str, ...]) -> float | None:
    """Sum over engines of ``num_gpu_blocks × block_size``; None before the engine has profiled its blocks."""
    per_engine: list[Series] = []
    for info in by_name.get(_CACHE_CONFIG_INFO, ()):
        try:
            blocks = exposition.parse_number(info.label("num_gpu_blocks") or "")
            block_size = exposition.parse_number(info.label("block_size") or "")
        except exposition.ExpositionError:
            return None  # "None" until the KV cache is allocated
        per_engine.append(Series(info.id, blocks * block_size))
    if not per_engine:
        return None
    return exposition.shared_value(per_engine, copy_labels=copy_labels)


PRESET = EnginePreset(
    engine="vllm",
    scalars=(
        ScalarField("prompt_tokens_total", ("vllm:prompt_tokens_total",)),
        ScalarField("generation_tokens_total", ("vllm:generation_tokens_total",)),
        ScalarField("requests_waiting", ("vllm:num_requests_waiting",)),
        ScalarField("requests_running", ("vllm:num_requests_running",)),
        ScalarField(
            "kv_cache_usage_ratio", ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"), Aggregation.FRACTION
        ),
        ScalarField("preemptions_total", ("vllm:num_preemptions_total",)),
        ScalarField("requests_finished_total", ("vllm:request_success_total",)),
        ScalarField("kv_transfer_bytes_total", ("vllm:nixl_bytes_transferred_sum",)),
        ScalarField("kv_transfer_failures_total", ("vllm:nixl_num_failed_transfers_total",)),
    ),
    histograms=(
        HistogramField("time_to_first_token_seconds", ("vllm:time_to_first_token_seconds",)),
        HistogramField(
            "inter_token_latency_seconds", ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
        ),
        HistogramField("request_prompt_tokens", ("vllm:request_prompt_tokens",)),
        HistogramField("request_generation_tokens", ("vllm:request_generation_tokens",)),
        HistogramField("kv_transfer_seconds", ("vllm:nixl_xfer_time_seconds",)),
    ),
    derived=(DerivedField("kv_cache_capacity_tokens", (_CACHE_CONFIG_INFO,), _kv_capacity_tokens),),
    name_query=True,
)
