"""The API models accept what the CRD accepts and refuse bad resources with a message saying what to fix."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from tokenscale.api import v1alpha1


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "prefill": {"scaleTargetRef": {"name": "llama-prefill"}, "minReplicas": 1, "maxReplicas": 8},
        "decode": {"scaleTargetRef": {"name": "llama-decode"}, "minReplicas": 1, "maxReplicas": 8},
    }
    spec.update(overrides)
    return spec


def test_minimal_spec_gets_documented_defaults() -> None:
    spec = v1alpha1.parse_spec(_spec())
    assert spec.engine is v1alpha1.Engine.VLLM
    assert spec.policy.name is v1alpha1.PolicyName.TOKENSCALE
    assert spec.metrics.scrape_interval_seconds == 1.0
    assert spec.prefill.scale_target_ref is not None
    assert spec.prefill.scale_target_ref.kind == "Deployment"
    assert spec.prefill.variants is None
    assert spec.placement is None
    assert [(t.max_input_tokens, t.ttft_seconds) for t in spec.slo.ttft_tiers] == [
        (256, 0.25),
        (1024, 0.4),
        (8192, 2.0),
    ]
    assert spec.role_label.resolved() == ("tokenscale.io/role", "prefill", "decode", "converted")
    assert spec.dry_run is False


def test_llm_d_preset_resolves_llm_d_role_label() -> None:
    spec = v1alpha1.parse_spec(_spec(roleLabel={"preset": "llm-d"}))
    assert spec.role_label.resolved() == ("llm-d.ai/role", "prefill", "decode", "prefill-decode")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(
            {"prefill": {"scaleTargetRef": {"name": "p"}, "minReplicas": 5, "maxReplicas": 2}},
            "minReplicas must be less than or equal to maxReplicas",
            id="min-above-max",
        ),
        pytest.param(
            {"decode": {"scaleTargetRef": {"name": "d"}, "minReplicas": 0}},
            "greater than or equal to 1",
            id="min-zero",
        ),
        pytest.param({"policy": {"name": "magic"}}, "tokenscale", id="unknown-policy-lists-valid-ones"),
        pytest.param({"policy": {"name": "static"}}, "policy static needs spec.policy.static", id="static-no-counts"),
        pytest.param(
            {
                "slo": {
                    "ttftTiers": [
                        {"maxInputTokens": 1024, "ttftSeconds": 0.4},
                        {"maxInputTokens": 256, "ttftSeconds": 0.2},
                    ]
                }
            },
            "strictly increasing",
            id="tiers-not-increasing",
        ),
        pytest.param(
            {"roleLabel": {"preset": "tokenscale", "converted": "decode"}},
            "must be distinct",
            id="role-values-not-distinct",
        ),
        pytest.param(
            {"roleLabel": {"preset": "custom", "key": "x/role"}},
            "preset custom needs",
            id="custom-incomplete",
        ),
        pytest.param({"metrics": {"source": "prometheus"}}, "prometheusURL", id="prometheus-without-url"),
        pytest.param(
            {"policy": {"tokenscale": {"activateRatio": 1.0, "deactivateRatio": 1.2}}},
            "deactivateRatio must be less than or equal to activateRatio",
            id="low-water-above-high-water",
        ),
        pytest.param({"replicas": 3}, "Extra inputs are not permitted", id="unknown-field"),
    ],
)
def test_bad_spec_is_refused_with_a_message_that_says_what_to_fix(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        v1alpha1.parse_spec(_spec(**overrides))
