"""SGLang (``python/sglang/srt/metrics/collector.py``, served with ``--enable-metrics``; label ``model_name``).

``token_usage`` is SGLang's 0–1 KV-usage gauge and ``max_total_num_tokens`` its KV capacity in tokens.
Every tensor- and pipeline-parallel rank exports the same scheduler view, so ``tp_rank``/``pp_rank`` series
are copies (maximum), while ``dp_rank`` series are parts. Older builds name the inter-token histogram
``time_per_output_token_seconds``. SGLang exposes KV-transfer speed and latency only as gauges (not
cumulative), so only the failure counter is read.

No ``name[]`` query (`EnginePreset.name_query`): SGLang always runs prometheus_client in multiprocess mode on a
plain ``CollectorRegistry()`` (``add_prometheus_middleware``), whose restricted view is empty, so the query
would get an empty page every time.
"""

from __future__ import annotations

from tokenscale.metrics.engines.preset import Aggregation, EnginePreset, HistogramField, ScalarField

__all__ = ["PRESET"]

PRESET = EnginePreset(
    engine="sglang",
    scalars=(
        ScalarField("prompt_tokens_total", ("sglang:prompt_tokens_total",)),
        ScalarField("generation_tokens_total", ("sglang:generation_tokens_total",)),
        ScalarField("requests_waiting", ("sglang:num_queue_reqs",)),
        ScalarField("requests_running", ("sglang:num_running_reqs",)),
        ScalarField("kv_cache_usage_ratio", ("sglang:token_usage",), Aggregation.FRACTION),
        ScalarField("kv_cache_capacity_tokens", ("sglang:max_total_num_tokens",), Aggregation.SHARED),
        ScalarField("preemptions_total", ("sglang:num_retracted_requests_total",)),
        ScalarField("requests_finished_total", ("sglang:num_requests_total",)),
        ScalarField("kv_transfer_failures_total", ("sglang:num_transfer_failed_reqs_total",)),
    ),
    histograms=(
        HistogramField("time_to_first_token_seconds", ("sglang:time_to_first_token_seconds",)),
        HistogramField(
            "inter_token_latency_seconds",
            ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
        ),
        HistogramField("request_prompt_tokens", ("sglang:prompt_tokens_histogram",)),
        HistogramField("request_generation_tokens", ("sglang:generation_tokens_histogram",)),
    ),
    copy_labels=("tp_rank", "pp_rank"),
)
