"""Start and stop time of the local control plane (`tokenscale.devcluster`), cold and warm.

Cold: the binaries are first evicted from the page cache (``posix_fadvise(DONTNEED)``), as after a reboot or
on a fresh CI machine right after the build was copied in. Warm: the same start repeated. Each start is a fresh
home (new PKI, empty etcd) with the test session's four fake GPU nodes; Ready means what ``dev-cluster up``
waits for (apiserver /readyz, controller-manager and scheduler /healthz, nodes Ready, default ServiceAccount).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tokenscale.devcluster import binaries, cluster, nodes

WARM_RUNS = int(os.environ.get("BENCH_DEVCLUSTER_RUNS", "5"))


def _evict(directory: Path) -> None:
    for path in directory.iterdir():
        with path.open("rb") as handle:
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _one_start(found: binaries.Binaries) -> tuple[dict[str, float], float]:
    with tempfile.TemporaryDirectory(prefix="bench-dev-cluster-") as home:
        started = cluster.start_cluster(
            home=Path(home), fake_nodes=nodes.fake_gpu_nodes(4), binaries=found, die_with_parent=True
        )
        begun = time.monotonic()
        started.stop()
        return dict(started.state.timings_seconds), time.monotonic() - begun


def main() -> None:
    found = binaries.locate_binaries()
    _evict(found.directory)
    cold, cold_stop = _one_start(found)
    warm = [_one_start(found) for _ in range(WARM_RUNS)]
    ready = [timings["ready"] for timings, _ in warm]
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(
        f"cold start: Ready in {cold['ready']:.2f} s (apiserver /readyz at {cold['kube-apiserver /readyz']:.2f} s);"
        f" stop {cold_stop:.2f} s"
    )
    print(
        f"warm start ({WARM_RUNS} runs): Ready median {statistics.median(ready):.2f} s,"
        f" min {min(ready):.2f} s, max {max(ready):.2f} s; stop median {statistics.median(s for _, s in warm):.2f} s"
    )
    print("warm phases (median s since start):")
    for phase in warm[0][0]:
        print(f"  {phase:<34} {statistics.median(t[phase] for t, _ in warm):6.2f}")


if __name__ == "__main__":
    main()
