"""The API server's own request counters (``apiserver_request_total``), read from its /metrics with the test
cluster's admin credentials (``kubectl get --raw``, over 127.0.0.1)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tokenscale.devcluster.kubectl import Kubectl


def request_counts(kubectl: Kubectl, *, scope: str | None = None) -> dict[tuple[str, str, str], float]:
    """Requests served so far by (verb, resource, subresource), every response code summed, and every scope unless
    ``scope`` names one (the server's label: ``namespace`` for a request within a namespace, ``cluster`` for one
    across all, such as a controller's informer, ``resource`` for one named object)."""
    text = kubectl.run("get", "--raw", "/metrics").stdout
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            if scope is not None and sample.labels.get("scope") != scope:
                continue
            key = (sample.labels["verb"], sample.labels.get("resource", ""), sample.labels.get("subresource", ""))
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def difference(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> dict[tuple[str, str, str], float]:
    """The requests between two readings, by (verb, resource, subresource); zero rows left out."""
    return {key: after[key] - before.get(key, 0.0) for key in after if after[key] - before.get(key, 0.0) > 0}
