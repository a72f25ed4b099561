"""The values that cross layer boundaries: engine samples in, observations to policies, decisions out.

Every type is a frozen dataclass built from the standard library only, so the simulator and the operator
hand the very same values to the very same policies (`tokenscale.core.decide`). Quantities carry their
unit in their name; ``None`` always means *unknown*, never zero.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "Action",
    "Decision",
    "EngineSample",
    "Histogram",
    "LoadSignals",
    "Observation",
    "PodView",
    "Reason",
    "Role",
    "RoleView",
    "ServingRole",
]


class Role(enum.StrEnum):
    """The workload a pod belongs to: the prefill or the decode scale target."""

    PREFILL = "prefill"
    DECODE = "decode"


class ServingRole(enum.StrEnum):
    """What the router sends a pod, read from its role label.

    A ``CONVERTED`` pod belongs to the decode workload but also takes prefill work (a convertible decoder).
    """

    PREFILL = "prefill"
    DECODE = "decode"
    CONVERTED = "converted"


@dataclass(frozen=True, slots=True)
class Histogram:
    """A cumulative Prometheus histogram at one instant.

    ``cumulative_counts[i]`` counts observations ``<= bucket_upper_bounds[i]``; bounds ascend and the last one
    is ``math.inf`` (a missing ``+Inf`` bucket is filled in from ``count`` by the parser).
    """

    bucket_upper_bounds: tuple[float, ...]
    cumulative_counts: tuple[float, ...]
    sum: float
    count: float

    def __post_init__(self) -> None:
        if len(self.bucket_upper_bounds) != len(self.cumulative_counts):
            raise ValueError("histogram bounds and counts differ in length")
        if self.bucket_upper_bounds and not math.isinf(self.bucket_upper_bounds[-1]):
            raise ValueError("histogram must end with the +Inf bucket")


@dataclass(frozen=True, slots=True)
class EngineSample:
    """One scrape of one engine pod, normalised across engines (vLLM, SGLang, TensorRT-LLM via Dynamo).

    Counters are cumulative since engine start (``_total`` in the exposition); gauges are instantaneous.
    A field is ``None`` when the engine does not expose it.
    """

    timestamp_seconds: float
    prompt_tokens_total: float | None = None
    generation_tokens_total: float | None = None
    requests_waiting: float | None = None
    requests_running: float | None = None
    kv_cache_usage_ratio: float | None = None
    """Fraction 0–1 of KV-cache blocks in use (vLLM ``kv_cache_usage_perc`` is already 0–1)."""
    kv_cache_capacity_tokens: float | None = None
    preemptions_total: float | None = None
    requests_finished_total: float | None = None
    time_to_first_token_seconds: Histogram | None = None
    inter_token_latency_seconds: Histogram | None = None
    request_prompt_tokens: Histogram | None = None
    request_generation_tokens: Histogram | None = None
    kv_transfer_seconds: Histogram | None = None
    kv_transfer_bytes_total: float | None = None
    kv_transfer_failures_total: float | None = None
    """Failed KV-cache transfers between prefill and decode (vLLM NIXL, SGLang PD), cumulative."""


@dataclass(frozen=True, slots=True)
class PodView:
    """What the controller knows about one serving pod at ``now``.

    ``load_known`` is false when the pod has no fresh metrics sample (scrape failed, stale, warming up);
    such a pod never counts as idle.
    """

    name: str
    role: Role
    serving_role: ServingRole
    ready: bool
    ready_since_seconds: float | None = None
    converted_since_seconds: float | None = None
    load_known: bool = False
    requests_running: float = 0.0
    requests_waiting: float = 0.0
    kv_cache_usage_ratio: float = 0.0
    prompt_tokens_per_second: float = 0.0
    generation_tokens_per_second: float = 0.0
    unknown_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RoleView:
    """One role's workload: the replicas asked of its /scale and the pods that exist."""

    spec_replicas: int
    pods: tuple[PodView, ...] = ()

    @property
    def ready_replicas(self) -> int:
        return sum(1 for p in self.pods if p.ready)


@dataclass(frozen=True, slots=True)
class LoadSignals:
    """Service-wide load over the rate window, built by `tokenscale.core.windows` from engine samples.

    Token rates are tokens per second. ``arriving_prompt_tokens_per_second`` includes the growth of the
    waiting queue (see `tokenscale.core.windows`), so a burst shows before it is processed.
    Per-bucket rates follow `tokenscale.core.buckets` (3 input × 3 output buckets, row-major by input).
    """

    arriving_prompt_tokens_per_second: float
    processed_prompt_tokens_per_second: float
    generation_tokens_per_second: float
    arriving_requests_per_second: float
    mean_prompt_tokens: float
    mean_generation_tokens: float
    bucket_tokens_per_second: tuple[float, ...] = ()
    """(input + predicted output) token arrival rate per request bucket; empty when not estimated."""
    requests_waiting: float = 0.0
    prefill_requests_running_per_pod: float = 0.0
    decode_requests_running_per_pod: float = 0.0
    prefill_kv_cache_usage_ratio: float = 0.0
    decode_kv_cache_usage_ratio: float = 0.0
    ttft_p90_seconds: float | None = None
    itl_p90_seconds: float | None = None
    recent_arriving_prompt_tokens_per_second: float | None = None
    """The same arriving rate over the short recent window (a tick or two): a burst's onset shows here first;
    ``None`` when not estimated."""


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything a policy may look at, at time ``now_seconds``.

    ``load`` is ``None`` when a needed input is unknown; ``unknown_reasons`` then says why, and every policy
    answers with a hold (never a scale-in).
    """

    now_seconds: float
    prefill: RoleView
    decode: RoleView
    load: LoadSignals | None
    unknown_reasons: tuple[str, ...] = ()


class Action(enum.StrEnum):
    """What a decision does; one value per decision, used as a metric label."""

    SCALE = "scale"
    CONVERT = "convert"
    RESTORE = "restore"
    HOLD = "hold"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class Reason:
    """Why: a stable machine code (a metric label, CamelCase like Kubernetes reasons) and a sentence.

    ``role`` names the workload the reason is about, ``None`` when it concerns the whole service. The codes are
    listed in `tokenscale.core.reasons`.
    """

    code: str
    message: str
    role: Role | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """One policy's answer for one tick: the same shape for every policy.

    ``prefill_replicas``/``decode_replicas`` are final (after bounds, step limits and stabilisation);
    ``recommended_*`` are the raw policy outputs before those limits, kept apart so a clamp never feeds back
    into the next recommendation.

    Pod lists are changes to make now, by pod name: ``convert_pods`` start taking prefill work and
    ``restore_pods`` stop (convertible decoders); ``withdraw_pods`` leave routing but keep running and
    ``rejoin_pods`` come back (soft scale-in). Withdrawn pods are the first ones removed when the replicas of
    their workload next fall.
    """

    action: Action
    prefill_replicas: int
    decode_replicas: int
    recommended_prefill_replicas: int
    recommended_decode_replicas: int
    convert_pods: tuple[str, ...] = ()
    restore_pods: tuple[str, ...] = ()
    reasons: tuple[Reason, ...] = ()
    inputs: Mapping[str, float] = field(default_factory=dict)
    withdraw_pods: tuple[str, ...] = ()
    rejoin_pods: tuple[str, ...] = ()
