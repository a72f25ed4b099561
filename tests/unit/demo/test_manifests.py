"""The demo's example objects: Deployments the operator can convert without orphaning pods, and a valid spec."""

from __future__ import annotations

import pytest

from tokenscale.api import v1alpha1
from tokenscale.demo import manifests
from tokenscale.devcluster import nodes


@pytest.mark.parametrize(
    ("cold_start", "annotation"),
    [pytest.param(15.0, "15s", id="whole"), pytest.param(60 / 7, "8.571s", id="fractional")],
)
def test_deployment_pods_carry_role_gpu_and_cold_start_but_select_by_app(cold_start: float, annotation: str) -> None:
    body = manifests.deployment(
        name="llama-decode", role_value="decode", replicas=2, cold_start_seconds=cold_start, metrics_port=9100
    )
    template = body["spec"]["template"]
    assert body["spec"]["selector"] == {"matchLabels": {"app": "llama-decode"}}  # no role label: flips keep the pod
    assert template["metadata"]["labels"] == {"app": "llama-decode", "tokenscale.io/role": "decode"}
    assert template["metadata"]["annotations"] == {nodes.COLD_START_DELAY_ANNOTATION: annotation}
    container = template["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert container["ports"][0]["containerPort"] == 9100


@pytest.mark.parametrize("policy", [p.value for p in v1alpha1.PolicyName if p.value not in {"distserve", "static"}])
def test_the_service_spec_is_valid_and_sped_up_for_every_policy_it_supports(policy: str) -> None:
    spec = manifests.service_spec(
        prefill="p", decode="d", profile="llama-3.1-8b-h100", policy=policy, speedup=4.0, metrics_port=9100
    )
    parsed = v1alpha1.parse_spec(spec)
    assert parsed.policy.name.value == policy
    assert parsed.metrics.scrape_interval_seconds == pytest.approx(0.25)
    assert parsed.slo.tpot_seconds == pytest.approx(0.025)
    assert (parsed.decode.min_replicas, parsed.prefill.max_replicas) == (2, 8)


@pytest.mark.parametrize("policy", ["distserve", "static"])
def test_policies_that_need_settings_the_demo_lacks_are_refused(policy: str) -> None:
    with pytest.raises(ValueError, match=policy):
        manifests.service_spec(
            prefill="p", decode="d", profile="llama-3.1-8b-h100", policy=policy, speedup=4.0, metrics_port=9100
        )
