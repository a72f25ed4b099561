"""Shared fixtures of the simulator tests: a toy profile with round numbers, and a cluster built from it."""

from __future__ import annotations

from tokenscale.core.profile import PerfModel
from tokenscale.core.types import Role
from tokenscale.sim.cluster import Cluster, ClusterConfig

# prefill(L) = 10 + 0.01·L ms (1000 tokens: 20 ms); decode step = 10 + 0.1·B ms; transfer = 0.5 + L·1e5/1e10 s
# (1000 tokens: 0.5 + 10 = 10.5 ms).
TOY = PerfModel(
    prefill_fixed_ms=10.0,
    prefill_ms_per_token=0.01,
    prefill_ms_per_token_squared=0.0,
    decode_fixed_ms=10.0,
    decode_ms_per_kv_token=0.0,
    decode_ms_per_sequence=0.1,
    kv_capacity_tokens=100_000,
    kv_bytes_per_token=100_000,
    link_bytes_per_second=1e10,
    kv_transfer_fixed_ms=0.5,
    max_num_seqs=256,
    max_num_batched_tokens=1000,
    gpus_per_instance=1,
    cold_start_seconds=30.0,
)
NO_OVERHEAD = ClusterConfig(disaggregation_overhead_seconds=0.0)


def make_cluster(
    perf: PerfModel = TOY, *, prefill: int = 1, decode: int = 1, config: ClusterConfig = NO_OVERHEAD
) -> Cluster:
    cluster = Cluster(perf=perf, config=config)
    cluster.start_instances(Role.PREFILL, prefill, ready_now=True)
    cluster.start_instances(Role.DECODE, decode, ready_now=True)
    return cluster
