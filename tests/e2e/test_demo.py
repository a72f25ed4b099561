"""The demo path end to end: on a burst of the Azure code trace at 4x speed, the operator scales prefill out,
converts decoders before the new prefillers are Ready, restores them, and scales in; nothing is left running.

About 80 s wall: the control plane starts (~5-10 s), the first pods pay their cold start (15 s at 4x), then 40 s
of load (160 simulated seconds: the burst at ~45 s, new prefillers Ready at ~110 s, scale-in from ~115 s).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tokenscale.core.types import Role
from tokenscale.demo import report
from tokenscale.demo.session import DemoOptions, DemoResult, run_demo
from tokenscale.devcluster import binaries

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    try:
        binaries.locate_binaries()
    except binaries.BinariesMissingError as error:
        pytest.fail(f"{error}\nThe end-to-end test needs them: run `make cluster-bins` first.", pytrace=False)
    base = tmp_path_factory.mktemp("demo")
    # `make e2e-kind` points the test at a kind cluster with KWOK (tools/kind.sh); otherwise it starts its own.
    external = os.environ.get("TOKENSCALE_E2E_KUBECONFIG")
    options = DemoOptions(
        trace="azure-code",
        speedup=4.0,
        # 240 simulated seconds: the burst's demand ends near 54 s; the demo's 60 s demand window and the profile's
        # 60 s cold-start hold put the scale-in near 175 s, with room for the twin's lag.
        duration_seconds=60.0,
        report_dir=base / "report",
        home=None if external else base / "cluster",
        kubeconfig=Path(external) if external else None,
        pod_cidr=os.environ.get("TOKENSCALE_E2E_POD_CIDR"),
        namespace=f"tokenscale-e2e-{uuid.uuid4().hex[:6]}" if external else "tokenscale-demo",
    )
    result = run_demo(options)
    report.write_report(result, options.report_dir)
    return result


def _first(result: DemoResult, kind: str, role: Role, *, after: float = float("-inf")) -> float | None:
    times = [
        e.simulated_seconds for e in result.events if e.kind == kind and e.role is role and e.simulated_seconds > after
    ]
    return min(times, default=None)


def test_the_run_completed_and_left_nothing_running(demo_run: DemoResult) -> None:
    assert demo_run.error is None, f"{demo_run.error}\noperator log: {demo_run.operator_log}"
    assert not demo_run.interrupted
    assert demo_run.leftover_pids == []
    # Nothing that names the run's own directories (its cluster home, its report and operator log) still runs.
    marker = str(demo_run.options.report_dir.parent)
    survivors = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in text:
            survivors.append(text)
    assert survivors == []
    assert demo_run.operator_exit_code == 0


def test_the_operator_scales_prefill_out_on_the_burst(demo_run: DemoResult) -> None:
    scale_outs = [d for d in demo_run.decisions if d.prefill_replicas > demo_run.options.initial_prefill]
    assert scale_outs, [d.reason for d in demo_run.decisions]
    # New prefill pods were created after the load started (the twin saw them appear).
    assert _first(demo_run, "added", Role.PREFILL, after=0.0) is not None


def test_decoders_are_converted_before_the_new_prefillers_are_ready(demo_run: DemoResult) -> None:
    converted = _first(demo_run, "converted", Role.DECODE)
    new_prefill_ready = _first(demo_run, "ready", Role.PREFILL, after=0.0)
    assert converted is not None
    assert new_prefill_ready is not None
    assert converted < new_prefill_ready


def test_converted_decoders_are_restored_afterwards(demo_run: DemoResult) -> None:
    converted = _first(demo_run, "converted", Role.DECODE)
    assert converted is not None
    restored = _first(demo_run, "restored", Role.DECODE, after=converted)
    assert restored is not None
    assert demo_run.frames[-1].twin.converted == 0


def test_prefill_scales_in_after_the_burst(demo_run: DemoResult) -> None:
    desired = [f.prefill_desired for f in demo_run.frames]
    peak = max(desired)
    after_peak = desired[desired.index(peak) :]
    assert min(after_peak) < peak
    assert _first(demo_run, "removed", Role.PREFILL, after=0.0) is not None


def test_the_twins_slo_attainment_is_reported(demo_run: DemoResult, report_line: Callable[[str], None]) -> None:
    written = json.loads((demo_run.options.report_dir / "report.json").read_text())
    twin = written["twin"]
    assert 0.0 <= twin["slo_attainment_decided"] <= 1.0
    assert twin["requests_arrived"] > 0
    assert (demo_run.options.report_dir / report.PLOT_FILE).stat().st_size > 0
    simulator = written["simulator"]
    decided = twin["slo"]["attained"] + twin["slo"]["missed"]
    report_line(
        f"SLO attainment {100 * twin['slo_attainment_decided']:.1f}% of {decided} decided requests"
        f" (simulator on the same load: {100 * simulator['slo_attainment']:.1f}%), peak prefill "
        f"{twin['peak_prefill_desired']}, {twin['conversions']} conversions, {twin['gpu_hours']:.2f} GPU-h; "
        f"report in {demo_run.options.report_dir}"
    )
