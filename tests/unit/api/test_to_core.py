"""spec.to_core(): every API setting reaches the core, with the same names and defaults."""

from __future__ import annotations

import dataclasses
from typing import Any

import pydantic
import pytest

from tokenscale.api import profiles, v1alpha1
from tokenscale.core import settings as core
from tokenscale.core.policies import registry

PROFILE = profiles.load_profile("llama-3.1-8b-h100")


def _spec(**overrides: Any) -> v1alpha1.DisaggregatedInferenceServiceSpec:
    spec: dict[str, Any] = {
        "prefill": {"scaleTargetRef": {"name": "p"}, "minReplicas": 2, "maxReplicas": 8},
        "decode": {"scaleTargetRef": {"name": "d"}, "minReplicas": 1, "maxReplicas": 12},
    }
    spec.update(overrides)
    return v1alpha1.parse_spec(spec)


@pytest.mark.parametrize(
    ("model", "dataclass"),
    [
        pytest.param(v1alpha1.TokenScalePolicySpec, core.TokenScaleSettings, id="tokenscale"),
        pytest.param(v1alpha1.HeteroScalePolicySpec, core.HeteroScaleSettings, id="heteroscale"),
        pytest.param(v1alpha1.HPAPolicySpec, core.HPASettings, id="hpa"),
        pytest.param(v1alpha1.KPAPolicySpec, core.KPASettings, id="kpa"),
        pytest.param(v1alpha1.APAPolicySpec, core.APASettings, id="apa"),
        pytest.param(v1alpha1.DistServePolicySpec, core.DistServeSettings, id="distserve"),
        pytest.param(v1alpha1.StaticPolicySpec, core.StaticSettings, id="static"),
        pytest.param(v1alpha1.BehaviorSpec, core.Behavior, id="behavior"),
    ],
)
def test_policy_settings_mirror_the_api_with_the_same_defaults(
    model: type[pydantic.BaseModel], dataclass: type[Any]
) -> None:
    fields = {f.name: f for f in dataclasses.fields(dataclass)}
    assert set(model.model_fields) == set(fields)
    for name, info in model.model_fields.items():
        if not info.is_required():
            assert info.default == fields[name].default, name


def test_defaults_convert() -> None:
    got = _spec().to_core(profile=PROFILE)
    assert got == core.ScalingSettings(
        policy="tokenscale",
        prefill=core.RoleBounds(2, 8),
        decode=core.RoleBounds(1, 12),
        behavior=core.Behavior(),
        slo=core.SLO(),
        profile=PROFILE,
    )


def test_every_section_converts() -> None:
    got = _spec(
        metrics={"scrapeIntervalSeconds": 2, "windowSeconds": 30},
        slo={"ttftTiers": [{"maxInputTokens": 512, "ttftSeconds": 0.3}], "tpotSeconds": 0.05},
        behavior={"maxScaleUpStep": 3, "maxScaleDownStep": 1, "scaleInStabilizationSeconds": 0},
        policy={
            "name": "distserve",
            "tokenscale": {"convertibleDecodersMax": 4, "tpotHeadroomRatio": 0.7},
            "heteroscale": {"targetDecodeTokensPerSecond": 5000, "prefillToDecodeRatio": 0.5},
            "hpa": {"target": 0.8},
            "kpa": {"targetConcurrency": 20, "decodeTarget": 0.6},
            "apa": {"windowSeconds": 30},
            "distserve": {"prefillGoodputRequestsPerSecond": 3, "decodeGoodputRequestsPerSecond": 9},
            "static": {"prefillReplicas": 2, "decodeReplicas": 3},
        },
    ).to_core(profile=PROFILE)
    assert (got.policy, got.tick_seconds, got.window_seconds) == ("distserve", 2.0, 30.0)
    assert got.slo == core.SLO(ttft_tiers=((512, 0.3),), tpot_seconds=0.05)
    assert got.behavior == core.Behavior(3, 1, 0.0)
    assert (got.tokenscale.convertible_decoders_max, got.tokenscale.tpot_headroom_ratio) == (4, 0.7)
    assert (got.heteroscale.target_decode_tokens_per_second, got.heteroscale.prefill_to_decode_ratio) == (5000, 0.5)
    assert (got.hpa.target, got.kpa.target_concurrency, got.kpa.decode_target, got.apa.window_seconds) == (
        0.8,
        20,
        0.6,
        30,
    )
    assert got.distserve == core.DistServeSettings(3, 9)
    assert got.static == core.StaticSettings(2, 3)


def test_every_api_policy_name_is_registered() -> None:
    assert {name.value for name in v1alpha1.PolicyName} == set(registry.policy_names())


@pytest.mark.parametrize(
    ("profile_spec", "cold_start_seconds"),
    [
        pytest.param({"name": "llama-3.1-8b-h100"}, 60.0, id="unset-keeps-the-profiles"),
        pytest.param({"name": "llama-3.1-8b-h100", "coldStartSeconds": 5}, 5.0, id="override-replaces-it"),
        pytest.param({"name": "llama-3.1-8b-h100", "coldStartSeconds": 0}, 0.0, id="zero-is-an-override-too"),
    ],
)
def test_profile_cold_start_override_reaches_the_core(profile_spec: dict[str, Any], cold_start_seconds: float) -> None:
    spec = v1alpha1.parse_spec(
        {
            "prefill": {"scaleTargetRef": {"name": "p"}},
            "decode": {"scaleTargetRef": {"name": "d"}},
            "profile": profile_spec,
        }
    )
    bundled = profiles.load_profile("llama-3.1-8b-h100")
    settings = spec.to_core(profile=bundled)
    assert settings.profile.perf.cold_start_seconds == cold_start_seconds
    # Only the cold start changes: velocities and the rest of the service-time model are the profile's.
    assert settings.profile.velocities == bundled.velocities
    assert dataclasses.replace(settings.profile.perf, cold_start_seconds=60.0) == bundled.perf
