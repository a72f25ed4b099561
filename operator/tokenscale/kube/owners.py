"""Other autoscalers that write the same workload's replicas: HorizontalPodAutoscalers and KEDA ScaledObjects.

Two writers of one /scale fight (each undoes the other; ecosystem.md R3), so the operator looks for them
and refuses to actuate while one exists. KEDA is optional: ScaledObjects are looked up only when the
cluster serves ``keda.sh/v1alpha1`` (KEDA also creates an HPA ``keda-hpa-<name>``, found as an HPA).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tokenscale.kube import discovery, rest
from tokenscale.kube.scale import ScaleRef

__all__ = ["Autoscaler", "list_autoscalers", "scale_owners"]

_HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
_SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject")


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _targets(reference: Mapping[str, Any], ref: ScaleRef, *, default_api_version: str, default_kind: str) -> bool:
    api_version = str(reference.get("apiVersion") or default_api_version)
    kind = str(reference.get("kind") or default_kind)
    return (
        str(reference.get("name", "")) == ref.name
        and kind == ref.kind
        and _group(api_version) == _group(ref.api_version)
    )


@dataclass(frozen=True, slots=True)
class Autoscaler:
    """One HPA or ScaledObject of a namespace and what it targets."""

    name: str
    """``Kind/name``."""
    reference: Mapping[str, Any]
    """Its ``spec.scaleTargetRef``."""
    default_api_version: str | None
    """Of a reference without ``apiVersion``: None for the target's own (HPA), ``apps/v1`` for KEDA."""
    default_kind: str | None


def list_autoscalers(
    api_client: client.ApiClient, resources: discovery.Discovery, *, namespace: str
) -> list[Autoscaler]:
    """Every HPA and (where KEDA is served) ScaledObject in ``namespace``: one list request per kind."""
    found: list[Autoscaler] = []
    for (api_version, kind), defaults in ((_HPA, (None, None)), (_SCALED_OBJECT, ("apps/v1", "Deployment"))):
        if not resources.serves(api_version=api_version, kind=kind):
            continue
        info = resources.resource(api_version=api_version, kind=kind)
        document = rest.request_json(api_client, method="GET", path=info.collection_path(namespace=namespace))
        for item in document.get("items") or ():
            found.append(
                Autoscaler(
                    name=f"{kind}/{item['metadata']['name']}",
                    reference=(item.get("spec") or {}).get("scaleTargetRef") or {},
                    default_api_version=defaults[0],
                    default_kind=defaults[1],
                )
            )
    return found


def scale_owners(autoscalers: Sequence[Autoscaler], *, refs: tuple[ScaleRef, ...]) -> dict[ScaleRef, list[str]]:
    """For each of ``refs``, the ``autoscalers`` targeting it, as ``Kind/name`` strings (empty: none)."""
    return {
        ref: [
            autoscaler.name
            for autoscaler in autoscalers
            if _targets(
                autoscaler.reference,
                ref,
                default_api_version=autoscaler.default_api_version or ref.api_version,
                default_kind=autoscaler.default_kind or ref.kind,
            )
        ]
        for ref in refs
    }
