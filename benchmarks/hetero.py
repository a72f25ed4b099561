"""Heterogeneous pools on the Azure traces: cost per million tokens of homogeneous and heterogeneous P/D pools, and
KV transfer inside and across network domains. Writes docs/results-hetero.md (docs/results.md links it) and
docs/results-hetero.json (every run's record).

Run: ``make bench-hetero`` (``.venv/bin/python -m benchmarks.hetero [--jobs N] [--render-only]``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from tokenscale.api import profiles
from tokenscale.core.profile import Profile
from tokenscale.sim import hetero, traces

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN_PATH = ROOT / "docs" / "results-hetero.md"
JSON_PATH = ROOT / "docs" / "results-hetero.json"
"""Every run's record, so that the Markdown can be rewritten without running again (``--render-only``)."""
TRACES = ("azure-code", "azure-conv")
RATE_SCALE = 16.0
"""×16 the Azure rates: one 8B H100 prefiller takes ≈ 31k prompt tokens/s against raw means of ≈ 5.3k (code) and
≈ 6.4k (conv), so ×16 needs several instances of each role, and decode is a real share of the cost."""
SEED = 0
POLICIES = ("tokenscale", "heteroscale")
KV_POLICY = "heteroscale"
"""The KV runs' policy: the one with the higher SLO attainment on both traces in these runs, so that a change in
TTFT shows against a service that mostly meets its objectives."""
H100, A100, H200 = "llama-3.1-8b-h100", "llama-3.1-8b-a100-80", "llama-3.1-8b-h200"
PAIRS = (
    ("H100 only", H100, H100),
    ("A100-80 only", A100, A100),
    ("H200 only", H200, H200),
    ("H100 prefill + A100-80 decode", H100, A100),
    ("H100 prefill + H200 decode", H100, H200),
)
PRICES_PER_GPU_HOUR = {"NVIDIA-A100-SXM4-80GB": 1.30, "NVIDIA-H100-80GB-HBM3": 3.00, "NVIDIA-H200": 4.00}
"""Mid-points of the 'specialty cloud' on-demand ranges in mercatus-ai.com/blog/cloud-gpu-pricing (May 2026):
A100 80GB $1.10–1.50, H100 SXM $2.50–3.50, H200 SXM $3.50–4.50 per GPU-hour."""
KV_RATIOS = (
    ("inside a domain", 1.0),
    ("across domains (≈20% KV bandwidth lost, HeteroScale)", 0.8),
    ("across domains over one 100 GbE link (≈11.6 of 45 GB/s)", 11.6 / 45.0),
)
PRICE_RATIOS = (1.5, 2.0, 2.31, 2.5, 3.0)
"""H100 : A100-80 price ratios for the sensitivity table (2.31 = the prices above)."""


def _profiles() -> dict[str, Profile]:
    return {name: profiles.load_profile(name) for name in (H100, A100, H200)}


def _trace(name: str) -> traces.Trace:
    return traces.scale_rate(traces.load_trace(name), factor=RATE_SCALE, seed=SEED)


def _run(trace_name: str, pair_name: str, policy: str, kv_ratio: float) -> hetero.HeteroRecord:
    found = _profiles()
    _, prefill, decode = next(p for p in PAIRS if p[0] == pair_name)
    return hetero.run_pair(
        trace=_trace(trace_name),
        pair=hetero.PoolPair(pair_name, found[prefill], found[decode]),
        prices=PRICES_PER_GPU_HOUR,
        policy=policy,
        rate_scale=RATE_SCALE,
        kv_bandwidth_ratio=kv_ratio,
    )


def _premium(cost: float, best: float) -> str:
    return f"+{100 * (cost / best - 1):.0f}%" if cost > best * 1.0005 else "best"


def _steady_lines(loaded: dict[str, traces.Trace]) -> list[str]:
    found = _profiles()
    lines = [
        "| trace | pool | prefill GPU | decode GPU | cost per M tokens | vs the cheapest |",
        "|---|---|---|---|--:|--:|",
    ]
    for trace_name, trace in loaded.items():
        costs = {
            name: hetero.steady_state_cost_per_million_tokens(
                trace=trace, pair=hetero.PoolPair(name, found[p], found[d]), prices=PRICES_PER_GPU_HOUR
            )
            for name, p, d in PAIRS
        }
        best = min(costs.values())
        for name, p, d in PAIRS:
            lines.append(
                f"| {trace_name} | {name} | {found[p].gpu} | {found[d].gpu} | ${costs[name]:.4f} "
                f"| {_premium(costs[name], best)} |"
            )
    return lines


def _sensitivity_lines(loaded: dict[str, traces.Trace]) -> list[str]:
    found = _profiles()
    lines = [
        "| trace | H100 : A100-80 price | H100 only | A100-80 only | H100 prefill + A100-80 decode "
        "| homogeneous premium |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    a100_gpu, h100_gpu = found[A100].gpu, found[H100].gpu
    for trace_name, trace in loaded.items():
        for ratio in PRICE_RATIOS:
            prices = {a100_gpu: 1.0, h100_gpu: ratio}
            costs = [
                hetero.steady_state_cost_per_million_tokens(
                    trace=trace, pair=hetero.PoolPair(name, found[p], found[d]), prices=prices
                )
                for name, p, d in (PAIRS[0], PAIRS[1], PAIRS[3])
            ]
            cheapest_homogeneous = min(costs[:2])
            lines.append(
                f"| {trace_name} | {ratio:g} | {costs[0]:.4f} | {costs[1]:.4f} | {costs[2]:.4f} "
                f"| {100 * (cheapest_homogeneous / costs[2] - 1):+.0f}% |"
            )
    return lines


def _run_lines(records: Sequence[hetero.HeteroRecord]) -> list[str]:
    lines = [
        "| trace | policy | pool | SLO | TTFT p50 / p99 ms | prefill GPU-h | decode GPU-h | cost | cost per M tokens "
        "| vs the cheapest |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for trace in TRACES:
        for policy in POLICIES:
            rows = [r for r in records if r.trace == trace and r.policy == policy and r.kv_bandwidth_ratio == 1.0]
            best = min(r.cost_per_million_tokens for r in rows)
            for r in rows:
                lines.append(
                    f"| {trace} | {policy} | {r.pair} | {100 * r.slo_attainment:.1f}% | {r.ttft_p50_ms or 0:,.0f} / "
                    f"{r.ttft_p99_ms or 0:,.0f} | {r.prefill_gpu_hours:.2f} | {r.decode_gpu_hours:.2f} | "
                    f"${r.cost:.2f} | ${r.cost_per_million_tokens:.4f} | {_premium(r.cost_per_million_tokens, best)} |"
                )
    return lines


def _premium_summary(records: Sequence[hetero.HeteroRecord], loaded: dict[str, traces.Trace]) -> list[str]:
    """How much more the cheapest homogeneous pool costs than the cheapest heterogeneous one, per trace."""
    found = _profiles()
    lines = []
    for trace_name, trace in loaded.items():
        steady = {
            name: (
                hetero.steady_state_cost_per_million_tokens(
                    trace=trace, pair=hetero.PoolPair(name, found[p], found[d]), prices=PRICES_PER_GPU_HOUR
                ),
                found[p].gpu == found[d].gpu,
            )
            for name, p, d in PAIRS
        }
        homo = min(c for c, h in steady.values() if h)
        het = min(c for c, h in steady.values() if not h)
        parts = [f"steady state {100 * (homo / het - 1):+.0f}%"]
        for policy in POLICIES:
            rows = [r for r in records if r.trace == trace_name and r.policy == policy and r.kv_bandwidth_ratio == 1.0]
            homo_run = min(r.cost_per_million_tokens for r in rows if r.homogeneous)
            het_run = min(r.cost_per_million_tokens for r in rows if not r.homogeneous)
            parts.append(f"{policy} {100 * (homo_run / het_run - 1):+.0f}%")
        lines.append(f"- {trace_name}: " + ", ".join(parts) + ".")
    return lines


def _kv_lines(records: Sequence[hetero.HeteroRecord], loaded: dict[str, traces.Trace]) -> list[str]:
    found = _profiles()
    lines = [
        "| trace | KV path | link share | transfer p50 / p99 / max ms | SLO | TTFT p50 / p99 ms |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for trace_name, trace in loaded.items():
        for label, ratio in KV_RATIOS:
            seconds = hetero.kv_transfer_seconds(trace=trace, profile=found[H100], bandwidth_ratio=ratio)
            p50, p99, top = (1000 * float(np.percentile(seconds, q)) for q in (50, 99, 100))
            (run,) = [
                r
                for r in records
                if r.trace == trace_name
                and r.pair == PAIRS[0][0]
                and r.policy == KV_POLICY
                and r.kv_bandwidth_ratio == ratio
            ]
            lines.append(
                f"| {trace_name} | {label} | {ratio:.2f} | {p50:.1f} / {p99:.1f} / {top:.1f} | "
                f"{100 * run.slo_attainment:.1f}% | {run.ttft_p50_ms or 0:,.0f} / {run.ttft_p99_ms or 0:,.0f} |"
            )
    return lines


def _notes(records: Sequence[hetero.HeteroRecord], loaded: dict[str, traces.Trace]) -> list[str]:
    found = _profiles()
    inside = {
        r.trace: r for r in records if r.policy == KV_POLICY and r.pair == PAIRS[0][0] and r.kv_bandwidth_ratio == 1.0
    }
    notes = []
    low = sorted({(r.trace, r.policy) for r in records if r.slo_attainment < 0.5})
    if low:
        shown = ", ".join(f"{policy} on {trace}" for trace, policy in low)
        notes.append(
            f"- SLO attainment below 50% ({shown}): those pools queue for seconds whatever their GPUs, so their cost "
            "per token says little about the hardware; the steady-state table and the runs that meet most of the SLO "
            "do."
        )
    for trace_name, trace in loaded.items():
        base = hetero.kv_transfer_seconds(trace=trace, profile=found[H100])
        worst_slo = max(
            abs(r.slo_attainment - inside[trace_name].slo_attainment) * 100
            for r in records
            if r.trace == trace_name and r.policy == KV_POLICY and r.pair == PAIRS[0][0]
        )
        decode_share = 100 * float(trace.output_tokens.sum()) / float((trace.input_tokens + trace.output_tokens).sum())
        notes.append(
            f"- {trace_name}: output tokens are {decode_share:.0f}% of all tokens (the decode pool's share of the "
            f"work grows with them, and with it what a cheaper decode GPU saves); KV transfer inside a domain is "
            f"{1000 * float(np.percentile(base, 99)):.1f} ms at p99, and no bandwidth share above moves SLO "
            f"attainment by more than {worst_slo:.1f} points."
        )
    return notes


def render(records: Sequence[hetero.HeteroRecord], *, seconds: float, jobs: int) -> str:
    loaded = {name: _trace(name) for name in TRACES}
    found = _profiles()
    prices = ", ".join(f"{gpu} ${price:.2f}" for gpu, price in PRICES_PER_GPU_HOUR.items())
    out = [
        "# Heterogeneous pools and KV transfer across domains",
        "",
        "Generated by `make bench-hetero` (`benchmarks/hetero.py`); do not edit by hand. Model: "
        "[heterogeneous.md](heterogeneous.md) and [simulator.md](simulator.md).",
        "",
        "Setup:",
        "",
        f"- traces: the bundled Azure 2023 `azure-code` and `azure-conv` (one hour each), rate ×{RATE_SCALE:g} (seed "
        f"{SEED}): enough load for several instances of each role;",
        "- model: Llama-3.1-8B BF16 TP1 on each GPU type, from reference/perfmodel.md §2 (bundled profiles "
        + ", ".join(f"`{name}`" for name in found)
        + "); the A100 is the 80 GB SXM4; every number there is an estimate anchored on measurements, except where "
        "perfmodel.md says measured;",
        f"- prices per GPU-hour: {prices} (mid-points of the 'specialty cloud' on-demand ranges in "
        "mercatus-ai.com/blog/cloud-gpu-pricing, May 2026); only their ratios matter;",
        "- a pool's policy sizes prefill with its prefill GPU's velocity and decode with its decode GPU's "
        "(`tokenscale.sim.hetero.composite_profile`); bounds 1–64 per role, the generic behaviour, each policy's "
        "defaults, profiles' 60 s cold start, warm start at the first minute's mean load;",
        "- cost: GPU-hours each role provisioned over the hour (starting and draining included) × its GPU's price, per "
        "million (input + output) tokens of the trace. *Steady state*: the same for pools always exactly as large as "
        "the load (`steady_state_cost_per_million_tokens`), the hardware's own price per token for the trace's mix;",
        "- SLO as in the scoreboard (TTFT by tier, TPOT 100 ms, both must hold).",
        f"- {len(records)} runs in {seconds:.0f} s on {jobs} worker process(es), {platform.machine()}.",
        "",
        "## Cost per million tokens, steady state",
        "",
        *_steady_lines(loaded),
        "",
        "## Cost per million tokens, autoscaled",
        "",
        *_run_lines(records),
        "",
        "How much more the cheapest homogeneous pool costs per token than the cheapest heterogeneous one "
        "(HeteroScale reports 41% for its production pools; its GPU types, prices and services are not published):",
        "",
        *_premium_summary(records, loaded),
        "",
        "Sensitivity of the steady-state premium to the H100 : A100-80 price ratio (A100-80 at 1):",
        "",
        *_sensitivity_lines(loaded),
        "",
        "## KV transfer inside and across network domains",
        "",
        f"H100 only, {KV_POLICY}; a transfer takes the profile's 0.5 ms plus the prompt's KV (128 KiB per token) over "
        "the link share of one 45 GB/s RDMA rail. Transfer times are per request over the whole trace; SLO and TTFT "
        "come from a run with every transfer at that share.",
        "",
        *_kv_lines(records, loaded),
        "",
        "## Notes (computed from the rows above)",
        "",
        *_notes(records, loaded),
        "",
    ]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite the Markdown from docs/results-hetero.json, no runs"
    )
    args = parser.parse_args(argv)
    if args.render_only:
        saved = json.loads(JSON_PATH.read_text())
        records = [hetero.HeteroRecord(**row) for row in saved["runs"]]
        MARKDOWN_PATH.write_text(render(records, seconds=saved["seconds"], jobs=saved["jobs"]))
        return
    work = [(t, name, policy, 1.0) for t in TRACES for policy in POLICIES for name, _, _ in PAIRS]
    work += [(t, PAIRS[0][0], KV_POLICY, ratio) for t in TRACES for _, ratio in KV_RATIOS if ratio != 1.0]
    started = time.perf_counter()
    if args.jobs == 1:
        records = [_run(*item) for item in work]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            records = list(pool.map(_run, *zip(*work, strict=True)))
    seconds = time.perf_counter() - started
    saved = {"seconds": seconds, "jobs": args.jobs, "runs": [dataclasses.asdict(r) for r in records]}
    JSON_PATH.write_text(json.dumps(saved, indent=1) + "\n")
    MARKDOWN_PATH.write_text(render(records, seconds=seconds, jobs=args.jobs))
    print(f"{len(records)} runs in {seconds:.1f} s")


if __name__ == "__main__":
    main()
