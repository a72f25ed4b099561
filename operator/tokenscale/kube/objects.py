"""Creating an object when it is missing (a peering object the operator's replicas share, for instance)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from tokenscale.kube import discovery, errors, rest

__all__ = ["create_if_missing"]


def create_if_missing(
    api_client: client.ApiClient, *, api_version: str, plural: str, namespace: str | None, body: Mapping[str, Any]
) -> bool:
    """Create ``body`` unless an object of its name exists; True when this call created it.

    Raises `errors.NotFoundError` when the kind is not served (its CRD is not installed).
    """
    prefix = discovery.api_prefix(api_version)
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    try:
        rest.request_json(api_client, method="POST", path=path, body=dict(body))
    except errors.ConflictError:
        return False
    return True
