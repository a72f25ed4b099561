"""The generated configuration reference documents every field of the spec models, with its default and rules."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from tokenscale.api import crdref, v1alpha1


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside ``X``, ``X | None`` or ``list[X]``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, types.UnionType, typing.Union):
        for argument in typing.get_args(annotation):
            found = _model_of(argument)
            if found is not None:
                return found
    return None


def _paths(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, object]]:
    for name, info in model.model_fields.items():
        alias = info.alias or name
        path = f"{prefix}.{alias}" if prefix else alias
        yield path, info.default
        nested = _model_of(info.annotation)
        if nested is not None:
            # list[X] or list[X] | None
            is_list = typing.get_origin(info.annotation) is list or any(
                typing.get_origin(argument) is list for argument in typing.get_args(info.annotation)
            )
            yield from _paths(nested, f"{path}[]" if is_list else path)


def _row(text: str, path: str) -> str:
    (row,) = [line for line in text.splitlines() if line.startswith(f"| `{path}` ")]
    return row


@pytest.mark.parametrize(
    ("section", "model"),
    [
        pytest.param("spec", v1alpha1.DisaggregatedInferenceServiceSpec, id="spec"),
        pytest.param("status", v1alpha1.DisaggregatedInferenceServiceStatus, id="status"),
    ],
)
def test_every_field_of_the_models_has_a_row(section: str, model: type[BaseModel]) -> None:
    text = crdref.crd_reference_markdown()
    body = text.split(f"## `{section}`", 1)[1].split("\n## ", 1)[0]
    for path, _ in _paths(model, ""):
        assert _row(body, path)


@pytest.mark.parametrize(
    ("path", "default"),
    [
        pytest.param("metrics.port", "`8000`", id="integer"),
        pytest.param("policy.name", '`"tokenscale"`', id="enum"),
        pytest.param("roleLabel.preset", '`"tokenscale"`', id="preset"),
        pytest.param("dryRun", "`false`", id="boolean"),
    ],
)
def test_rows_show_the_defaults_the_api_server_applies(path: str, default: str) -> None:
    spec = crdref.crd_reference_markdown().split("## `spec`", 1)[1].split("\n## ", 1)[0]
    row = _row(spec, path)
    assert row.split(" | ")[2] == default


def test_cel_rules_are_listed_with_their_messages() -> None:
    text = crdref.crd_reference_markdown()
    assert "`self.minReplicas <= self.maxReplicas`: minReplicas must be less than or equal to maxReplicas" in text
    assert "ttftTiers must be sorted by strictly increasing maxInputTokens" in text


@pytest.mark.parametrize(
    ("path", "constraints"),
    [
        # pydantic gt=0, le=3600: OpenAPI v3.0's minimum 0 with exclusiveMinimum true
        pytest.param("policy.tokenscale.backlogDrainSeconds", "> 0; <= 3600", id="exclusive-minimum"),
        # pydantic ge=0, lt=1
        pytest.param("policy.tokenscale.conversionKvReserveRatio", ">= 0; < 1", id="exclusive-maximum"),
        pytest.param("metrics.port", ">= 1; <= 65535", id="inclusive-bounds"),
    ],
)
def test_rows_state_bounds_as_comparisons(path: str, constraints: str) -> None:
    spec = crdref.crd_reference_markdown().split("## `spec`", 1)[1].split("\n## ", 1)[0]
    assert _row(spec, path).split(" | ")[3] == constraints
