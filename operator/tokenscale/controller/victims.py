"""Which pods a scale-in removes, and the pod-deletion-cost values that make a ReplicaSet remove them first."""

from __future__ import annotations

from collections.abc import Sequence

from tokenscale.core.types import PodView, ServingRole

__all__ = ["CONVERTED_DELETION_COST", "VICTIM_DELETION_COST", "scale_in_victims"]

VICTIM_DELETION_COST = -1000
"""pod-deletion-cost of a pod chosen for scale-in: the ReplicaSet removes it before the others (cost 0)."""
CONVERTED_DELETION_COST = 1000
"""pod-deletion-cost of a converted decoder: removed last, as it is serving prefill work too."""


def scale_in_victims(
    *,
    pods: Sequence[PodView],
    count: int,
    keep: frozenset[str] = frozenset(),
    withdrawn: frozenset[str] = frozenset(),
) -> list[str]:
    """The ``count`` pods a scale-in should remove: never converted ones (nor ``keep``); withdrawn ones (soft
    scale-in) first, then not-Ready before Ready, then the least loaded (running + waiting requests, then KV
    usage), then by name for a stable order."""
    candidates = [p for p in pods if p.serving_role is not ServingRole.CONVERTED and p.name not in keep]
    candidates.sort(
        key=lambda p: (
            p.name not in withdrawn,
            p.ready,
            p.requests_running + p.requests_waiting,
            p.kv_cache_usage_ratio,
            p.name,
        )
    )
    return [p.name for p in candidates[: max(count, 0)]]
