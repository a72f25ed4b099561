"""DisaggregatedInferenceService, group ``tokenscale.io``, version ``v1alpha1``.

These pydantic models are the one source of the CRD schema (`tokenscale.api.crdgen` turns them into the
structural OpenAPI schema with CEL rules) and of the operator's parsing of a resource. Field names are
camelCase on the wire; every field says what its default means. Cross-field rules are CEL
(``x-kubernetes-validations``) so that the API server refuses a bad resource with a message that says what
to fix; the same rules are checked here in Python so that `parse_spec` refuses the same resources.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from tokenscale.api import labels
from tokenscale.core import profile as core_profile
from tokenscale.core import settings as core_settings

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "VERSION",
    "APAPolicySpec",
    "BehaviorSpec",
    "Condition",
    "DecisionRecord",
    "DisaggregatedInferenceService",
    "DisaggregatedInferenceServiceSpec",
    "DisaggregatedInferenceServiceStatus",
    "DistServePolicySpec",
    "Engine",
    "GroupStatus",
    "HPAPolicySpec",
    "HeteroScalePolicySpec",
    "KPAPolicySpec",
    "MetricsSource",
    "MetricsSpec",
    "PlacementRecord",
    "PlacementSpec",
    "PolicyName",
    "PolicySpec",
    "ProfileSpec",
    "RoleLabelPreset",
    "RoleLabelSpec",
    "RoleSpec",
    "RoleStatus",
    "SLOSpec",
    "ScaleTargetRef",
    "StaticPolicySpec",
    "SubgroupPriorityName",
    "TTFTTier",
    "TokenScalePolicySpec",
    "VariantSpec",
    "VariantStatus",
    "VelocityStatus",
    "parse_spec",
]

GROUP = "tokenscale.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DisaggregatedInferenceService"
PLURAL = "disaggregatedinferenceservices"
SHORT_NAME = "dis"

MAX_TTFT_TIERS = 8
MAX_DECISION_HISTORY = 10
MAX_CONVERTED_PODS = 256
MAX_VARIANTS = 8
MAX_GROUPS = 64
MAX_PLACEMENT_HISTORY = 10


def _rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """JSON-schema extra holding CEL rules as (rule, message) pairs.

    The API server also evaluates each rule on an object's schema default, ``{}``, *before* the inner defaults
    apply, and refuses the CRD if a rule reads an absent field ("no such key"). So a rule on an object that
    defaults to ``{}`` guards every defaulted field it reads with ``has()``; on a stored object those fields are
    always present, so the guard changes nothing there.
    """
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


class _Model(BaseModel):
    """Base: camelCase aliases, unknown fields refused (a typo is an error, never silently ignored)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_attribute_docstrings=False
    )


class Engine(enum.StrEnum):
    VLLM = "vllm"
    SGLANG = "sglang"
    TRTLLM = "trtllm"


class PolicyName(enum.StrEnum):
    TOKENSCALE = "tokenscale"
    HETEROSCALE = "heteroscale"
    HPA = "hpa"
    KPA = "kpa"
    APA = "apa"
    DISTSERVE = "distserve"
    STATIC = "static"
    # Ablation variants of TokenScale (docs/algorithms.md): its prefill scaler with DistServe-style decode sizing,
    # and both its scalers without convertible decoders.
    TOKENSCALE_PREFILL_ONLY = "tokenscale-prefill-only"
    TOKENSCALE_NO_CONVERSION = "tokenscale-no-conversion"


class MetricsSource(enum.StrEnum):
    PODS = "pods"
    PROMETHEUS = "prometheus"


class RoleLabelPreset(enum.StrEnum):
    TOKENSCALE = "tokenscale"
    LLM_D = "llm-d"
    CUSTOM = "custom"


class ScaleTargetRef(_Model):
    api_version: str = Field(
        default="apps/v1",
        min_length=1,
        description="API version of the scale target; any resource with a /scale subresource works.",
    )
    kind: str = Field(default="Deployment", min_length=1, description="Kind of the scale target.")
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the scale target in the resource's namespace.",
    )


class VariantSpec(_Model):
    """One pool of a role: a workload on one GPU type with its own profile, price and bounds."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                "variant minReplicas must be less than or equal to its maxReplicas",
            )
        )
    )

    name: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="Name of the variant within its role (a DNS label; labels its deployment groups' pods).",
    )
    scale_target_ref: ScaleTargetRef = Field(
        description="The pool's workload, scaled through /scale; with spec.placement, the template its "
        "deployment groups are copied from (the operator then keeps the template itself at 0 replicas)."
    )
    profile: str | None = Field(
        default=None,
        min_length=1,
        description="Performance profile of one instance of this pool (e.g. llama-3.1-8b-a100); unset: the "
        "service's spec.profile.name.",
    )
    gpu_product: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="GPU type of the pool, the nodes' GPU-product label value (e.g. NVIDIA-A100-SXM4-80GB): free "
        "GPUs of this type bound how far the pool may grow, and deployment groups select it. Unset: any GPU.",
    )
    cost_per_gpu_hour: float = Field(
        default=1.0,
        ge=0,
        le=1_000_000,
        description="Cost weight of one GPU-hour of this pool (any currency, only ratios matter): capacity is "
        "added where a token/s is cheapest, and removed where it is dearest.",
    )
    min_replicas: int = Field(default=0, ge=0, le=10_000, description="Fewest replicas of this pool.")
    max_replicas: int = Field(default=16, ge=0, le=10_000, description="Most replicas of this pool.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> VariantSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("variant minReplicas must be less than or equal to its maxReplicas")
        return self


class RoleSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.minReplicas <= self.maxReplicas",
                "minReplicas must be less than or equal to maxReplicas",
            ),
            (
                "has(self.scaleTargetRef) != has(self.variants)",
                "give either scaleTargetRef or variants, not both",
            ),
            (
                "!has(self.variants) || self.variants.all(a, self.variants.exists_one(b, b.name == a.name))",
                "variant names must be distinct within a role",
            ),
        )
    )

    scale_target_ref: ScaleTargetRef | None = Field(
        default=None, description="The workload of this role, scaled through /scale (or give variants)."
    )
    variants: list[VariantSpec] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_VARIANTS,
        description="Several pools of this role on different GPU types, instead of scaleTargetRef: the policy "
        "sizes the role in tokens/s (minReplicas/maxReplicas then count instances of spec.profile) and the "
        "capacity goes where it is cheapest, within each pool's bounds and free GPUs.",
    )
    min_replicas: int = Field(
        default=1,
        ge=1,
        le=10_000,
        description="Fewest replicas. At least 1: pods publish the metrics that wake scaling, so 0 would "
        "never scale out again.",
    )
    max_replicas: int = Field(default=16, ge=1, le=10_000, description="Most replicas.")

    def to_core(self) -> core_settings.RoleBounds:
        return core_settings.RoleBounds(min_replicas=self.min_replicas, max_replicas=self.max_replicas)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> RoleSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("minReplicas must be less than or equal to maxReplicas")
        if (self.scale_target_ref is None) == (self.variants is None):
            raise ValueError("give either scaleTargetRef or variants, not both")
        names = [v.name for v in self.variants or ()]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be distinct within a role")
        return self


class MetricsSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.source) || self.source != 'prometheus' || has(self.prometheusURL)",
                "source prometheus needs prometheusURL, e.g. http://prometheus.monitoring:9090",
            ),
            (
                "!has(self.windowSeconds) || !has(self.scrapeIntervalSeconds) || "
                "self.windowSeconds >= self.scrapeIntervalSeconds",
                "windowSeconds must be at least scrapeIntervalSeconds",
            ),
        )
    )

    source: MetricsSource = Field(
        default=MetricsSource.PODS,
        description="Where metrics come from: scrape each pod's endpoint directly (pods), or query an "
        "existing Prometheus (prometheus).",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Pod port of the engine's /metrics (vLLM: 8000).")
    path: str = Field(default="/metrics", pattern=r"^/", description="HTTP path of the metrics endpoint.")
    scrape_interval_seconds: float = Field(
        default=1.0,
        ge=0.1,
        le=300,
        description="Seconds between ticks: scrape, decide, act. TokenScale reacts within one tick; 1 s.",
    )
    window_seconds: float = Field(
        default=10.0,
        ge=0.1,
        le=3600,
        description="Sliding window over which counter rates are computed (TokenScale's reimplementation: 10 s).",
    )
    prometheus_url: str | None = Field(
        default=None,
        alias="prometheusURL",
        pattern=r"^https?://",
        description="Base URL of the Prometheus HTTP API, for source prometheus.",
    )

    @model_validator(mode="after")
    def _source_and_window(self) -> MetricsSpec:
        if self.source == MetricsSource.PROMETHEUS and self.prometheus_url is None:
            raise ValueError("source prometheus needs prometheusURL, e.g. http://prometheus.monitoring:9090")
        if self.window_seconds < self.scrape_interval_seconds:
            raise ValueError("windowSeconds must be at least scrapeIntervalSeconds")
        return self


class TTFTTier(_Model):
    """A TTFT objective for requests shorter than maxInputTokens."""

    max_input_tokens: int = Field(
        ge=1, description="Requests with fewer input tokens than this fall in the tier (first match wins)."
    )
    ttft_seconds: float = Field(gt=0, le=600, description="Time-to-first-token objective of the tier.")


def _default_ttft_tiers() -> list[TTFTTier]:
    # TokenScale's tiers: < 256 tokens 250 ms, < 1024 400 ms, < 8192 2 s (reference/algorithms.md §4.1).
    return [
        TTFTTier(max_input_tokens=256, ttft_seconds=0.25),
        TTFTTier(max_input_tokens=1024, ttft_seconds=0.4),
        TTFTTier(max_input_tokens=8192, ttft_seconds=2.0),
    ]


class SLOSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.ttftTiers) || (self.ttftTiers.map(t, t.maxInputTokens).isSorted() && "
                "self.ttftTiers.all(a, self.ttftTiers.exists_one(b, b.maxInputTokens == a.maxInputTokens)))",
                "ttftTiers must be sorted by strictly increasing maxInputTokens",
            ),
        )
    )

    ttft_tiers: list[TTFTTier] = Field(
        default_factory=_default_ttft_tiers,
        # pydantic leaves a default_factory out of the JSON schema; the CRD needs the value so that the API
        # server stores the same tiers the models assume.
        json_schema_extra={"default": [tier.model_dump(mode="json", by_alias=True) for tier in _default_ttft_tiers()]},
        min_length=1,
        max_length=MAX_TTFT_TIERS,
        description="TTFT objective by input length; longer inputs than the last tier use the last tier. "
        "Default: TokenScale's <256 tokens 0.25 s, <1024 0.4 s, <8192 2 s.",
    )
    tpot_seconds: float = Field(
        default=0.1, gt=0, le=60, description="Time-per-output-token objective (TokenScale: 100 ms)."
    )

    def to_core(self) -> core_settings.SLO:
        return core_settings.SLO(
            ttft_tiers=tuple((t.max_input_tokens, t.ttft_seconds) for t in self.ttft_tiers),
            tpot_seconds=self.tpot_seconds,
        )

    @model_validator(mode="after")
    def _tiers_increase(self) -> SLOSpec:
        bounds = [t.max_input_tokens for t in self.ttft_tiers]
        if any(b <= a for a, b in itertools.pairwise(bounds)):
            raise ValueError("ttftTiers must be sorted by strictly increasing maxInputTokens")
        return self


class TokenScalePolicySpec(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.activateRatio) || !has(self.deactivateRatio) || self.deactivateRatio <= self.activateRatio",
                "deactivateRatio must be less than or equal to activateRatio",
            )
        )
    )

    convertible_decoders_max: int = Field(
        default=2,
        ge=0,
        le=1024,
        description="Most decode pods that may take prefill work at once during a burst; 0 turns "
        "convertible decoders off.",
    )
    activate_ratio: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="High-water mark: convert when arriving prompt tokens/s exceed this times the Ready "
        "prefill capacity.",
    )
    deactivate_ratio: float = Field(
        default=0.9,
        gt=0,
        le=10,
        description="Low-water mark: restore when arriving prompt tokens/s stay below this times the Ready "
        "prefill capacity (without converted pods) for restoreAfterTicks ticks; at most activateRatio.",
    )
    restore_after_ticks: int = Field(
        default=2, ge=1, le=100, description="Ticks the low-water mark must hold before restoring."
    )
    restore_stabilization_seconds: float = Field(
        default=30,
        ge=0,
        le=86_400,
        description="A converted pod is restored on the low-water mark only once this many seconds have passed "
        "since the later of its conversion and the last tick above the high-water mark, so each pod goes through "
        "at most one convert/restore cycle in this time; 0 restores as soon as the low-water mark has held.",
    )
    max_conversion_seconds: float = Field(
        default=300,
        gt=0,
        le=86_400,
        description="A pod is never converted for longer than this; the operator restores it afterwards.",
    )
    prefill_chunk_tokens: int | None = Field(
        default=None,
        ge=16,
        le=65_536,
        description="Most prefill tokens per decode step on a converted decoder (restricted chunked prefill); "
        "unset: as many as keep the mixed step within tpotHeadroomRatio of the TPOT objective, up to the "
        "engine's token budget.",
    )
    tpot_headroom_ratio: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="A converted decoder's mixed step (its decode step plus the prefill chunk) stays within this "
        "share of the TPOT objective, so decode keeps its objective; a decoder converts only if that leaves room "
        "for a chunk of at least 16 tokens.",
    )
    conversion_kv_reserve_ratio: float = Field(
        default=0.15,
        ge=0,
        lt=1,
        description="Share of a converted decoder's KV cache held for burst prefills; decode sizing adds "
        "that much decoder capacity back.",
    )
    backlog_drain_seconds: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        description="New prefillers are sized to drain the waiting prompt tokens within this many seconds; unset: "
        "the cold start plus the tightest TTFT objective (a prefiller started now serves after its cold start). "
        "Convertible decoders always take the backlog against the tightest objective.",
    )
    demand_quantile: float = Field(
        default=0.99,
        gt=0,
        le=1,
        description="Prefillers are sized for this quantile of the prefill demand over demandWindowSeconds.",
    )
    demand_window_seconds: float = Field(
        default=600,
        ge=0,
        le=86_400,
        description="Window of the demand quantile; 0 sizes for the current demand alone.",
    )

    def to_core(self) -> core_settings.TokenScaleSettings:
        return core_settings.TokenScaleSettings(**self.model_dump())

    @model_validator(mode="after")
    def _hysteresis(self) -> TokenScalePolicySpec:
        if self.deactivate_ratio > self.activate_ratio:
            raise ValueError("deactivateRatio must be less than or equal to activateRatio")
        return self


class HeteroScalePolicySpec(_Model):
    target_decode_tokens_per_second: float | None = Field(
        default=None,
        gt=0,
        description="Per-decode-instance decode TPS target from a pressure test (HeteroScale's T_D); unset "
        "derives it from the profile: the generation tokens/s one decoder sustains at the TPOT objective.",
    )
    prefill_to_decode_ratio: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Fixed P:D ratio; unset derives it from the profile's velocities.",
    )
    tolerance_up: float = Field(default=0.10, ge=0, le=1, description="Scale out when demand exceeds 1+this.")
    tolerance_down: float = Field(default=0.15, ge=0, le=1, description="Scale in when demand is below 1-this.")
    scale_out_cooldown_seconds: float = Field(default=30, ge=0, description="Least time between scale-outs.")
    scale_in_cooldown_seconds: float = Field(default=300, ge=0, description="Least time between scale-ins.")
    soft_scale_in_seconds: float = Field(
        default=60,
        ge=0,
        description="Withdrawn pods keep running this long before they are removed (soft scale-in).",
    )
    moderate_latency_ratio: float = Field(
        default=1.0, gt=0, description="Latency p90 above this times its objective is a moderate breach."
    )
    severe_latency_ratio: float = Field(
        default=1.2, gt=0, description="Latency p90 above this times its objective is a severe breach."
    )
    moderate_step_ratio: float = Field(
        default=0.10, ge=0, le=10, description="A moderate breach adds this share of replicas (HeteroScale: 10%)."
    )
    severe_step_ratio: float = Field(
        default=0.20, ge=0, le=10, description="A severe breach adds this share of replicas (HeteroScale: 20%)."
    )
    scale_in_damping: float = Field(
        default=0.5, gt=0, le=1, description="A scale-in closes this share of the gap to the target."
    )

    def to_core(self) -> core_settings.HeteroScaleSettings:
        return core_settings.HeteroScaleSettings(**self.model_dump())


class HPAPolicySpec(_Model):
    metric: Literal["kv_cache_usage", "requests_running"] = Field(
        default="kv_cache_usage", description="Per-pod metric averaged over each role."
    )
    target: float = Field(default=0.7, gt=0, description="Target per-pod value (KV usage 0.7 = 70%).")
    tolerance: float = Field(default=0.1, ge=0, le=1, description="Dead band around the target (HPA: 10%).")
    scale_down_stabilization_seconds: float = Field(
        default=300,
        ge=0,
        le=3600,
        description="HPA's own scale-down stabilisation (its default 300 s), used instead of behavior's.",
    )
    sync_period_seconds: float = Field(
        default=15, gt=0, le=3600, description="Seconds between HPA evaluations (kube-controller-manager: 15 s)."
    )

    def to_core(self) -> core_settings.HPASettings:
        return core_settings.HPASettings(**self.model_dump())


class KPAPolicySpec(_Model):
    target_concurrency: float = Field(default=10, gt=0, description="Target running requests per pod.")
    stable_window_seconds: float = Field(default=180, gt=0, le=3600, description="AIBrix v0.5 default: 180 s.")
    panic_window_seconds: float = Field(default=60, gt=0, le=3600, description="AIBrix v0.5 default: 60 s.")
    panic_threshold: float = Field(default=2.0, gt=1, description="Panic when panic/stable exceeds this.")
    max_scale_up_rate: float = Field(default=2.0, gt=1, description="At most this times Ready pods per step.")
    max_scale_down_rate: float = Field(default=2.0, gt=1, description="At least Ready pods over this per step.")
    up_tolerance: float = Field(default=0.1, ge=0, le=1, description="AIBrix v0.5 default: 0.1.")
    down_tolerance: float = Field(default=0.1, ge=0, le=1, description="AIBrix v0.5 default: 0.1.")
    scale_down_delay_seconds: float = Field(
        default=300,
        ge=0,
        le=3600,
        description="Scale in only to the highest recommendation over this window (AIBrix v0.5 cooldown: 300 s); "
        "used instead of behavior's.",
    )
    decode_metric: Literal["kv_cache_usage", "requests_running"] = Field(
        default="kv_cache_usage",
        description="Decode's per-pod metric (prefill uses concurrency): KV usage, as TokenScale's AIBrix baseline.",
    )
    decode_target: float = Field(default=0.7, gt=0, description="Decode's per-pod target (KV usage 0.7 = 70%).")

    def to_core(self) -> core_settings.KPASettings:
        return core_settings.KPASettings(**self.model_dump())


class APAPolicySpec(_Model):
    metric: Literal["kv_cache_usage", "requests_running"] = Field(
        default="kv_cache_usage", description="Per-pod metric averaged over each role."
    )
    target: float = Field(default=0.7, gt=0, description="Target per-pod value.")
    up_tolerance: float = Field(default=0.1, ge=0, le=1, description="AIBrix v0.5 default: 0.1.")
    down_tolerance: float = Field(default=0.1, ge=0, le=1, description="AIBrix v0.5 default: 0.1.")
    max_scale_up_rate: float = Field(default=2.0, gt=1, description="At most this times current per step.")
    max_scale_down_rate: float = Field(default=2.0, gt=1, description="At least current over this per step.")
    window_seconds: float = Field(
        default=180, gt=0, le=3600, description="Averaging window of the metric (AIBrix v0.5 stable window)."
    )

    def to_core(self) -> core_settings.APASettings:
        return core_settings.APASettings(**self.model_dump())


class DistServePolicySpec(_Model):
    prefill_goodput_requests_per_second: float = Field(
        gt=0, description="Requests/s one prefill instance serves within SLO (from the simulator)."
    )
    decode_goodput_requests_per_second: float = Field(
        gt=0, description="Requests/s one decode instance serves within SLO (from the simulator)."
    )
    replan_interval_seconds: float = Field(default=30, gt=0, description="Seconds between re-plans.")
    rate_window_seconds: float = Field(default=60, gt=0, description="Request-rate window of a re-plan.")

    def to_core(self) -> core_settings.DistServeSettings:
        return core_settings.DistServeSettings(**self.model_dump())


class StaticPolicySpec(_Model):
    prefill_replicas: int = Field(ge=1, description="Fixed prefill replicas.")
    decode_replicas: int = Field(ge=1, description="Fixed decode replicas.")

    def to_core(self) -> core_settings.StaticSettings:
        return core_settings.StaticSettings(**self.model_dump())


class PolicySpec(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            ("!has(self.name) || self.name != 'static' || has(self.static)", "policy static needs spec.policy.static"),
            (
                "!has(self.name) || self.name != 'distserve' || has(self.distserve)",
                "policy distserve needs spec.policy.distserve",
            ),
        )
    )

    name: PolicyName = Field(
        default=PolicyName.TOKENSCALE,
        description="Scaling policy: tokenscale, heteroscale, hpa, kpa, apa, distserve or static; the ablation "
        "variants tokenscale-prefill-only and tokenscale-no-conversion.",
    )
    tokenscale: TokenScalePolicySpec = Field(default_factory=TokenScalePolicySpec, description="Token Velocity.")
    heteroscale: HeteroScalePolicySpec = Field(
        default_factory=HeteroScalePolicySpec, description="HeteroScale coordinated P/D scaling."
    )
    hpa: HPAPolicySpec = Field(default_factory=HPAPolicySpec, description="Kubernetes HPA rule per role.")
    kpa: KPAPolicySpec = Field(default_factory=KPAPolicySpec, description="AIBrix KPA per role.")
    apa: APAPolicySpec = Field(default_factory=APAPolicySpec, description="AIBrix APA per role.")
    distserve: DistServePolicySpec | None = Field(default=None, description="DistServe-style RPS planning.")
    static: StaticPolicySpec | None = Field(default=None, description="Fixed replica counts.")

    @model_validator(mode="after")
    def _settings_present(self) -> PolicySpec:
        for name in (PolicyName.STATIC, PolicyName.DISTSERVE):
            if self.name == name and getattr(self, name.value) is None:
                raise ValueError(f"policy {name.value} needs spec.policy.{name.value}")
        return self


_ROLE_PRESETS: dict[RoleLabelPreset, tuple[str, str, str, str]] = {
    RoleLabelPreset.TOKENSCALE: ("tokenscale.io/role", "prefill", "decode", "converted"),
    # llm-d's router sends prefill work to `prefill` pods; `prefill-decode` pods take both.
    RoleLabelPreset.LLM_D: ("llm-d.ai/role", "prefill", "decode", "prefill-decode"),
}


def _resolved_role_value_cel(field: str, position: int) -> str:
    """CEL for a role value after the preset applies, as `RoleLabelSpec.resolved` computes it: the field if set,
    else the preset's value at ``position`` of `_ROLE_PRESETS` (custom has none: '')."""
    by_preset = ", ".join(
        f"'{preset.value}': '{_ROLE_PRESETS.get(preset, ('', '', '', ''))[position]}'" for preset in RoleLabelPreset
    )
    preset = f"(has(self.preset) ? self.preset : '{RoleLabelPreset.TOKENSCALE.value}')"
    return f"(has(self.{field}) ? self.{field} : {{{by_preset}}}[{preset}])"


class RoleLabelSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.preset) || self.preset != 'custom' || "
                "(has(self.key) && has(self.prefill) && has(self.decode) && has(self.converted))",
                "preset custom needs key, prefill, decode and converted",
            ),
            (
                "{p} != {d} && {p} != {c} && {d} != {c}".format(
                    p=_resolved_role_value_cel("prefill", 1),
                    d=_resolved_role_value_cel("decode", 2),
                    c=_resolved_role_value_cel("converted", 3),
                ),
                "role label values prefill, decode and converted must be distinct",
            ),
        )
    )

    preset: RoleLabelPreset = Field(
        default=RoleLabelPreset.TOKENSCALE,
        description="tokenscale: tokenscale.io/role = prefill|decode|converted; llm-d: llm-d.ai/role = "
        "prefill|decode|prefill-decode; custom: give every field. A field set here overrides the preset.",
    )
    key: str | None = Field(default=None, min_length=1, max_length=317, description="Label key.")
    prefill: str | None = Field(default=None, min_length=1, max_length=63, description="Prefill value.")
    decode: str | None = Field(default=None, min_length=1, max_length=63, description="Decode value.")
    converted: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Value of a decode pod that also takes prefill.",
    )

    def resolved(self) -> tuple[str, str, str, str]:
        """(key, prefill, decode, converted) after applying the preset and overrides."""
        base = _ROLE_PRESETS.get(self.preset, ("", "", "", ""))
        key = self.key or base[0]
        values = (self.prefill or base[1], self.decode or base[2], self.converted or base[3])
        return key, *values

    @model_validator(mode="after")
    def _complete_and_distinct(self) -> RoleLabelSpec:
        key, prefill, decode, converted = self.resolved()
        if not all((key, prefill, decode, converted)):
            raise ValueError("preset custom needs key, prefill, decode and converted")
        if len({prefill, decode, converted}) != 3:
            raise ValueError("role label values prefill, decode and converted must be distinct")
        return self


class BehaviorSpec(_Model):
    max_scale_up_step: int = Field(
        default=8, ge=1, le=10_000, description="Most replicas added to one role in one tick."
    )
    max_scale_down_step: int = Field(
        default=2, ge=1, le=10_000, description="Most replicas removed from one role in one tick."
    )
    scale_in_stabilization_seconds: float = Field(
        default=60,
        ge=0,
        le=3600,
        description="Scale in only to the highest recommendation seen over this window (as HPA does); "
        "0 scales in at once as the TokenScale paper does.",
    )

    def to_core(self) -> core_settings.Behavior:
        return core_settings.Behavior(**self.model_dump())


class ProfileSpec(_Model):
    name: str = Field(
        default="llama-3.1-8b-h100",
        min_length=1,
        description="Performance profile (velocities of one model on one GPU type); a bundled name such as "
        "llama-3.1-8b-h100, llama-3.1-8b-a100 or qwen-2.5-32b-tp4-a100.",
    )
    cold_start_seconds: float | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Seconds from scale-out to a serving instance in this cluster (node, image pull, weight load, "
        "engine start); unset uses the profile's. A cold start belongs to the deployment more than to the model: "
        "TokenScale never scales in for less than this.",
    )

    def apply(self, profile: core_profile.Profile) -> core_profile.Profile:
        """``profile`` with this spec's overrides."""
        if self.cold_start_seconds is None:
            return profile
        perf = dataclasses.replace(profile.perf, cold_start_seconds=self.cold_start_seconds)
        return dataclasses.replace(profile, perf=perf)


class SubgroupPriorityName(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class PlacementSpec(_Model):
    """Deployment groups pinned to network domains (HeteroScale's topology-aware placement)."""

    domain_label: str = Field(
        min_length=1,
        max_length=317,
        description="Node label whose value names a network domain, e.g. topology.tokenscale.io/s2-switch (an S2 "
        "switch) or topology.kubernetes.io/zone. Each deployment group's pods select one value, so prefill and "
        "decode of a group never run in different domains.",
    )
    max_subgroup_priority: SubgroupPriorityName = Field(
        default=SubgroupPriorityName.HIGH,
        description="The affinity rule: the scarcest RDMA subgroup the service may use, low (one GPU type under "
        "the S2), medium (mixed under the S2) or high (mixed under one S1). Groups go to the lowest priority "
        "with room first.",
    )
    priority_label: str = Field(
        default=labels.RDMA_SUBGROUP_PRIORITY_LABEL,
        min_length=1,
        max_length=317,
        description="Node label giving a domain's subgroup priority (low, medium, high); a domain without it is "
        "low with one GPU type and medium with several.",
    )
    gpu_product_label: str = Field(
        default=labels.GPU_PRODUCT_LABEL,
        min_length=1,
        max_length=317,
        description="Node label naming the GPU type (a variant's gpuProduct is its value).",
    )
    gpu_resource: str = Field(
        default=labels.GPU_RESOURCE,
        min_length=1,
        max_length=317,
        description="Extended resource a pod's GPUs are requested as; free GPUs are its allocatable minus "
        "what pods request.",
    )
    ratio_guard: bool = Field(
        default=True,
        description="Withdraw the newest pods of a group's larger role from routing (label "
        "tokenscale.io/ratio-withdrawn=true) while the group's Ready prefill:decode capacity ratio is off the "
        "decided one by more than ratioTolerance, until the other role catches up.",
    )
    ratio_tolerance: float = Field(
        default=0.5,
        ge=0,
        le=100,
        description="Relative tolerance of the ratio guard: the Ready ratio may be up to (1 + this) times above "
        "or below the decided one.",
    )


class DisaggregatedInferenceServiceSpec(_Model):
    engine: Engine = Field(default=Engine.VLLM, description="Serving engine: vllm, sglang or trtllm (Dynamo).")
    model_name: str | None = Field(
        default=None, min_length=1, description="Only series with this model_name label count; unset: all."
    )
    prefill: RoleSpec = Field(description="The prefill workload and its replica bounds.")
    decode: RoleSpec = Field(description="The decode workload and its replica bounds.")
    metrics: MetricsSpec = Field(default_factory=MetricsSpec, description="Where and how often to scrape.")
    slo: SLOSpec = Field(default_factory=SLOSpec, description="Latency objectives.")
    policy: PolicySpec = Field(default_factory=PolicySpec, description="Scaling policy and its settings.")
    profile: ProfileSpec = Field(default_factory=ProfileSpec, description="Performance profile.")
    role_label: RoleLabelSpec = Field(default_factory=RoleLabelSpec, description="Pod role label.")
    behavior: BehaviorSpec = Field(default_factory=BehaviorSpec, description="Scale step limits.")
    placement: PlacementSpec | None = Field(
        default=None,
        description="Deployment groups pinned to network domains; unset: each role's workloads are scaled as "
        "they are, wherever the scheduler puts their pods.",
    )
    dry_run: bool = Field(
        default=False, description="Compute and report decisions (status, events, metrics) but never act."
    )

    def to_core(self, *, profile: core_profile.Profile) -> core_settings.ScalingSettings:
        """The core's settings for this spec with ``profile`` (resolved from ``spec.profile.name`` by the caller,
        e.g. `tokenscale.api.profiles.load_profile`), with the spec's profile overrides applied."""
        policy = self.policy
        return core_settings.ScalingSettings(
            policy=policy.name.value,
            prefill=self.prefill.to_core(),
            decode=self.decode.to_core(),
            behavior=self.behavior.to_core(),
            slo=self.slo.to_core(),
            profile=self.profile.apply(profile),
            window_seconds=self.metrics.window_seconds,
            tick_seconds=self.metrics.scrape_interval_seconds,
            tokenscale=policy.tokenscale.to_core(),
            heteroscale=policy.heteroscale.to_core(),
            hpa=policy.hpa.to_core(),
            kpa=policy.kpa.to_core(),
            apa=policy.apa.to_core(),
            distserve=None if policy.distserve is None else policy.distserve.to_core(),
            static=None if policy.static is None else policy.static.to_core(),
        )


class Condition(_Model):
    type: str = Field(description="Ready, MetricsAvailable, ScalingActive, ScalingLimited or ScalingConflict.")
    status: Literal["True", "False", "Unknown"] = Field(description="Condition status.")
    reason: str = Field(default="", description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str | None = Field(default=None, description="RFC 3339 time of the last change.")
    observed_generation: int | None = Field(default=None, description="Generation the condition is about.")


class RoleStatus(_Model):
    replicas: int = Field(default=0, description="Replicas of the scale target now (its /scale status).")
    ready_replicas: int = Field(default=0, description="Ready pods of the role.")
    desired_replicas: int = Field(default=0, description="Replicas the last decision asked for.")


class VelocityStatus(_Model):
    prefill_tokens_per_second: float = Field(default=0, description="Ready prefill capacity V_P·N.")
    network_tokens_per_second: float = Field(default=0, description="KV transfer capacity V_N·N.")
    decode_tokens_per_second: float = Field(default=0, description="Ready decode capacity.")
    arriving_prompt_tokens_per_second: float = Field(default=0, description="Prompt tokens/s arriving.")
    arriving_decode_tokens_per_second: float = Field(default=0, description="Decode tokens/s arriving.")


class DecisionRecord(_Model):
    time: str = Field(description="RFC 3339 time of the decision, to the millisecond (ticks can be < 1 s apart).")
    action: str = Field(description="scale, convert, restore, hold or none.")
    prefill_replicas: int = Field(description="Prefill replicas decided.")
    decode_replicas: int = Field(description="Decode replicas decided.")
    reason: str = Field(description="Machine-readable reason code.")
    message: str = Field(default="", description="Why, in words.")


class VariantStatus(_Model):
    role: Literal["prefill", "decode"] = Field(description="The role of the variant.")
    name: str = Field(description="The variant's name.")
    replicas: int = Field(default=0, description="Replicas the variant has (all its deployment groups).")
    desired_replicas: int = Field(default=0, description="Replicas the last split asked for.")
    capacity_tokens_per_second: float = Field(default=0, description="Capacity one instance adds, tokens/s.")
    cost_per_hour: float = Field(default=0, description="Cost weight per hour of the desired replicas.")


class GroupStatus(_Model):
    domain: str = Field(description="The network domain of the group.")
    priority: str = Field(default="", description="The domain's subgroup priority.")
    prefill_replicas: int = Field(default=0, description="Prefill replicas of the group.")
    decode_replicas: int = Field(default=0, description="Decode replicas of the group.")
    ready_prefill: int = Field(default=0, description="Ready prefill pods.")
    ready_decode: int = Field(default=0, description="Ready decode pods.")
    withdrawn: int = Field(default=0, description="Pods the ratio guard withdrew from routing.")


class PlacementRecord(_Model):
    time: str = Field(description="RFC 3339 time of the placement.")
    role: Literal["prefill", "decode"] = Field(description="The role placed.")
    variant: str = Field(description="The variant placed.")
    domain: str = Field(default="", description="The domain; empty when nothing could be placed.")
    delta: int = Field(description="Pods added (positive) or removed (negative).")
    reason: str = Field(description="Machine-readable reason code.")
    message: str = Field(default="", description="Why, in words.")


class DisaggregatedInferenceServiceStatus(_Model):
    observed_generation: int | None = Field(default=None, description="Generation last reconciled.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16, description="Conditions.")
    prefill: RoleStatus = Field(default_factory=RoleStatus, description="Prefill replicas.")
    decode: RoleStatus = Field(default_factory=RoleStatus, description="Decode replicas.")
    converted_pods: list[str] = Field(
        default_factory=list,
        max_length=MAX_CONVERTED_PODS,
        description="Decode pods now taking prefill work.",
    )
    converted_replicas: int = Field(default=0, description="Number of converted pods.")
    velocities: VelocityStatus = Field(default_factory=VelocityStatus, description="Last capacities and load.")
    last_decisions: list[DecisionRecord] = Field(
        default_factory=list,
        max_length=MAX_DECISION_HISTORY,
        description="The last decisions with their reasons, newest last.",
    )
    variants: list[VariantStatus] | None = Field(
        default=None, max_length=2 * MAX_VARIANTS, description="Per variant (pool): replicas and capacity."
    )
    groups: list[GroupStatus] | None = Field(
        default=None, max_length=MAX_GROUPS, description="Deployment groups, one per network domain in use."
    )
    last_placements: list[PlacementRecord] | None = Field(
        default=None,
        max_length=MAX_PLACEMENT_HISTORY,
        description="The last placements (where pods were added or removed, and why), newest last.",
    )


class DisaggregatedInferenceService(_Model):
    """Autoscales a prefill and a decode workload of one disaggregated LLM service together."""

    api_version: Literal["tokenscale.io/v1alpha1"] = Field(default="tokenscale.io/v1alpha1", description="API version.")
    kind: Literal["DisaggregatedInferenceService"] = Field(default="DisaggregatedInferenceService", description="Kind.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: DisaggregatedInferenceServiceSpec
    status: DisaggregatedInferenceServiceStatus | None = None


def parse_spec(spec: dict[str, Any]) -> DisaggregatedInferenceServiceSpec:
    """Validate a resource's ``.spec`` as the API server would; raises `pydantic.ValidationError`."""
    return DisaggregatedInferenceServiceSpec.model_validate(spec)
