"""What a metrics source answers for each pod: an `EngineSample`, or `Unknown` with the reason.

Both sources (`tokenscale.metrics.scraper.PodMetricsSource`, which scrapes pods directly, and
`tokenscale.metrics.prometheus_source.PrometheusSource`, which asks an existing Prometheus) implement
`MetricsSource`, so the controller takes either. A source never raises for a pod: whatever goes wrong
(timeout, refused connection, HTTP status, oversized or malformed body) makes that pod *unknown*, and an
unknown pod is never read as an idle one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tokenscale.core.types import EngineSample

__all__ = ["Clock", "MetricsSource", "PodTarget", "SampleOrUnknown", "Unknown", "UnknownReason"]


Clock = Callable[[], float]
"""Seconds now; injected so tests are deterministic (the default everywhere is `time.time`)."""


@dataclass(frozen=True, slots=True)
class PodTarget:
    """One pod to observe: its name (the key of the answer) and its IP (``status.podIP``)."""

    name: str
    ip: str


class UnknownReason(enum.StrEnum):
    """Why a pod has no sample: a stable machine code, CamelCase like Kubernetes reasons."""

    NOT_ALLOWED = "NotAllowed"
    """The pod IP is not an IP address or lies outside the allowed networks; nothing was dialled."""
    TIMEOUT = "Timeout"
    CONNECTION_FAILED = "ConnectionFailed"
    """Refused, unreachable or reset while connecting."""
    HTTP_STATUS = "HTTPStatus"
    TOO_LARGE = "TooLarge"
    """The body exceeded the size cap; reading stopped there."""
    PARSE_ERROR = "ParseError"
    NO_MATCHING_FAMILY = "NoMatchingFamily"
    """The exposition holds none of the engine's metric families (wrong engine, port or model name)."""
    TRANSPORT_ERROR = "TransportError"
    QUERY_FAILED = "QueryFailed"
    """The Prometheus HTTP API answered with an error or an unexpected shape."""
    INTERNAL_ERROR = "InternalError"


@dataclass(frozen=True, slots=True)
class Unknown:
    """No usable sample for a pod at ``timestamp_seconds``, with a reason code and a sentence for humans."""

    timestamp_seconds: float
    reason: UnknownReason
    message: str


SampleOrUnknown = EngineSample | Unknown


class MetricsSource(Protocol):
    """Observes a role's pods: one answer per pod name, every call, never an exception for a pod."""

    async def sample(self, pods: Sequence[PodTarget]) -> dict[str, SampleOrUnknown]:
        """Sample every pod of ``pods``; the answer has exactly their names as keys."""
        ...
