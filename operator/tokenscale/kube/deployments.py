"""Deployment groups' workloads: the template a pool names, and the copies of it pinned to network domains.

A group's Deployment is the template Deployment with three changes, so that its pods run in one domain only and
are told apart from the template's and from other groups':

- the pod template's node selector adds ``<domain label>: <domain>`` (and the pool's GPU type when it has one);
- the selector and the pod labels add ``tokenscale.io/domain`` and ``tokenscale.io/variant``, so the group's
  ReplicaSets own exactly its pods, while the template's selector still matches them (a superset): the pods of a
  pool are listed with the template's selector;
- the Deployment is labelled with the service, role, variant and domain, and owned by the resource (an owner
  reference with ``controller: true``), so deleting the resource deletes its groups.

Replicas start at 0 and are written through /scale like any target's.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from tokenscale.api import labels
from tokenscale.kube import errors, rest

__all__ = [
    "GroupDeployment",
    "OwnerRef",
    "create_deployment",
    "delete_deployment",
    "group_deployment",
    "group_name",
    "list_group_deployments",
    "read_deployment",
]

_PATH = "/apis/apps/v1/namespaces/{namespace}/deployments"
_MAX_NAME = 63
_DROPPED_ANNOTATIONS = ("deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration")


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The resource that owns the groups it creates."""

    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class GroupDeployment:
    """A group's Deployment as listed: which pool and domain it serves, and its replicas."""

    name: str
    role: str
    variant: str
    domain: str
    replicas: int
    ready_replicas: int


def group_name(*, template: str, domain: str) -> str:
    """``<template>-<domain>`` as a DNS label of at most 63 characters: the domain is lower-cased with other
    characters as ``-``; a name that would be longer is cut and ends in a hash of the whole, so it stays unique."""
    slug = re.sub(r"[^a-z0-9-]+", "-", domain.lower()).strip("-") or "domain"
    name = f"{template}-{slug}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(f"{template}\n{domain}".encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9].rstrip('-')}-{digest}"


def group_deployment(
    *,
    template: Mapping[str, Any],
    name: str,
    owner: OwnerRef,
    role: str,
    variant: str,
    domain_label: str,
    domain: str,
    gpu_product_label: str,
    gpu_product: str | None,
) -> dict[str, Any]:
    """The Deployment of a pool's group in ``domain``, copied from ``template`` (a Deployment as read)."""
    source_metadata = template.get("metadata") or {}
    spec = copy.deepcopy(dict(template.get("spec") or {}))
    spec["replicas"] = 0
    pinned = {labels.DOMAIN_LABEL: domain, labels.VARIANT_LABEL: variant}
    selector = spec.setdefault("selector", {})
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), **pinned}
    pod_template = spec.setdefault("template", {})
    pod_metadata = pod_template.setdefault("metadata", {})
    pod_metadata["labels"] = {**(pod_metadata.get("labels") or {}), **pinned}
    pod_spec = pod_template.setdefault("spec", {})
    node_selector = {**(pod_spec.get("nodeSelector") or {}), domain_label: domain}
    if gpu_product is not None:
        node_selector[gpu_product_label] = gpu_product
    pod_spec["nodeSelector"] = node_selector
    annotations = {k: v for k, v in (source_metadata.get("annotations") or {}).items() if k not in _DROPPED_ANNOTATIONS}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {
                **(source_metadata.get("labels") or {}),
                labels.SERVICE_LABEL: owner.name,
                labels.GROUP_ROLE_LABEL: role,
                **pinned,
            },
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": owner.api_version,
                    "kind": owner.kind,
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                }
            ],
        },
        "spec": spec,
    }


def read_deployment(api_client: client.ApiClient, *, namespace: str, name: str) -> dict[str, Any]:
    """The Deployment ``name``; raises `errors.NotFoundError` when there is none."""
    return rest.request_json(api_client, method="GET", path=f"{_PATH.format(namespace=namespace)}/{name}")


def list_group_deployments(api_client: client.ApiClient, *, namespace: str, service: str) -> list[GroupDeployment]:
    """The group Deployments of ``service`` (by its label), sorted by name; ones missing a group label are
    skipped (not the operator's)."""
    document = rest.request_json(
        api_client,
        method="GET",
        path=_PATH.format(namespace=namespace),
        query={"labelSelector": f"{labels.SERVICE_LABEL}={service}"},
    )
    found = []
    for item in document.get("items") or ():
        metadata = item.get("metadata") or {}
        item_labels = metadata.get("labels") or {}
        keys = (labels.GROUP_ROLE_LABEL, labels.VARIANT_LABEL, labels.DOMAIN_LABEL)
        if not all(key in item_labels for key in keys):
            continue
        found.append(
            GroupDeployment(
                name=str(metadata.get("name", "")),
                role=item_labels[labels.GROUP_ROLE_LABEL],
                variant=item_labels[labels.VARIANT_LABEL],
                domain=item_labels[labels.DOMAIN_LABEL],
                replicas=int((item.get("spec") or {}).get("replicas", 0)),
                ready_replicas=int((item.get("status") or {}).get("readyReplicas", 0)),
            )
        )
    return sorted(found, key=lambda group: group.name)


def create_deployment(api_client: client.ApiClient, *, namespace: str, body: Mapping[str, Any]) -> bool:
    """Create ``body``; False when a Deployment of its name exists already (a group made by an earlier tick)."""
    try:
        rest.request_json(api_client, method="POST", path=_PATH.format(namespace=namespace), body=dict(body))
    except errors.ConflictError:
        return False
    return True


def delete_deployment(api_client: client.ApiClient, *, namespace: str, name: str) -> bool:
    """Delete the Deployment ``name`` and, in the background, its pods; False when it was gone already."""
    try:
        rest.request_json(
            api_client,
            method="DELETE",
            path=f"{_PATH.format(namespace=namespace)}/{name}",
            body={"propagationPolicy": "Background"},
        )
    except errors.NotFoundError:
        return False
    return True
