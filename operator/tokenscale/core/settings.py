"""What a scaling decision is configured with: bounds, behaviour, objectives, profile and each policy's knobs.

Frozen dataclasses built from the standard library only. `tokenscale.api.v1alpha1` converts a resource's spec
into a `ScalingSettings` (``DisaggregatedInferenceServiceSpec.to_core``); the simulator builds one directly. The
per-policy dataclasses mirror the ``*PolicySpec`` models field for field, with the same defaults; where a
default comes from is said in `docs/algorithms.md` (tags of reference/algorithms.md: paper, secondary,
reconstructed).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Literal

from tokenscale.core.profile import Profile

__all__ = [
    "SLO",
    "APASettings",
    "Behavior",
    "DistServeSettings",
    "HPASettings",
    "HeteroScaleSettings",
    "KPASettings",
    "PodMetric",
    "RoleBounds",
    "ScalingSettings",
    "StaticSettings",
    "TokenScaleSettings",
]

PodMetric = Literal["kv_cache_usage", "requests_running"]
"""A per-pod metric the utilisation baselines (HPA, KPA, APA) may target."""


@dataclass(frozen=True, slots=True)
class RoleBounds:
    """Fewest and most replicas of one role; every final count lies in ``[min_replicas, max_replicas]``."""

    min_replicas: int
    max_replicas: int

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"need 0 <= min_replicas <= max_replicas, got {self.min_replicas}, {self.max_replicas}")

    def clamp(self, replicas: int) -> int:
        """``replicas`` moved into the bounds."""
        return min(self.max_replicas, max(self.min_replicas, replicas))


@dataclass(frozen=True, slots=True)
class Behavior:
    """Limits every policy's counts pass through (`tokenscale.core.guards`).

    ``scale_in_stabilization_seconds``: a role scales in only to the highest recommendation seen over this
    window, as Kubernetes HPA does; 0 scales in at once, as the TokenScale reimplementation does. A policy may
    bring its own published default instead (HPA: 300 s; KPA: its scale-down delay; HeteroScale: its cooldowns).
    """

    max_scale_up_step: int = 8
    max_scale_down_step: int = 2
    scale_in_stabilization_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_scale_up_step < 1 or self.max_scale_down_step < 1:
            raise ValueError("step limits must be at least 1")
        if self.scale_in_stabilization_seconds < 0:
            raise ValueError("scale_in_stabilization_seconds must not be negative")


_TOKENSCALE_TTFT_TIERS: tuple[tuple[int, float], ...] = ((256, 0.25), (1024, 0.4), (8192, 2.0))


@dataclass(frozen=True, slots=True)
class SLO:
    """Latency objectives: TTFT by input length (tiers), TPOT.

    ``ttft_tiers`` holds ``(max_input_tokens, ttft_seconds)`` pairs by strictly increasing bound; a request with
    fewer input tokens than a tier's bound falls in it (first match wins); longer ones use the last tier.
    Default: TokenScale's tiers < 256 tokens 0.25 s, < 1024 0.4 s, < 8192 2 s, TPOT 0.1 s (algorithms.md §4.1).
    """

    ttft_tiers: tuple[tuple[int, float], ...] = _TOKENSCALE_TTFT_TIERS
    tpot_seconds: float = 0.1

    def __post_init__(self) -> None:
        if not self.ttft_tiers:
            raise ValueError("need at least one TTFT tier")
        bounds = [bound for bound, _ in self.ttft_tiers]
        if any(b <= a for a, b in itertools.pairwise(bounds)):
            raise ValueError("TTFT tiers must have strictly increasing max_input_tokens")
        if self.tpot_seconds <= 0 or any(seconds <= 0 for _, seconds in self.ttft_tiers):
            raise ValueError("objectives must be positive")

    def ttft_seconds_for(self, *, input_tokens: int) -> float:
        """The TTFT objective of a request with ``input_tokens`` prompt tokens."""
        for bound, seconds in self.ttft_tiers:
            if input_tokens < bound:
                return seconds
        return self.ttft_tiers[-1][1]


@dataclass(frozen=True, slots=True)
class TokenScaleSettings:
    """Token Velocity sizing and convertible decoders (docs/algorithms.md §TokenScale; all [reconstructed]).

    - ``convertible_decoders_max``: most decode pods converted at once; 0 turns conversion off.
    - ``activate_ratio`` h: convert when arriving prompt tokens/s exceed h × Ready prefill capacity.
    - ``deactivate_ratio`` l: restore once arriving prompt tokens/s stay below l × Ready prefill capacity
      (converted pods not counted) for ``restore_after_ticks`` ticks. ``l ≤ h``: the band between them is the
      hysteresis, and a tick can then never both restore on the low-water mark and convert.
    - ``restore_stabilization_seconds`` S: the low-water restore of a pod also waits until S seconds have passed
      since the later of its conversion and the last tick above the high-water mark (0: no wait), so a pod goes
      through at most one convert/restore cycle per S.
    - ``max_conversion_seconds``: no pod stays converted longer.
    - ``prefill_chunk_tokens``: most prefill tokens a converted decoder adds to one decode step; ``None`` (the
      default): as many as keep the mixed step within τ × TPOT, up to the engine's token budget.
    - ``tpot_headroom_ratio`` τ: a converted decoder's mixed step (decode step + chunk, which pays no second
      fixed cost) stays within τ × TPOT objective; a decoder converts only if that leaves a chunk of at least one
      KV block, and is restored when its decode step alone leaves no such room within the objective itself.
    - ``conversion_kv_reserve_ratio``: share of a converted decoder's KV held for burst prefills, which the
      decode sizing makes up for with extra decoders.
    - ``backlog_drain_seconds``: new prefillers are sized to drain the waiting prompt tokens within this time;
      ``None`` (the default): the profile's cold start plus the tightest TTFT objective (a prefiller started now
      serves after its cold start). Conversion always measures the backlog against the tightest objective.
    - ``demand_quantile`` q and ``demand_window_seconds`` W: prefillers are sized for the q-quantile of the
      prefill demand seen over the last W seconds (the current tick's alone with W = 0, as the paper's formula),
      so capacity a burst needed stays while bursts recur, and a spike shorter than (1 − q)·W starts nothing.
    """

    convertible_decoders_max: int = 2
    activate_ratio: float = 1.0
    deactivate_ratio: float = 0.9
    restore_after_ticks: int = 2
    restore_stabilization_seconds: float = 30.0
    max_conversion_seconds: float = 300.0
    prefill_chunk_tokens: int | None = None
    tpot_headroom_ratio: float = 0.8
    conversion_kv_reserve_ratio: float = 0.15
    backlog_drain_seconds: float | None = None
    demand_quantile: float = 0.99
    demand_window_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.deactivate_ratio > self.activate_ratio:
            raise ValueError("deactivate_ratio must not exceed activate_ratio")
        if self.restore_stabilization_seconds < 0:
            raise ValueError("restore_stabilization_seconds must not be negative")
        if not 0.0 < self.demand_quantile <= 1.0:
            raise ValueError("demand_quantile must be in (0, 1]")
        if self.demand_window_seconds < 0:
            raise ValueError("demand_window_seconds must not be negative")


@dataclass(frozen=True, slots=True)
class HeteroScaleSettings:
    """HeteroScale's coordinated P/D policy (docs/algorithms.md §HeteroScale).

    ``target_decode_tokens_per_second`` T_D and ``prefill_to_decode_ratio`` r are derived from the profile when
    ``None``. Latency tiers: p90 above ``moderate_latency_ratio`` × objective adds ``moderate_step_ratio`` of
    the current replicas, above ``severe_latency_ratio`` × objective ``severe_step_ratio``. Scale-in closes
    ``scale_in_damping`` of the gap; withdrawn pods are watched ``soft_scale_in_seconds`` before removal.
    """

    target_decode_tokens_per_second: float | None = None
    prefill_to_decode_ratio: float | None = None
    tolerance_up: float = 0.10
    tolerance_down: float = 0.15
    scale_out_cooldown_seconds: float = 30.0
    scale_in_cooldown_seconds: float = 300.0
    soft_scale_in_seconds: float = 60.0
    moderate_latency_ratio: float = 1.0
    severe_latency_ratio: float = 1.2
    moderate_step_ratio: float = 0.10
    severe_step_ratio: float = 0.20
    scale_in_damping: float = 0.5


@dataclass(frozen=True, slots=True)
class HPASettings:
    """Kubernetes HPA (autoscaling/v2) per role: ``desired = ceil(pods · metric/target)`` outside the tolerance.

    Its own defaults replace the generic behaviour: 300 s scale-down stabilisation and a 15 s sync period.
    """

    metric: PodMetric = "kv_cache_usage"
    target: float = 0.7
    tolerance: float = 0.1
    scale_down_stabilization_seconds: float = 300.0
    sync_period_seconds: float = 15.0


@dataclass(frozen=True, slots=True)
class KPASettings:
    """AIBrix KPA (Knative-style stable/panic windows) per role, AIBrix v0.5 defaults.

    Prefill targets concurrency (running + waiting requests per pod, ``target_concurrency``); decode targets
    ``decode_metric`` at ``decode_target`` (KV usage 0.7), as in TokenScale's AIBrix baseline (algorithms.md §3.6).
    """

    target_concurrency: float = 10.0
    stable_window_seconds: float = 180.0
    panic_window_seconds: float = 60.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 2.0
    max_scale_down_rate: float = 2.0
    up_tolerance: float = 0.1
    down_tolerance: float = 0.1
    scale_down_delay_seconds: float = 300.0
    decode_metric: PodMetric = "kv_cache_usage"
    decode_target: float = 0.7


@dataclass(frozen=True, slots=True)
class APASettings:
    """AIBrix APA per role: ratio bands around the target, averaged over ``window_seconds``."""

    metric: PodMetric = "kv_cache_usage"
    target: float = 0.7
    up_tolerance: float = 0.1
    down_tolerance: float = 0.1
    max_scale_up_rate: float = 2.0
    max_scale_down_rate: float = 2.0
    window_seconds: float = 180.0


@dataclass(frozen=True, slots=True)
class DistServeSettings:
    """DistServe-style planning: ``n = ceil(request rate / per-instance goodput)``, re-planned periodically."""

    prefill_goodput_requests_per_second: float
    decode_goodput_requests_per_second: float
    replan_interval_seconds: float = 30.0
    rate_window_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class StaticSettings:
    """Fixed replica counts."""

    prefill_replicas: int
    decode_replicas: int


@dataclass(frozen=True, slots=True)
class ScalingSettings:
    """Everything `tokenscale.core.decide` and `tokenscale.core.observe` need besides the observation.

    ``policy`` is a name from `tokenscale.core.policies.registry`. ``window_seconds`` is the sliding window of
    counter rates; ``recent_window_seconds`` the short one that sees a burst within a tick or two (at least one
    tick is used). A pod whose newest sample is older than ``stale_after_ticks`` ticks is *unknown*.
    ``distserve``/``static`` may be ``None``: DistServe then derives its goodputs from the profile, static keeps
    the current counts.
    """

    policy: str
    prefill: RoleBounds
    decode: RoleBounds
    behavior: Behavior
    slo: SLO
    profile: Profile
    window_seconds: float = 10.0
    tick_seconds: float = 1.0
    tokenscale: TokenScaleSettings = field(default_factory=TokenScaleSettings)
    heteroscale: HeteroScaleSettings = field(default_factory=HeteroScaleSettings)
    hpa: HPASettings = field(default_factory=HPASettings)
    kpa: KPASettings = field(default_factory=KPASettings)
    apa: APASettings = field(default_factory=APASettings)
    distserve: DistServeSettings | None = None
    static: StaticSettings | None = None
    recent_window_seconds: float = 2.0
    stale_after_ticks: int = 3

    def __post_init__(self) -> None:
        if self.window_seconds <= 0 or self.tick_seconds <= 0 or self.recent_window_seconds <= 0:
            raise ValueError("windows and tick must be positive")
        if self.stale_after_ticks < 1:
            raise ValueError("stale_after_ticks must be at least 1")

    @property
    def stale_after_seconds(self) -> float:
        """Age beyond which a pod's newest sample no longer counts."""
        return self.stale_after_ticks * self.tick_seconds
