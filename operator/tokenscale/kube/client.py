"""Building the one Kubernetes API client of the process, from a kubeconfig or in-cluster, with proxies off.

The Kubernetes client library reads ``HTTPS_PROXY``/``ALL_PROXY`` from the environment; the operator never
sends API traffic through a proxy (a proxy in front of a loopback test cluster, or of the in-cluster API,
is a misconfiguration), so the proxy is cleared after loading. `connection_credentials` hands the same
credentials to kopf, so both clients talk to the same cluster as the same user.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

__all__ = ["ConnectionCredentials", "build_api_client", "connection_credentials"]

_IN_CLUSTER_ENV = "KUBERNETES_SERVICE_HOST"


@dataclass(frozen=True, slots=True)
class ConnectionCredentials:
    """Where the API server is and how to authenticate, as file paths and strings (no client objects)."""

    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    scheme: str | None
    certificate_path: str | None
    private_key_path: str | None
    username: str | None
    password: str | None


def build_api_client(*, kubeconfig: Path | None = None, context: str | None = None) -> client.ApiClient:
    """An API client for ``kubeconfig`` (and ``context``), or in-cluster when ``kubeconfig`` is None and the
    process runs in a pod, else the default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``).

    Raises `kubernetes.config.ConfigException` when no configuration is found.
    """
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get(_IN_CLUSTER_ENV):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig is not None else None,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    # Never through a proxy: the setter also stops the host setter from re-reading the environment.
    configuration.proxy = None
    configuration.no_proxy = None
    return client.ApiClient(configuration=configuration)


def connection_credentials(api_client: client.ApiClient) -> ConnectionCredentials:
    """The credentials ``api_client`` uses, for a second client (kopf's) to the same cluster."""
    configuration = api_client.configuration
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return ConnectionCredentials(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        token=token,
        scheme=scheme,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        username=configuration.username or None,
        password=configuration.password or None,
    )
