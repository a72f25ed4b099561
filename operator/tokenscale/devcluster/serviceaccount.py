"""Kubeconfigs that act as a ServiceAccount, so that RBAC is exercised (tests now, the operator later).

The token comes from the TokenRequest API (``kubectl create token``), signed with the cluster's
ServiceAccount key; it is bound to nothing but the ServiceAccount and expires after ``duration_seconds``.
"""

from __future__ import annotations

from pathlib import Path

from tokenscale.devcluster import kubeconfig, pki
from tokenscale.devcluster.cluster import DevCluster

__all__ = ["service_account_kubeconfig"]


def service_account_kubeconfig(
    cluster: DevCluster,
    *,
    namespace: str,
    name: str,
    duration_seconds: int = 3600,
    path: Path | None = None,
) -> Path:
    """Create ServiceAccount ``namespace/name`` if missing and write a kubeconfig with a token for it.

    The file goes to ``path``, else to ``<home>/serviceaccounts/<namespace>.<name>.kubeconfig``; its context's
    namespace is ``namespace``. Returns the path. The account has no permissions until a (Cluster)RoleBinding
    grants some.
    """
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}
    cluster.kubectl.apply_objects([account])
    token = cluster.kubectl.run(
        "create", "token", name, f"--namespace={namespace}", f"--duration={duration_seconds}s"
    ).stdout.strip()
    target = path or cluster.layout.service_accounts_dir / f"{namespace}.{name}.kubeconfig"
    document = kubeconfig.kubeconfig_document(
        server_url=cluster.server_url,
        ca_cert=pki.Pki.at(cluster.layout.pki_dir).ca_cert,
        user=f"system:serviceaccount:{namespace}:{name}",
        token=token,
        namespace=namespace,
    )
    return kubeconfig.write_kubeconfig(target, document)
