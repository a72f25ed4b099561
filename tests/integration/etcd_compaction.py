"""Compact a test cluster's etcd, as kube-apiserver's compactor does every ``--etcd-compaction-interval``, but when
the test chooses: through etcd's JSON gateway (``/v3/kv/...``, the gRPC KV service over HTTP) on its loopback
client URL.

After a compaction at revision R, etcd refuses a watch that starts below R, and the API server answers a watch
from an older resourceVersion with 410 Gone (an ``ERROR`` event, reason ``Expired``) when the watch is not served
from its watch cache.
"""

from __future__ import annotations

import httpx

from tokenscale.devcluster import cluster

_TIMEOUT_SECONDS = 10.0


def _post(dev_cluster: cluster.DevCluster, path: str, body: dict[str, object]) -> dict[str, object]:
    url = f"http://127.0.0.1:{dev_cluster.state.ports.etcd_client}{path}"
    with httpx.Client(trust_env=False, timeout=_TIMEOUT_SECONDS) as client:
        response = client.post(url, json=body)
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


def current_revision(dev_cluster: cluster.DevCluster) -> int:
    """etcd's revision now: the resourceVersion of the cluster's latest write."""
    # A one-key range of "/" (base64 "Lw=="), keys only: the answer's header carries the store's revision.
    answer = _post(dev_cluster, "/v3/kv/range", {"key": "Lw==", "limit": 1, "keys_only": True})
    header = answer["header"]
    assert isinstance(header, dict)
    return int(header["revision"])


def compact(dev_cluster: cluster.DevCluster, *, revision: int) -> None:
    """Compact away every revision below ``revision``, and return once it is physically done."""
    _post(dev_cluster, "/v3/kv/compaction", {"revision": revision, "physical": True})
