"""Pod IP ranges: every local cluster on a machine claims a /16 of its own, so two clusters never give a pod the same
IP (processes bind ``<podIP>:<port>``, so a shared range makes their servers collide; docs/testcluster.md).

The candidates, in order, are `nodes.POD_CIDR` (127.1.0.0/16) and then 127.N.0.0/16 for N in 16..254. They leave
out 127.0.0.0/16 (the fake nodes' InternalIPs ``127.0.<n>.1``) and 127.2.0.0/16 (`components.SERVICE_CIDR`).

A claim is the file ``<claims dir>/<N>`` (N the second octet), created with ``O_EXCL`` and holding JSON
``{"podCIDR", "home", "pids"}``: the cluster's home and the processes that keep the claim alive, the starting
process first and kwok (which hands out the pod IPs) once it runs. A claim whose pids are all gone, or whose file
cannot be read (its writer died mid-write), is stale and is taken over: removed and created again. Every claim,
take-over, update and release happens under an exclusive ``flock`` on ``<claims dir>/lock``, so a reader never
sees a half-written claim and two starts never take over the same stale claim. The lock is held for
milliseconds and the kernel drops it when its holder dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenscale.devcluster import nodes, processes

__all__ = [
    "CANDIDATE_POD_CIDRS",
    "PodRangeClaim",
    "PodRangesExhaustedError",
    "add_claim_pid",
    "claim_pod_range",
    "read_claim",
    "release_pod_range",
]

CANDIDATE_POD_CIDRS = (nodes.POD_CIDR, *(f"127.{second_octet}.0.0/16" for second_octet in range(16, 255)))
_LOCK_FILE = "lock"


class PodRangesExhaustedError(RuntimeError):
    """Every candidate pod range is claimed by a live cluster."""


@dataclass(frozen=True)
class PodRangeClaim:
    """What one claim file holds, and where it is."""

    path: Path
    pod_cidr: str
    home: Path
    pids: tuple[int, ...]

    def to_json(self) -> str:
        document = {"podCIDR": self.pod_cidr, "home": str(self.home), "pids": list(self.pids)}
        return json.dumps(document, indent=2) + "\n"

    def is_live(self) -> bool:
        return any(map(processes.pid_alive, self.pids))


def _claim_file(claims_dir: Path, pod_cidr: str) -> Path:
    return claims_dir / str(ipaddress.ip_network(pod_cidr).network_address.packed[1])


@contextlib.contextmanager
def _locked(claims_dir: Path) -> Iterator[None]:
    claims_dir.mkdir(parents=True, exist_ok=True)
    with (claims_dir / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def read_claim(path: Path) -> PodRangeClaim | None:
    """The claim in ``path``; None if there is none or it cannot be read (a stale claim, see the module doc)."""
    try:
        document = json.loads(path.read_text())
        return PodRangeClaim(
            path=path,
            pod_cidr=str(document["podCIDR"]),
            home=Path(document["home"]),
            pids=tuple(int(pid) for pid in document["pids"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _create(claim: PodRangeClaim) -> bool:
    # O_EXCL: never overwrite a claim file that exists.
    try:
        with claim.path.open("x") as handle:
            handle.write(claim.to_json())
    except FileExistsError:
        return False
    return True


def claim_pod_range(
    *, claims_dir: Path, home: Path, pid: int, candidates: Sequence[str] = CANDIDATE_POD_CIDRS
) -> PodRangeClaim:
    """Claim the first of ``candidates`` that no live cluster holds, for the cluster in ``home`` started by ``pid``.

    A stale claim (no pid alive) is taken over. Raises `PodRangesExhaustedError` if every candidate is held.
    """
    with _locked(claims_dir):
        for pod_cidr in candidates:
            claim = PodRangeClaim(path=_claim_file(claims_dir, pod_cidr), pod_cidr=pod_cidr, home=home, pids=(pid,))
            if _create(claim):
                return claim
            held = read_claim(claim.path)
            if held is not None and held.is_live():
                continue
            claim.path.unlink(missing_ok=True)
            if _create(claim):
                return claim
    raise PodRangesExhaustedError(
        f"every pod range is claimed by a running cluster ({len(candidates)} ranges, claims in {claims_dir}); "
        "stop one with `tokenscale dev-cluster down --home …`, or remove a claim file whose cluster is gone"
    )


def add_claim_pid(claim: PodRangeClaim, *, pid: int) -> PodRangeClaim:
    """Add ``pid`` to the processes that keep ``claim`` alive, replacing the file atomically; returns the new claim.

    Raises RuntimeError if the file no longer holds this home's claim (it was released or taken over, which
    cannot happen while one of its pids lives).
    """
    with _locked(claim.path.parent):
        held = read_claim(claim.path)
        if held is None or held.home != claim.home:
            raise RuntimeError(f"the claim {claim.path} on {claim.pod_cidr} no longer belongs to {claim.home}")
        updated = PodRangeClaim(path=claim.path, pod_cidr=claim.pod_cidr, home=claim.home, pids=(*held.pids, pid))
        scratch = claim.path.with_name(f".{claim.path.name}.tmp")
        scratch.write_text(updated.to_json())
        scratch.replace(claim.path)
    return updated


def release_pod_range(path: Path, *, home: Path) -> bool:
    """Remove the claim file ``path`` if it holds the claim of the cluster in ``home``; False if it did not (gone,
    or taken over by another cluster after this one died)."""
    with _locked(path.parent):
        held = read_claim(path)
        if held is None or held.home != home:
            return False
        path.unlink()
    return True
