"""The generated CRD on a real API server: bad resources are refused with a message that says what to fix, and
a good one is stored with the same defaults the Python models fill in."""

from __future__ import annotations

import copy
import json
from typing import Any

import pydantic
import pytest

from tokenscale.api import crdgen, v1alpha1
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

_NAME = "llama"
_MINIMAL: dict[str, Any] = {
    "apiVersion": v1alpha1.API_VERSION,
    "kind": v1alpha1.KIND,
    "metadata": {"name": _NAME},
    "spec": {
        "prefill": {"scaleTargetRef": {"name": "llama-prefill"}},
        "decode": {"scaleTargetRef": {"name": "llama-decode"}},
    },
}


def _with(**changes: Any) -> dict[str, Any]:
    """`_MINIMAL` with ``changes`` set; a key is a dotted path under ``spec`` with ``__`` for the dots."""
    resource = copy.deepcopy(_MINIMAL)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = resource["spec"]
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return resource


_BAD = [
    pytest.param(
        _with(prefill__minReplicas=5, prefill__maxReplicas=2),
        "minReplicas must be less than or equal to maxReplicas",
        id="min-above-max",
    ),
    pytest.param(
        _with(decode__minReplicas=0),
        "spec.decode.minReplicas in body should be greater than or equal to 1",
        id="min-replicas-zero",
    ),
    pytest.param(_with(policy__name="magic"), 'Unsupported value: "magic"', id="unknown-policy-name"),
    pytest.param(_with(policy__name="static"), "policy static needs spec.policy.static", id="static-without-counts"),
    pytest.param(
        _with(policy__name="static", policy__static={"prefillReplicas": 2}),
        "spec.policy.static.decodeReplicas: Required value",
        id="static-without-decode-count",
    ),
    pytest.param(
        _with(
            slo__ttftTiers=[{"maxInputTokens": 1024, "ttftSeconds": 0.4}, {"maxInputTokens": 256, "ttftSeconds": 0.25}]
        ),
        "ttftTiers must be sorted by strictly increasing maxInputTokens",
        id="ttft-tiers-decreasing",
    ),
    pytest.param(
        _with(
            slo__ttftTiers=[{"maxInputTokens": 256, "ttftSeconds": 0.2}, {"maxInputTokens": 256, "ttftSeconds": 0.4}]
        ),
        "ttftTiers must be sorted by strictly increasing maxInputTokens",
        id="ttft-tiers-repeated",
    ),
    pytest.param(
        _with(roleLabel={"prefill": "worker", "decode": "worker", "converted": "both"}),
        "role label values prefill, decode and converted must be distinct",
        id="duplicate-role-values",
    ),
    pytest.param(
        _with(roleLabel={"prefill": "decode"}),
        "role label values prefill, decode and converted must be distinct",
        id="role-value-repeats-the-presets-decode-value",
    ),
    pytest.param(
        _with(roleLabel={"preset": "llm-d", "decode": "prefill-decode"}),
        "role label values prefill, decode and converted must be distinct",
        id="role-value-repeats-llm-d-converted-value",
    ),
    pytest.param(_with(prefill__replicas=3), 'unknown field "spec.prefill.replicas"', id="unknown-field"),
    pytest.param(
        _with(policy__tokenscale={"activateRatio": 1.0, "deactivateRatio": 1.2}),
        "deactivateRatio must be less than or equal to activateRatio",
        id="low-water-above-high-water",
    ),
    pytest.param(
        _with(metrics__source="prometheus"), "source prometheus needs prometheusURL", id="prometheus-without-url"
    ),
    pytest.param(
        _with(prefill__variants=[{"name": "h100", "scaleTargetRef": {"name": "p-h100"}}]),
        "give either scaleTargetRef or variants, not both",
        id="target-and-variants",
    ),
    pytest.param(
        _with(
            prefill={
                "variants": [
                    {"name": "h100", "scaleTargetRef": {"name": "p-h100"}},
                    {"name": "h100", "scaleTargetRef": {"name": "p-h100-b"}},
                ]
            }
        ),
        "variant names must be distinct within a role",
        id="duplicate-variant-names",
    ),
    pytest.param(
        _with(
            prefill={"variants": [{"name": "a", "scaleTargetRef": {"name": "p"}, "minReplicas": 3, "maxReplicas": 1}]}
        ),
        "variant minReplicas must be less than or equal to its maxReplicas",
        id="variant-min-above-max",
    ),
    pytest.param(
        _with(placement={"maxSubgroupPriority": "low"}),
        "spec.placement.domainLabel: Required value",
        id="placement-without-domain-label",
    ),
    pytest.param(
        _with(placement={"domainLabel": "topology.tokenscale.io/s2-switch", "maxSubgroupPriority": "urgent"}),
        'Unsupported value: "urgent"',
        id="unknown-subgroup-priority",
    ),
]


def _apply(kubectl: Kubectl, namespace: str, resource: dict[str, Any]) -> tuple[int, str]:
    done = kubectl.run(
        "apply",
        "--validate=strict",
        f"--namespace={namespace}",
        "-f",
        "-",
        input_text=json.dumps(resource),
        check=False,
    )
    return done.returncode, done.stderr


@pytest.mark.parametrize(("resource", "message"), _BAD)
def test_api_server_refuses_bad_resource_saying_what_to_fix(
    kubectl: Kubectl, namespace: str, resource: dict[str, Any], message: str
) -> None:
    returncode, stderr = _apply(kubectl, namespace, resource)

    assert returncode != 0
    assert message in stderr
    assert kubectl.run("get", v1alpha1.SHORT_NAME, _NAME, f"--namespace={namespace}", check=False).returncode != 0


@pytest.mark.parametrize(("resource", "message"), _BAD)
def test_python_models_refuse_what_the_api_server_refuses(resource: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        v1alpha1.parse_spec(resource["spec"])


def test_api_server_stores_good_resource_with_the_models_defaults(kubectl: Kubectl, namespace: str) -> None:
    returncode, stderr = _apply(kubectl, namespace, _MINIMAL)
    assert returncode == 0, stderr

    stored = kubectl.get_json(v1alpha1.SHORT_NAME, _NAME, f"--namespace={namespace}")
    expected = v1alpha1.parse_spec(_MINIMAL["spec"]).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert stored["spec"]["metrics"]["scrapeIntervalSeconds"] == v1alpha1.MetricsSpec().scrape_interval_seconds
    assert stored["spec"] == expected


@pytest.mark.parametrize(
    "role_label",
    [
        pytest.param({"preset": "llm-d"}, id="llm-d-preset"),
        pytest.param({"converted": "both"}, id="override-one-value"),
        pytest.param(
            {"preset": "custom", "key": "example.com/role", "prefill": "p", "decode": "d", "converted": "pd"},
            id="custom",
        ),
    ],
)
def test_api_server_accepts_distinct_role_values(kubectl: Kubectl, namespace: str, role_label: dict[str, str]) -> None:
    returncode, stderr = _apply(kubectl, namespace, _with(roleLabel=role_label))
    assert returncode == 0, stderr


def test_printer_columns_show_the_policy(kubectl: Kubectl, namespace: str) -> None:
    assert _apply(kubectl, namespace, _with(policy__name="hpa"))[0] == 0

    table = kubectl.run("get", v1alpha1.SHORT_NAME, f"--namespace={namespace}").stdout.splitlines()
    header, row = table[0], table[1]
    columns = crdgen.crd_manifest()["spec"]["versions"][0]["additionalPrinterColumns"]
    # Status columns are blank until the operator writes status, so read the row by the header's offsets.
    policy_at = header.index("POLICY")
    assert header.split() == ["NAME", *(column["name"].upper() for column in columns)]
    assert row.split()[0] == _NAME
    assert row[policy_at:].split()[0] == "hpa"


def test_api_server_stores_variants_and_placement_with_the_models_defaults(kubectl: Kubectl, namespace: str) -> None:
    resource = _with(
        prefill={
            "variants": [
                {"name": "h100", "scaleTargetRef": {"name": "p-h100"}, "gpuProduct": "NVIDIA-H100-80GB-HBM3"},
                {"name": "a100", "scaleTargetRef": {"name": "p-a100"}, "profile": "llama-3.1-8b-a100-80"},
            ]
        },
        placement={"domainLabel": "topology.tokenscale.io/s2-switch"},
    )
    returncode, stderr = _apply(kubectl, namespace, resource)
    assert returncode == 0, stderr

    stored = kubectl.get_json(v1alpha1.SHORT_NAME, _NAME, f"--namespace={namespace}")
    expected = v1alpha1.parse_spec(resource["spec"]).model_dump(mode="json", by_alias=True, exclude_none=True)
    assert stored["spec"]["placement"]["maxSubgroupPriority"] == "high"
    assert stored["spec"]["prefill"]["variants"][1]["costPerGpuHour"] == 1.0
    assert stored["spec"] == expected
