"""The generated CRD is structural, carries the CEL rules, and matches the committed file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tokenscale.api import crdgen
from tokenscale.cli import generate

ROOT = Path(__file__).resolve().parents[3]


def _nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        yield path, schema
        for name, child in schema.get("properties", {}).items():
            yield from _nodes(child, f"{path}.{name}")
        if "items" in schema:
            yield from _nodes(schema["items"], f"{path}[]")


def _schema() -> dict[str, Any]:
    version = crdgen.crd_manifest()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_schema_is_structural_every_node_typed_no_refs() -> None:
    for path, node in _nodes(_schema()):
        assert "type" in node, f"{path} has no type"
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "title", "$defs"):
            assert forbidden not in node, f"{path} has {forbidden}"
        if "properties" in node:
            assert "additionalProperties" not in node, path


def test_exclusive_bounds_use_the_openapi_v3_0_boolean_form() -> None:
    # The API server refuses JSON Schema's numeric exclusiveMinimum ("expected boolean"); gt=0 must become
    # minimum 0 with exclusiveMinimum true.
    bounded = [
        (path, node) for path, node in _nodes(_schema()) if "exclusiveMinimum" in node or "exclusiveMaximum" in node
    ]
    assert bounded, "some fields have exclusive bounds (gt=...)"
    for path, node in bounded:
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if flag in node:
                assert node[flag] is True, path
                assert bound in node, path
    tpot = _schema()["properties"]["spec"]["properties"]["slo"]["properties"]["tpotSeconds"]
    assert (tpot["minimum"], tpot["exclusiveMinimum"]) == (0, True)


def test_every_spec_field_has_a_description() -> None:
    spec = _schema()["properties"]["spec"]
    missing = [path for path, node in _nodes(spec, "spec") if path != "spec" and not node.get("description")]
    assert missing == []


def test_cel_rules_are_carried_into_the_schema() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    rules = [
        v["rule"]
        for node in (spec["prefill"], spec["slo"], spec["policy"], spec["roleLabel"], spec["metrics"])
        for v in node.get("x-kubernetes-validations", [])
    ]
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert any("isSorted()" in rule for rule in rules)
    assert any("has(self.prefill) ? self.prefill" in rule and "self.decode" in rule for rule in rules)
    assert any("has(self.static)" in rule for rule in rules)


def test_nested_defaults_are_empty_objects_so_the_server_fills_inner_defaults() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["metrics"]["default"] == {}
    assert spec["metrics"]["properties"]["scrapeIntervalSeconds"]["default"] == 1.0


def test_status_subresource_printer_columns_and_short_name() -> None:
    manifest = crdgen.crd_manifest()
    version = manifest["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Prefill",
        "Decode",
        "Converted",
        "Policy",
        "Age",
    ]
    assert manifest["spec"]["names"]["shortNames"] == ["dis"]


def test_committed_files_match_their_generators() -> None:
    for relative, produce in generate.ARTEFACTS.items():
        text = produce()
        assert (ROOT / relative).read_text() == text, f"{relative} drifted: run `make crds`"
        if relative.endswith(".yaml"):
            assert list(yaml.safe_load_all(text)), f"{relative} is not YAML"
