"""Writing the custom resource's status subresource."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from tokenscale.api import v1alpha1
from tokenscale.kube import rest

__all__ = ["patch_status"]


def patch_status(api_client: client.ApiClient, *, namespace: str, name: str, status: Mapping[str, Any]) -> None:
    """Merge ``status`` (wire form, camelCase) into the DisaggregatedInferenceService's status.

    A merge patch replaces lists whole, so conditions and decision history are always sent complete.
    """
    rest.request_json(
        api_client,
        method="PATCH",
        path=f"/apis/{v1alpha1.API_VERSION}/namespaces/{namespace}/{v1alpha1.PLURAL}/{name}/status",
        body={"status": dict(status)},
        content_type=rest.JSON_MERGE_PATCH,
    )
