"""TensorRT-LLM behind Dynamo: the worker's system port (``DYN_SYSTEM_PORT``, e.g. 8081) serves both the
engine's ``trtllm_*`` metrics (with ``--publish-events-and-metrics``) and Dynamo's ``dynamo_component_*``.

TensorRT-LLM 1.1 exposes only request histograms and ``request_success_total``; newer builds add token
counters and the queue/KV gauges (``trtllm_num_requests_waiting``, ``trtllm_kv_cache_utilization``, ...).
Where the engine has no gauge, Dynamo's worker gauges stand in: ``kvstats_gpu_cache_usage_percent`` (0–1
despite its name) for KV usage and ``inflight_requests`` for running requests (it also counts requests
queued inside the engine, so it overstates running and leaves waiting unknown). Some Dynamo releases
prefix the engine metrics ``trtllm:`` instead of ``trtllm_``; both are read. The latency histogram that
stands for inter-token latency is ``time_per_output_token_seconds`` (a per-request mean, as in vLLM's
``request_time_per_output_token_seconds``).

No ``name[]`` query (`EnginePreset.name_query`): the system port is served by Dynamo's runtime (Rust), not by
prometheus_client, so the query would only lengthen every request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tokenscale.metrics import exposition
from tokenscale.metrics.engines.preset import Aggregation, DerivedField, EnginePreset, HistogramField, ScalarField
from tokenscale.metrics.exposition import Series

__all__ = ["PRESET"]

_PREFIXES = ("trtllm_", "trtllm:")


def _engine(name: str) -> tuple[str, ...]:
    return tuple(prefix + name for prefix in _PREFIXES)


_MAX_BLOCKS = _engine("kv_cache_max_blocks")
_TOKENS_PER_BLOCK = _engine("kv_cache_tokens_per_block")


def _kv_capacity_tokens(by_name: Mapping[str, Sequence[Series]], copy_labels: tuple[str, ...]) -> float | None:
    """``kv_cache_max_blocks × kv_cache_tokens_per_block`` (blocks summed over ranks)."""
    blocks = next((by_name[n] for n in _MAX_BLOCKS if by_name.get(n)), None)
    block_tokens = next((by_name[n] for n in _TOKENS_PER_BLOCK if by_name.get(n)), None)
    if blocks is None or block_tokens is None:
        return None
    tokens_per_block = max(exposition.shared_value([s], copy_labels=copy_labels) for s in block_tokens)
    return exposition.shared_value(blocks, copy_labels=copy_labels) * tokens_per_block


PRESET = EnginePreset(
    engine="trtllm",
    scalars=(
        ScalarField("prompt_tokens_total", _engine("prompt_tokens_total")),
        ScalarField("generation_tokens_total", _engine("generation_tokens_total")),
        ScalarField("requests_waiting", _engine("num_requests_waiting")),
        ScalarField("requests_running", (*_engine("num_requests_running"), "dynamo_component_inflight_requests")),
        ScalarField(
            "kv_cache_usage_ratio",
            (*_engine("kv_cache_utilization"), "dynamo_component_kvstats_gpu_cache_usage_percent"),
            Aggregation.FRACTION,
        ),
        ScalarField("requests_finished_total", _engine("request_success_total")),
    ),
    histograms=(
        HistogramField("time_to_first_token_seconds", _engine("time_to_first_token_seconds")),
        HistogramField("inter_token_latency_seconds", _engine("time_per_output_token_seconds")),
    ),
    derived=(DerivedField("kv_cache_capacity_tokens", (*_MAX_BLOCKS, *_TOKENS_PER_BLOCK), _kv_capacity_tokens),),
)
