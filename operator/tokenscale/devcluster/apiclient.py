"""A minimal HTTPS GET client for readiness polling (urllib and ssl; the Kubernetes client lives in `kube`).

It never uses a proxy and verifies the server against the cluster CA, presenting the admin certificate.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["ApiClient"]


class ApiClient:
    """GETs on one ``https://127.0.0.1:<port>`` server."""

    def __init__(
        self,
        *,
        base_url: str,
        ca_cert: Path,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        timeout_seconds: float = 2.0,
    ) -> None:
        context = ssl.create_default_context(cafile=str(ca_cert))
        if client_cert is not None:
            context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
        # An empty ProxyHandler: loopback traffic must never go to an HTTP(S)_PROXY from the environment.
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        self._base_url = base_url.rstrip("/")
        self._timeout_seconds = timeout_seconds

    def get(self, path: str) -> tuple[int, bytes]:
        """(HTTP status, body); status 0 when the server cannot be reached (yet)."""
        try:
            with self._opener.open(self._base_url + path, timeout=self._timeout_seconds) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return int(error.code), error.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def get_json(self, path: str) -> Any | None:
        """The decoded JSON body of a 200 answer, else None."""
        status, body = self.get(path)
        return json.loads(body) if status == 200 else None
