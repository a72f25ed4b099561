"""The chart, the static manifests, the example and the image recipe agree with the package and with each other.

Rendering needs helm and is tested in tests/integration/test_chart.py; these checks read committed files only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import tokenscale
from tokenscale.api import v1alpha1
from tokenscale.cli import chart

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "examples" / "vllm-pd"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _example(kind: str) -> list[dict[str, Any]]:
    found = [d for name in ("prefill.yaml", "decode.yaml", "autoscaler.yaml") for d in _documents(EXAMPLE / name)]
    return [d for d in found if d["kind"] == kind]


def test_chart_versions_follow_the_package() -> None:
    meta = yaml.safe_load((ROOT / chart.CHART_DIR / "Chart.yaml").read_text())
    assert meta["version"] == tokenscale.__version__
    assert meta["appVersion"] == tokenscale.__version__


def test_kustomize_base_lists_the_rendered_files_in_order() -> None:
    kustomization = yaml.safe_load((ROOT / "deploy" / "base" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == list(chart.BASE_FILES)


def test_install_yaml_holds_exactly_the_base_documents() -> None:
    base = [d for name in chart.BASE_FILES for d in _documents(ROOT / "deploy" / "base" / name)]
    assert _documents(ROOT / "deploy" / "install.yaml") == base


def test_example_service_is_a_valid_spec_over_the_example_deployments() -> None:
    (service,) = _example(v1alpha1.KIND)
    spec = v1alpha1.parse_spec(service["spec"])
    names = {d["metadata"]["name"] for d in _example("Deployment")}
    assert spec.prefill.scale_target_ref is not None
    assert spec.decode.scale_target_ref is not None
    assert {spec.prefill.scale_target_ref.name, spec.decode.scale_target_ref.name} == names
    assert spec.role_label.preset is v1alpha1.RoleLabelPreset.LLM_D


@pytest.mark.parametrize("role", [pytest.param("prefill", id="prefill"), pytest.param("decode", id="decode")])
def test_example_pods_carry_the_llm_d_role_outside_the_selector(role: str) -> None:
    (service,) = _example(v1alpha1.KIND)
    key, prefill, decode, _ = v1alpha1.parse_spec(service["spec"]).role_label.resolved()
    assert key == "llm-d.ai/role"
    (deployment,) = [d for d in _example("Deployment") if d["metadata"]["name"].endswith(role)]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert template_labels[key] == {"prefill": prefill, "decode": decode}[role]
    # A converted decoder's role label flips; a selector with it would orphan the pod.
    assert key not in deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("role", [pytest.param("prefill", id="prefill"), pytest.param("decode", id="decode")])
def test_example_engines_serve_with_the_nixl_connector_on_one_gpu(role: str) -> None:
    (service,) = _example(v1alpha1.KIND)
    port = v1alpha1.parse_spec(service["spec"]).metrics.port
    (deployment,) = [d for d in _example("Deployment") if d["metadata"]["name"].endswith(role)]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["vllm", "serve"]
    (config,) = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--kv-transfer-config=")]
    assert json.loads(config) == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
    assert f"--port={port}" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_dockerfile_pins_its_images_and_runs_unprivileged() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    images = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", text, flags=re.MULTILINE))
    assert set(images) == {"PYTHON_IMAGE", "UV_IMAGE"}
    for image in images.values():
        # An exact version tag (x.y.z) or a digest; never a moving tag such as latest or 3.11-slim.
        assert re.search(r":\d+\.\d+\.\d+[-\w.]*$|@sha256:[0-9a-f]{64}$", image), image
    stages = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2, "multi-stage: the runtime holds no build tools"
    final = text.rsplit("\nFROM ", 1)[1]
    (user,) = re.findall(r"^USER (\S+)$", final, flags=re.MULTILINE)
    assert int(user.split(":")[0]) != 0
    values = yaml.safe_load((ROOT / chart.CHART_DIR / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(user.split(":")[0])
