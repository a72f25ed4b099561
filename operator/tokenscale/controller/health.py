"""Whether the operator is alive: every service it manages completes ticks.

Each service's daemon says when it starts, after every loop of its tick (a tick, or a wait on an invalid
spec), and when it stops. A service is *stalled* when its last loop ended longer ago than

    max(stall_seconds, STALL_TICKS x interval_seconds)

where ``interval_seconds`` is the wait the daemon announced after that loop (its tick interval). A stalled
service means a tick hangs (an API call or a scrape that never returns) or the event loop is starved: what a
restart fixes. A tick that merely fails (API errors, metrics outages) still completes and is not a stall:
restarting would not help. An operator that manages no service (none exists yet, or a peering standby whose
daemons kopf has paused) is healthy.

Time is passed in (monotonic seconds); the kopf probe handler asks `Heartbeats.stalled` on each probe.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STALL_TICKS", "Heartbeats", "Stall"]

STALL_TICKS = 3
"""A service with a long tick interval is stalled only after missing this many of its ticks."""


@dataclass(frozen=True, slots=True)
class Stall:
    """A service whose daemon has not completed a loop in time."""

    service: str
    silent_seconds: float
    limit_seconds: float

    def __str__(self) -> str:
        return f"{self.service}: no tick completed for {self.silent_seconds:.0f} s (limit {self.limit_seconds:.0f} s)"


@dataclass(slots=True)
class _Beat:
    service: str
    at_seconds: float
    interval_seconds: float


class Heartbeats:
    """The last completed loop of every running service daemon, keyed by the resource's uid."""

    def __init__(self, *, stall_seconds: float) -> None:
        if stall_seconds <= 0:
            raise ValueError("stall_seconds must be positive")
        self._stall_seconds = stall_seconds
        self._beats: dict[str, _Beat] = {}

    def __len__(self) -> int:
        return len(self._beats)

    def start(self, key: str, *, service: str, interval_seconds: float, now_seconds: float) -> None:
        """A daemon started: it counts as having just beaten, so its first tick has the full limit."""
        self._beats[key] = _Beat(service=service, at_seconds=now_seconds, interval_seconds=interval_seconds)

    def beat(self, key: str, *, interval_seconds: float, now_seconds: float) -> None:
        """The daemon of ``key`` completed a loop and now waits about ``interval_seconds`` before the next."""
        found = self._beats.get(key)
        if found is not None:
            found.at_seconds, found.interval_seconds = now_seconds, interval_seconds

    def stop(self, key: str) -> None:
        """The daemon ended (resource deleted, operator paused or exiting): it is no longer watched."""
        self._beats.pop(key, None)

    def stalled(self, *, now_seconds: float) -> list[Stall]:
        """The services whose last loop is older than their limit, in service order."""
        stalls = []
        for beat in self._beats.values():
            limit = max(self._stall_seconds, STALL_TICKS * beat.interval_seconds)
            silent = now_seconds - beat.at_seconds
            if silent > limit:
                stalls.append(Stall(service=beat.service, silent_seconds=silent, limit_seconds=limit))
        return sorted(stalls, key=lambda s: s.service)
