"""Performance profile of one model on one GPU type: service-time model, request buckets and velocities.

The same profile drives the simulator's service times (`PerfModel`) and the operator's sizing
(`Velocities`), so that the two agree. Formulas and numbers: reference/perfmodel.md §2 (service times) and
reference/algorithms.md §1.2 (velocities, 3×3 buckets).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

__all__ = ["BUCKET_COUNT", "BucketGrid", "PerfModel", "Profile", "Velocities"]

BUCKET_COUNT = 9


@dataclass(frozen=True, slots=True)
class PerfModel:
    """Service times of one instance (one model on one GPU type at one tensor-parallel degree).

    - prefill of a chunk of L tokens: ``t = a + b·L + c·L²`` ms (perfmodel.md §2);
    - one decode step over B sequences holding K KV tokens: ``ITL = a + b·K + c·B`` ms;
    - KV transfer of L prompt tokens: ``fixed + L·kv_bytes_per_token / link_bytes_per_second`` (§7).
    ``kv_bytes_per_token`` and ``link_bytes_per_second`` are per instance (all its GPUs together).
    """

    prefill_fixed_ms: float
    prefill_ms_per_token: float
    prefill_ms_per_token_squared: float
    decode_fixed_ms: float
    decode_ms_per_kv_token: float
    decode_ms_per_sequence: float
    kv_capacity_tokens: int
    kv_bytes_per_token: int
    link_bytes_per_second: float
    kv_transfer_fixed_ms: float
    max_num_seqs: int
    max_num_batched_tokens: int
    gpus_per_instance: int
    cold_start_seconds: float

    def prefill_ms(self, *, tokens: float) -> float:
        """Time to prefill one request's chunk of ``tokens`` prompt tokens."""
        return (
            self.prefill_fixed_ms + self.prefill_ms_per_token * tokens + self.prefill_ms_per_token_squared * tokens**2
        )

    def prefill_chunk_ms(self, *, tokens: float, prior_tokens: float = 0.0) -> float:
        """Marginal time of a chunk of ``tokens`` in a step that already pays the fixed cost (scheduler, weight
        read), such as a decode step it is folded into: ``b·l + c·(l² + 2·p·l)``, the linear term and the chunk's
        attention over itself and the ``prior_tokens`` p of its prompt already prefilled."""
        return self.prefill_ms_per_token * tokens + self.prefill_ms_per_token_squared * (
            tokens * tokens + 2.0 * prior_tokens * tokens
        )

    def batch_prefill_ms(self, *, chunk_tokens: tuple[float, ...]) -> float:
        """Time of one prefill step over several requests' chunks: one fixed cost, linear in the total, and each
        chunk's own attention (quadratic) term."""
        total = sum(chunk_tokens)
        squares = sum(t * t for t in chunk_tokens)
        return self.prefill_fixed_ms + self.prefill_ms_per_token * total + self.prefill_ms_per_token_squared * squares

    def decode_step_ms(self, *, kv_tokens: float, sequences: float) -> float:
        """Inter-token latency of one decode step."""
        return self.decode_fixed_ms + self.decode_ms_per_kv_token * kv_tokens + self.decode_ms_per_sequence * sequences

    def kv_transfer_ms(self, *, tokens: float) -> float:
        """Time to ship the KV cache of ``tokens`` prompt tokens from a prefiller to a decoder."""
        return self.kv_transfer_fixed_ms + 1000.0 * tokens * self.kv_bytes_per_token / self.link_bytes_per_second


@dataclass(frozen=True, slots=True)
class BucketGrid:
    """TokenScale's 3×3 request buckets: input-length bucket × output-length bucket, row-major by input.

    A request with ``input < input_edges[0]`` is in input bucket 0, ``< input_edges[1]`` in 1, else 2; the same
    for outputs. Representative lengths (the mean length of each bucket on the reference traces) size the decode
    velocity of each bucket. Defaults: pooled tertiles of the Azure code and conv traces (algorithms.md §1.2).
    """

    input_edges_tokens: tuple[int, int] = (446, 1236)
    output_edges_tokens: tuple[int, int] = (50, 139)
    representative_input_tokens: tuple[float, float, float] = (289.0, 1000.0, 3011.0)
    representative_output_tokens: tuple[float, float, float] = (18.0, 90.0, 352.0)

    def index(self, *, input_tokens: float, output_tokens: float) -> int:
        """Bucket index 0–8 of a request."""
        row = bisect.bisect_right(self.input_edges_tokens, input_tokens)
        column = bisect.bisect_right(self.output_edges_tokens, output_tokens)
        return 3 * row + column

    def representative(self, index: int) -> tuple[float, float]:
        """(input tokens, output tokens) that stand for bucket ``index``."""
        return self.representative_input_tokens[index // 3], self.representative_output_tokens[index % 3]


@dataclass(frozen=True, slots=True)
class Velocities:
    """Per-instance capacities (TokenScale's token velocities), tokens per second.

    - ``prefill_tokens_per_second`` V_P: prompt tokens one prefiller processes per second;
    - ``network_tokens_per_second`` V_N: prompt tokens whose KV one prefiller can ship per second;
    - ``decode_tokens_per_second[b]`` V_D,b: (input + output) tokens per second whose KV one decoder releases,
      for requests of bucket b, while keeping the TPOT objective.
    """

    prefill_tokens_per_second: float
    network_tokens_per_second: float
    decode_tokens_per_second: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.decode_tokens_per_second) != BUCKET_COUNT:
            raise ValueError(f"decode velocity needs {BUCKET_COUNT} buckets")
        if min(self.prefill_tokens_per_second, self.network_tokens_per_second, *self.decode_tokens_per_second) <= 0:
            raise ValueError("velocities must be positive")


@dataclass(frozen=True, slots=True)
class Profile:
    """A named performance profile: what one instance of ``model`` on ``gpu`` can do, and where that comes from."""

    name: str
    model: str
    gpu: str
    perf: PerfModel
    buckets: BucketGrid
    velocities: Velocities
    source: str
