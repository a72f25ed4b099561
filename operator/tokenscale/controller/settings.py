"""Process settings of the operator (not of a resource: those are the custom resource's spec).

`tokenscale run` fills them from its flags, each of which also reads a ``TOKENSCALE_*`` environment variable.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ANY_ADDRESS", "LogFormat", "OperatorSettings"]

ANY_ADDRESS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("0.0.0.0/0"),
    ipaddress.ip_network("::/0"),
)


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class OperatorSettings:
    namespaces: tuple[str, ...] = ()
    """Namespaces whose DisaggregatedInferenceServices this operator reconciles; empty: all namespaces."""

    kubeconfig: Path | None = None
    """Kubeconfig file; None: in-cluster when running in a pod, else ``$KUBECONFIG`` or ``~/.kube/config``."""

    context: str | None = None
    """Kubeconfig context; None: the file's current context."""

    log_format: LogFormat = LogFormat.TEXT
    """``text`` for people, ``json`` (one object per line) for log pipelines."""

    log_level: str = "INFO"
    """Python logging level name; DEBUG adds per-tick detail meant for maintainers."""

    metrics_address: str = "0.0.0.0"
    """Address of the operator's own /metrics listener."""

    metrics_port: int = 8080
    """Port of the operator's own /metrics listener; 0 turns the listener off."""

    health_port: int = 8081
    """Port of the liveness endpoint (``/healthz`` on ``metrics_address``, served by kopf); 0 turns it off. It
    answers HTTP 500 while a service's ticks have stalled (`tokenscale.controller.health`), else 200."""

    health_stall_seconds: float = 30.0
    """A service whose daemon has completed no tick for this long (and for 3 of its tick intervals) fails the
    liveness endpoint. Ticks that fail still complete; only a hung tick or a starved event loop stalls."""

    peering_name: str | None = None
    """kopf peering object shared by the operator's replicas: only the one of highest priority acts, the others
    pause. None runs standalone (a single replica must then be guaranteed by the deployment)."""

    priority: int = 0
    """Peering priority; among replicas of one peering the highest acts. Replicas of equal priority all pause
    (kopf refuses to guess), so give replicas distinct priorities."""

    allowed_scrape_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ANY_ADDRESS
    """Pod IPs the operator may scrape; a pod outside them is *unknown* (never idle). Tests pass 127.0.0.0/8."""

    scrape_timeout_seconds: float = 0.5
    """Per-pod scrape timeout; kept below the tick so one slow pod cannot stretch a tick."""

    owners_refresh_seconds: float = 10.0
    """How often each namespace's HPAs and KEDA ScaledObjects are listed to detect a second autoscaler (an HPA
    first writes after its own sync period, 15 s by default, so one is stopped before the two can fight long)."""

    scale_refresh_seconds: float = 5.0
    """How often each target's /scale is read while its workload is at rest (spec = status replicas; pods are
    watched, /scale of an arbitrary kind cannot be). While it converges, and after every write, it is read
    every tick; a write reads it afresh first, so this only delays noticing a change made by someone else at
    rest, such as ``kubectl scale``."""

    event_repeat_seconds: float = 60.0
    """An Event identical to one posted this recently is not posted again (a held decision repeats every
    tick; the API server should not receive one Event per second for it)."""

    status_refresh_seconds: float = 10.0
    """A status whose only change is live numbers (velocities, arrival rates, condition messages) is written at
    most this often; conditions, replicas, converted pods and new decisions are written at once. 0 writes
    every change."""

    field_manager: str = "tokenscale"
    """Field manager of the operator's writes, as shown in managedFields."""

    def __post_init__(self) -> None:
        for port in (self.metrics_port, self.health_port):
            if not 0 <= port <= 65535:
                raise ValueError(f"port {port} is not in 0..65535")
        if self.metrics_port and self.metrics_port == self.health_port:
            raise ValueError(f"the metrics and the health endpoint cannot share port {self.metrics_port}")
        if self.status_refresh_seconds < 0:
            raise ValueError("status refresh seconds must not be negative")
        if self.health_stall_seconds <= 0:
            raise ValueError("health stall seconds must be positive")
        if self.scrape_timeout_seconds <= 0:
            raise ValueError("scrape timeout must be positive")
