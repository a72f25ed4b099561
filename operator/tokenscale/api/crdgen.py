"""Generate the CustomResourceDefinition from the pydantic models in `tokenscale.api.v1alpha1`.

Kubernetes wants a *structural* OpenAPI v3 schema: every node typed, no ``$ref``, no ``anyOf`` carrying
types, no ``title``. This module walks pydantic's JSON schema and:

- inlines ``$defs``/``$ref``;
- turns ``X | None`` (``anyOf: [X, {type: null}]``) into plain ``X``: an unset optional field is omitted;
- keeps descriptions, defaults, bounds, patterns and enums, drops titles;
- turns a nested object default into ``{}`` so the API server applies the inner defaults itself;
- keeps the models' CEL rules (``x-kubernetes-validations``);
- rewrites JSON Schema's numeric ``exclusiveMinimum: x`` (pydantic's ``gt=x``) as OpenAPI v3.0's
  ``minimum: x`` plus ``exclusiveMinimum: true``, the only form the API server accepts (likewise for maxima);
- drops ``additionalProperties: false``, which a structural schema forbids beside ``properties``: the API
  server prunes unknown fields and kubectl's strict field validation refuses them with their path;
- adds the status subresource, printer columns and the short name.

The output is deterministic, so `make verify` can fail on any drift from the committed file.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tokenscale.api import v1alpha1

__all__ = ["crd_manifest", "crd_yaml", "structural_schema"]

_DROP_KEYS = frozenset({"title", "$defs"})
# JSON Schema 2020-12 exclusive bound -> (OpenAPI v3.0 inclusive bound key, its boolean flag).
_EXCLUSIVE_BOUNDS = {"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, defs)
    any_of = node.get("anyOf")
    if any_of is not None:
        non_null = [branch for branch in any_of if branch.get("type") != "null"]
        if len(non_null) == 1:
            merged = {**non_null[0], **{k: v for k, v in node.items() if k != "anyOf"}}
            if merged.get("default", 0) is None:
                del merged["default"]
            return _resolve(merged, defs)
        raise ValueError(f"cannot make a structural schema of anyOf {any_of!r}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS or (key == "additionalProperties" and value is False):
            continue
        if key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        elif key == "const":
            out["enum"] = [value]
        elif key in _EXCLUSIVE_BOUNDS and not isinstance(value, bool):
            out[_EXCLUSIVE_BOUNDS[key]] = value
            out[key] = True
        else:
            out[key] = _resolve(value, defs)
    if out.get("type") == "object" and isinstance(out.get("default"), dict) and out.get("properties"):
        out["default"] = {}
    required = set(out.get("required", ()))
    for name, prop in out.get("properties", {}).items():
        # An optional object whose fields are all optional defaults to {}, so the server fills its defaults.
        optional_object = name not in required and prop.get("type") == "object" and prop.get("properties")
        if optional_object and not prop.get("required"):
            prop.setdefault("default", {})
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def structural_schema(model: type[Any]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model (aliases, validation mode)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    resolved: dict[str, Any] = _resolve(raw, defs)
    return resolved


def _spec_and_status_schema() -> dict[str, Any]:
    spec = structural_schema(v1alpha1.DisaggregatedInferenceServiceSpec)
    status = structural_schema(v1alpha1.DisaggregatedInferenceServiceStatus)
    # Conditions are a map keyed by type, as every Kubernetes condition list is.
    status["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    status["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    status.pop("default", None)
    return {
        "type": "object",
        "description": v1alpha1.DisaggregatedInferenceService.__doc__,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


_PRINTER_COLUMNS = [
    {"name": "Prefill", "type": "integer", "jsonPath": ".status.prefill.replicas"},
    {"name": "Decode", "type": "integer", "jsonPath": ".status.decode.replicas"},
    {"name": "Converted", "type": "integer", "jsonPath": ".status.convertedReplicas"},
    {"name": "Policy", "type": "string", "jsonPath": ".spec.policy.name"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{v1alpha1.PLURAL}.{v1alpha1.GROUP}"},
        "spec": {
            "group": v1alpha1.GROUP,
            "names": {
                "kind": v1alpha1.KIND,
                "listKind": f"{v1alpha1.KIND}List",
                "plural": v1alpha1.PLURAL,
                "singular": v1alpha1.KIND.lower(),
                "shortNames": [v1alpha1.SHORT_NAME],
                "categories": ["tokenscale"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": _spec_and_status_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _PRINTER_COLUMNS,
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as YAML text, with a header saying it is generated."""
    header = "# Generated by `make crds` from tokenscale.api.v1alpha1; do not edit.\n"
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=120)
