"""A realistic vLLM V1 ``/metrics`` payload, generated from the real exposition names and bucket layouts.

The families, label names and bucket boundaries follow vLLM V1 (`vllm/v1/metrics/loggers.py`; see
`docs/metrics.md`): every engine series carries ``engine`` and ``model_name``, counters are exposed with
``_total``, request-length histograms use the 1-2-5 buckets up to ``max_model_len``. The API server's own
FastAPI-instrumentator and process metrics are included because a real scrape carries them too (they are
what the family filter skips). Values are seeded pseudo-random, cumulative where the type requires it.
"""

from __future__ import annotations

import random

__all__ = ["vllm_exposition"]

_TTFT_BUCKETS_SECONDS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
)  # fmt: skip
_ITL_BUCKETS_SECONDS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
_REQUEST_LATENCY_BUCKETS_SECONDS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0,
    1920.0, 7680.0,
)  # fmt: skip
_ITERATION_TOKENS_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
_HTTP_HIGHR_BUCKETS_SECONDS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 7.5, 10.0, 30.0, 60.0,
)  # fmt: skip
_HANDLERS = ("/v1/completions", "/v1/chat/completions", "/metrics", "/health", "/v1/models")


def _one_two_five_buckets(max_value: int) -> tuple[int, ...]:
    """vLLM's ``build_1_2_5_buckets``: 1, 2, 5, 10, 20, 50, ... up to ``max_value``."""
    buckets: list[int] = []
    exponent = 0
    while True:
        for mantissa in (1, 2, 5):
            value = mantissa * 10**exponent
            if value > max_value:
                return tuple(buckets)
            buckets.append(value)
        exponent += 1


def _number(value: float) -> str:
    return repr(float(value))


class _Writer:
    def __init__(self, rng: random.Random) -> None:
        self.lines: list[str] = []
        self.rng = rng

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, str], value: float) -> None:
        rendered = ",".join(f'{key}="{labels[key]}"' for key in sorted(labels))
        self.lines.append(f"{name}{{{rendered}}} {_number(value)}" if rendered else f"{name} {_number(value)}")

    def histogram(self, name: str, labels: dict[str, str], bounds: tuple[float, ...], count: int) -> None:
        cumulative = sorted(self.rng.randint(0, count) for _ in bounds)
        for bound, running in zip(bounds, cumulative, strict=True):
            self.sample(f"{name}_bucket", {**labels, "le": _number(bound)}, running)
        self.sample(f"{name}_bucket", {**labels, "le": "+Inf"}, count)
        self.sample(f"{name}_count", labels, count)
        self.sample(f"{name}_sum", labels, count * self.rng.uniform(0.05, 500.0))


def vllm_exposition(
    *,
    engines: int = 1,
    model_name: str = "meta-llama/Llama-3.1-8B-Instruct",
    max_model_len: int = 131072,
    seed: int = 0,
) -> str:
    """Return the text a vLLM V1 API server with ``engines`` data-parallel engine cores would serve.

    With the defaults (one engine, the 1-2-5 length buckets up to 131072 tokens) the payload is about 50 KB,
    the size the benchmark's per-pod costs are quoted for.
    """
    rng = random.Random(seed)
    out = _Writer(rng)
    _process_metrics(out)
    _http_metrics(out)
    per_engine = [{"engine": str(index), "model_name": model_name} for index in range(engines)]
    length_buckets = _one_two_five_buckets(max_model_len)

    for name, help_text, values in (
        ("vllm:num_requests_running", "Number of requests in model execution batches.", (0, 256)),
        ("vllm:num_requests_waiting", "Number of requests waiting to be processed.", (0, 64)),
        ("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", (0, 1)),
    ):
        out.family(name, "gauge", help_text)
        for labels in per_engine:
            out.sample(name, labels, rng.uniform(*values))
    out.family("vllm:engine_sleep_state", "gauge", "Engine sleep state; awake = 0 means engine is sleeping.")
    for labels in per_engine:
        for state in ("awake", "weights_offloaded", "discard_all"):
            out.sample("vllm:engine_sleep_state", {**labels, "sleep_state": state}, 1.0 if state == "awake" else 0.0)
    out.family("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig")
    for labels in per_engine:
        info = {
            "block_size": "16", "cache_dtype": "auto", "calculate_kv_scales": "False", "cpu_offload_gb": "0",
            "enable_prefix_caching": "True", "gpu_memory_utilization": "0.9", "is_attention_free": "False",
            "num_cpu_blocks": "None", "num_gpu_blocks": "27910", "num_gpu_blocks_override": "None",
            "prefix_caching_hash_algo": "sha256", "sliding_window": "None", "swap_space": "4",
            "swap_space_bytes": "4294967296",
        }  # fmt: skip
        out.sample("vllm:cache_config_info", {**labels, **info}, 1.0)

    for name, help_text in (
        ("vllm:num_preemptions", "Cumulative number of preemption from the engine."),
        ("vllm:prompt_tokens", "Number of prefill tokens processed."),
        ("vllm:generation_tokens", "Number of generation tokens processed."),
        ("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."),
        ("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."),
        ("vllm:external_prefix_cache_queries", "External prefix cache queries from KV connector."),
        ("vllm:external_prefix_cache_hits", "External prefix cache hits from KV connector."),
        ("vllm:mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items."),
        ("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items."),
    ):
        out.family(f"{name}_total", "counter", help_text)
        for labels in per_engine:
            out.sample(f"{name}_total", labels, rng.randint(0, 10**8))
    out.family("vllm:request_success_total", "counter", "Count of successfully processed requests.")
    for labels in per_engine:
        for reason in ("stop", "length", "abort", "error"):
            out.sample("vllm:request_success_total", {**labels, "finished_reason": reason}, rng.randint(0, 10**5))
    out.family("vllm:prompt_tokens_by_source_total", "counter", "Number of prompt tokens by source.")
    for labels in per_engine:
        for source in ("local_compute", "local_cache_hit", "external_kv_transfer"):
            out.sample("vllm:prompt_tokens_by_source_total", {**labels, "source": source}, rng.randint(0, 10**8))

    histograms: tuple[tuple[str, str, tuple[float, ...]], ...] = (
        ("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.", _ITERATION_TOKENS_BUCKETS),
        ("vllm:request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.",
         length_buckets),
        ("vllm:request_n", "Histogram of the n request parameter.", (1, 2, 5, 10, 20)),
        ("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.", length_buckets),
        ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", length_buckets),
        ("vllm:request_generation_tokens", "Number of generation tokens processed.", length_buckets),
        ("vllm:request_prefill_kv_computed_tokens", "Histogram of new KV tokens computed during prefill.",
         length_buckets),
        ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", _TTFT_BUCKETS_SECONDS),
        ("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", _ITL_BUCKETS_SECONDS),
        ("vllm:request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.",
         _ITL_BUCKETS_SECONDS),
        ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
         _REQUEST_LATENCY_BUCKETS_SECONDS),
        ("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
         _REQUEST_LATENCY_BUCKETS_SECONDS),
        ("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.",
         _REQUEST_LATENCY_BUCKETS_SECONDS),
        ("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.",
         _REQUEST_LATENCY_BUCKETS_SECONDS),
        ("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.",
         _REQUEST_LATENCY_BUCKETS_SECONDS),
    )  # fmt: skip
    for name, help_text, bounds in histograms:
        out.family(name, "histogram", help_text)
        for labels in per_engine:
            out.histogram(name, labels, bounds, rng.randint(1000, 10**6))
    return "\n".join(out.lines) + "\n"


def _process_metrics(out: _Writer) -> None:
    out.family("python_gc_objects_collected_total", "counter", "Objects collected during gc")
    for generation in ("0", "1", "2"):
        out.sample("python_gc_objects_collected_total", {"generation": generation}, out.rng.randint(0, 10**6))
    out.family("python_info", "gauge", "Python platform information")
    out.sample("python_info", {"implementation": "CPython", "major": "3", "minor": "12", "patchlevel": "3",
                               "version": "3.12.3"}, 1.0)  # fmt: skip
    for name, kind in (
        ("process_virtual_memory_bytes", "gauge"), ("process_resident_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"), ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"), ("process_max_fds", "gauge"),
    ):  # fmt: skip
        out.family(name, kind, name.replace("_", " "))
        out.sample(name, {}, out.rng.uniform(1, 10**9))


def _http_metrics(out: _Writer) -> None:
    out.family("http_requests_total", "counter", "Total number of requests by method, status and handler.")
    for handler in _HANDLERS:
        for status in ("2xx", "4xx", "5xx"):
            out.sample("http_requests_total", {"handler": handler, "method": "POST", "status": status},
                       out.rng.randint(0, 10**6))  # fmt: skip
    for name in ("http_request_size_bytes", "http_response_size_bytes"):
        out.family(name, "summary", "Content length of incoming requests by handler.")
        for handler in _HANDLERS:
            out.sample(f"{name}_count", {"handler": handler}, out.rng.randint(0, 10**6))
            out.sample(f"{name}_sum", {"handler": handler}, out.rng.randint(0, 10**9))
    out.family("http_request_duration_highr_seconds", "histogram", "Latency with many buckets but no API labels.")
    out.histogram("http_request_duration_highr_seconds", {}, _HTTP_HIGHR_BUCKETS_SECONDS, out.rng.randint(1, 10**6))
    out.family("http_request_duration_seconds", "histogram", "Latency with only few buckets by handler.")
    for handler in _HANDLERS:
        out.histogram("http_request_duration_seconds", {"handler": handler, "method": "POST"}, (0.1, 0.5, 1.0),
                      out.rng.randint(1, 10**6))  # fmt: skip
