"""Raw JSON requests through the Kubernetes client's connection pool and authentication.

The generated client deserialises every answer into its own models, which costs more than the request for
a pod list and does not exist for arbitrary kinds; the operator reads and writes a few fields of arbitrary
kinds, so it requests JSON and reads plain dicts. Errors become `tokenscale.kube.errors` exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import urllib3
from kubernetes import client

from tokenscale.kube import errors

__all__ = ["JSON_MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "request_json"]

JSON_MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

_DEFAULT_TIMEOUT_SECONDS = 10.0


def request_json(
    api_client: client.ApiClient,
    *,
    method: str,
    path: str,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout_seconds: float = _DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """Send one request to ``path`` (e.g. ``/api/v1/namespaces/x/pods``) and return the decoded JSON answer.

    Raises `errors.NotFoundError` (404), `errors.ConflictError` (409), `errors.ApiError` for other error
    statuses and for connection failures (status 0).
    """
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    method_, url, header_params, body_, post_params = api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=list(query.items()) if query else None,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response = api_client.call_api(
            method_,
            url,
            header_params=header_params,
            body=body_,
            post_params=post_params,
            _request_timeout=timeout_seconds,
        )
        data = response.read()  # type: ignore[no-untyped-call]
    except client.ApiException as exc:  # raised by the REST layer for some transport errors
        raise _error(status=int(exc.status or 0), reason=str(exc.reason), body=exc.body, path=path) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise errors.ApiError(f"{method} {path}: {exc}", status=0, reason="Unreachable") from exc
    if not 200 <= response.status <= 299:
        raise _error(status=response.status, reason=str(response.reason), body=data, path=path)
    decoded: dict[str, Any] = json.loads(data) if data else {}
    return decoded


def _error(*, status: int, reason: str, body: Any, path: str) -> errors.ApiError:
    message = reason
    if isinstance(body, (bytes, str)) and body:
        try:
            message = json.loads(body).get("message", reason)
        except (ValueError, AttributeError):
            message = body.decode(errors="replace") if isinstance(body, bytes) else body
    text = f"{path}: {status} {message}"
    if status == 404:
        return errors.NotFoundError(text, status=status, reason=reason)
    if status == 409:
        return errors.ConflictError(text, status=status, reason=reason)
    return errors.ApiError(text, status=status, reason=reason)
