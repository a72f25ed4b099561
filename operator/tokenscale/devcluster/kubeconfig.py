"""Kubeconfig files for the local control plane: the admin's (client certificate) and a ServiceAccount's (token).

Files are JSON, which every kubeconfig reader accepts (YAML is a superset), with the CA and credentials
embedded so that a kubeconfig can be handed to another process on its own. The server is always
``https://127.0.0.1:<port>``, never ``localhost``, which may resolve to ``::1`` (outside 127.0.0.0/8).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["kubeconfig_document", "write_kubeconfig"]

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _is_loopback_literal(host: str) -> bool:
    try:
        return ipaddress.ip_address(host) in _LOOPBACK
    except ValueError:  # a name such as localhost
        return False


def kubeconfig_document(
    *,
    server_url: str,
    ca_cert: Path,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str = "default",
) -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context, all named ``tokenscale-dev``/``user``.

    Give either ``client_cert`` and ``client_key`` or ``token``. The server must be an https URL whose host
    is an IPv4 literal in 127.0.0.0/8; anything else raises `ValueError`.
    """
    if not server_url.startswith("https://") or not _is_loopback_literal(urlsplit(server_url).hostname or ""):
        raise ValueError(f"the dev cluster serves on https://127.x.y.z only, not {server_url!r}")
    if (client_cert is None) != (client_key is None) or (client_cert is None) == (token is None):
        raise ValueError("give either client_cert and client_key, or token")
    credentials: dict[str, str]
    if client_cert is not None and client_key is not None:
        credentials = {"client-certificate-data": _b64(client_cert), "client-key-data": _b64(client_key)}
    else:
        credentials = {"token": str(token)}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "tokenscale-dev", "cluster": {"server": server_url, "certificate-authority-data": _b64(ca_cert)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [
            {"name": "tokenscale-dev", "context": {"cluster": "tokenscale-dev", "user": user, "namespace": namespace}}
        ],
        "current-context": "tokenscale-dev",
        "preferences": {},
    }


def write_kubeconfig(path: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` to ``path``, readable by its owner only (it holds credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    return path
