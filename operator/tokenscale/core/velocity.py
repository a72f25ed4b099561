"""Token velocities derived from a performance model (reference/algorithms.md §1.2, §1.4).

A profile may state measured velocities; when it does not, these functions derive them from its service-time
model, so that the simulator's cluster and the operator's sizing share one set of numbers.
"""

from __future__ import annotations

import math

from tokenscale.core.profile import BUCKET_COUNT, BucketGrid, PerfModel, Velocities

__all__ = [
    "decode_tokens_per_second",
    "derive_velocities",
    "network_tokens_per_second",
    "prefill_tokens_per_second",
]


def prefill_tokens_per_second(*, perf: PerfModel, prompt_tokens: float) -> float:
    """V_P: prompt tokens/s of one prefiller running full steps of ``max_num_batched_tokens``.

    A step packs n = budget / L requests of length L: ``t = a + b·budget + c·n·L² = a + b·budget + c·budget·L``,
    so ``V_P = budget / t``. Longer prompts cost more per token through the attention term.
    """
    budget = float(perf.max_num_batched_tokens)
    step_ms = (
        perf.prefill_fixed_ms
        + perf.prefill_ms_per_token * budget
        + perf.prefill_ms_per_token_squared * budget * prompt_tokens
    )
    return 1000.0 * budget / step_ms


def network_tokens_per_second(*, perf: PerfModel) -> float:
    """V_N = link bytes/s ÷ KV bytes per token (the fixed per-transfer cost is ignored: it overlaps)."""
    return perf.link_bytes_per_second / perf.kv_bytes_per_token


def decode_tokens_per_second(
    *, perf: PerfModel, input_tokens: float, output_tokens: float, tpot_slo_seconds: float
) -> float:
    """V_D for requests of ``input_tokens`` in and ``output_tokens`` out, in (in + out) tokens/s.

    Concurrency is the largest B that fits the KV cache at mean residency ``I + O/2`` tokens, at most
    ``max_num_seqs``, and whose step time ``ITL(B, K = B·(I + O/2))`` meets the TPOT objective. A request then
    holds ``I + O`` KV tokens at its end and lives ``O`` steps, so the decoder releases
    ``V_D = B·(I + O) / (O·ITL)`` tokens per second (algorithms.md §1.2, analytic cross-check).
    """
    residency = input_tokens + output_tokens / 2.0
    by_memory = perf.kv_capacity_tokens / residency
    slo_ms = 1000.0 * tpot_slo_seconds
    per_sequence_ms = perf.decode_ms_per_kv_token * residency + perf.decode_ms_per_sequence
    by_latency = (slo_ms - perf.decode_fixed_ms) / per_sequence_ms if slo_ms > perf.decode_fixed_ms else 1.0
    sequences = max(1.0, math.floor(min(by_memory, float(perf.max_num_seqs), by_latency)))
    step_ms = perf.decode_step_ms(kv_tokens=sequences * residency, sequences=sequences)
    return sequences * (input_tokens + output_tokens) * 1000.0 / (output_tokens * step_ms)


def derive_velocities(
    *, perf: PerfModel, buckets: BucketGrid, prompt_tokens: float, tpot_slo_seconds: float
) -> Velocities:
    """All three velocities of a profile, V_D for each of the nine buckets at its representative lengths."""
    return Velocities(
        prefill_tokens_per_second=prefill_tokens_per_second(perf=perf, prompt_tokens=prompt_tokens),
        network_tokens_per_second=network_tokens_per_second(perf=perf),
        decode_tokens_per_second=tuple(
            decode_tokens_per_second(
                perf=perf,
                input_tokens=buckets.representative(b)[0],
                output_tokens=max(1.0, buckets.representative(b)[1]),
                tpot_slo_seconds=tpot_slo_seconds,
            )
            for b in range(BUCKET_COUNT)
        ),
    )
