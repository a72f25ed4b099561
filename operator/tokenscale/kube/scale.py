"""Reading and writing replicas through the /scale subresource of any scalable kind.

The operator is the single writer of a target's replicas and writes them only through /scale (never by
patching the parent object; ecosystem.md R3). A write carries the resourceVersion it read, so a concurrent
change is a 409, not a silent overwrite; on 409 it reads again and retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tokenscale.kube import discovery, errors, rest

__all__ = ["Scale", "ScaleRef", "read_scale", "write_scale"]

DEFAULT_CONFLICT_RETRIES = 3


@dataclass(frozen=True, slots=True)
class ScaleRef:
    """A scale target: ``apiVersion``, ``kind`` and ``name`` in the custom resource's namespace."""

    api_version: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class Scale:
    """A target's /scale: the replicas asked (spec) and running (status), and the pods' selector."""

    spec_replicas: int
    status_replicas: int
    selector: str
    """Label selector of the target's pods in string form (status.selector); empty when the kind sets none."""
    resource_version: str


def _scale_path(resources: discovery.Discovery, *, namespace: str, ref: ScaleRef) -> str:
    info = resources.resource(api_version=ref.api_version, kind=ref.kind)
    if not info.scalable:
        raise errors.NotScalableError(f"{ref.kind} in {ref.api_version} has no /scale subresource")
    return info.object_path(namespace=namespace, name=ref.name) + "/scale"


def _parse(document: dict[str, Any]) -> Scale:
    spec = document.get("spec") or {}
    status = document.get("status") or {}
    return Scale(
        spec_replicas=int(spec.get("replicas", 0)),
        status_replicas=int(status.get("replicas", 0)),
        selector=str(status.get("selector", "")),
        resource_version=str(document.get("metadata", {}).get("resourceVersion", "")),
    )


def read_scale(api_client: client.ApiClient, resources: discovery.Discovery, *, namespace: str, ref: ScaleRef) -> Scale:
    """The target's /scale now. Raises `errors.NotFoundError` (target or kind missing), `errors.NotScalableError`."""
    path = _scale_path(resources, namespace=namespace, ref=ref)
    return _parse(rest.request_json(api_client, method="GET", path=path))


def write_scale(
    api_client: client.ApiClient,
    resources: discovery.Discovery,
    *,
    namespace: str,
    ref: ScaleRef,
    replicas: int,
    field_manager: str,
    conflict_retries: int = DEFAULT_CONFLICT_RETRIES,
) -> Scale:
    """Set the target's spec replicas to ``replicas`` and return the /scale written.

    Reads the /scale, then replaces it with the resourceVersion read; a 409 (someone wrote in between) reads
    again and retries, at most ``conflict_retries`` times, then raises `errors.ConflictError`. When the spec
    already says ``replicas`` nothing is written.
    """
    path = _scale_path(resources, namespace=namespace, ref=ref)
    for attempt in range(conflict_retries + 1):
        document = rest.request_json(api_client, method="GET", path=path)
        if _parse(document).spec_replicas == replicas:
            return _parse(document)
        document.setdefault("spec", {})["replicas"] = replicas
        try:
            written = rest.request_json(
                api_client, method="PUT", path=path, body=document, query={"fieldManager": field_manager}
            )
        except errors.ConflictError:
            if attempt == conflict_retries:
                raise
            continue
        return _parse(written)
    raise AssertionError("unreachable: the loop returns or raises")
