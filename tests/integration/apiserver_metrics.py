"""The API server's own request counters (``apiserver_request_total``), read from its /metrics with the test
cluster's admin credentials (``kubectl get --raw``, over 127.0.0.1)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tokenscale.devcluster.kubectl import Kubectl


def request_counts(kubectl: Kubectl) -> dict[tuple[str, str, str], float]:
    """Requests served so far by (verb, resource, subresource), every response code and scope summed."""
    text = kubectl.run("get", "--raw", "/metrics").stdout
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            key = (sample.labels["verb"], sample.labels.get("resource", ""), sample.labels.get("subresource", ""))
            counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def difference(
    before: dict[tuple[str, str, str], float], after: dict[tuple[str, str, str], float]
) -> dict[tuple[str, str, str], float]:
    """The requests between two readings, by (verb, resource, subresource); zero rows left out."""
    return {key: after[key] - before.get(key, 0.0) for key in after if after[key] - before.get(key, 0.0) > 0}
