"""The kwok Stage files shipped with the package: well-formed, one per lifecycle step, cold start by annotation."""

from __future__ import annotations

from importlib import resources
from typing import Any

import pytest
import yaml

from tokenscale.devcluster import components, nodes


def _stages() -> dict[str, dict[str, Any]]:
    directory = resources.files("tokenscale.devcluster").joinpath("stages")
    loaded = [yaml.safe_load(directory.joinpath(name).read_text()) for name in components.STAGE_FILES]
    return {stage["metadata"]["name"]: stage for stage in loaded}


def test_every_stage_file_is_one_kwok_stage_named_after_its_file() -> None:
    stages = _stages()

    assert [f"{name}.yaml" for name in stages] == list(components.STAGE_FILES)
    assert {stage["apiVersion"] for stage in stages.values()} == {"kwok.x-k8s.io/v1alpha1"}
    assert {stage["kind"] for stage in stages.values()} == {"Stage"}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        pytest.param("Node", {"node-initialize", "node-heartbeat-with-lease"}, id="nodes"),
        pytest.param("Pod", {"pod-start", "pod-ready", "pod-delete"}, id="pods"),
    ],
)
def test_stages_cover_the_lifecycle_of_each_kind(kind: str, expected: set[str]) -> None:
    stages = _stages()
    assert {name for name, stage in stages.items() if stage["spec"]["resourceRef"]["kind"] == kind} == expected


def test_pod_ready_waits_for_the_cold_start_annotation() -> None:
    delay = _stages()["pod-ready"]["spec"]["delay"]

    assert delay["durationMilliseconds"] == 0
    assert nodes.COLD_START_DELAY_ANNOTATION in delay["durationFrom"]["jq"]["expression"]
