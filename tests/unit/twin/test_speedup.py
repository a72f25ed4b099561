"""The sped-up world is the real one, faster: the model's every time scales by 1/s, what the operator reads with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tokenscale.api import profiles, v1alpha1
from tokenscale.core.types import Role
from tokenscale.sim.cluster import Cluster, ClusterConfig
from tokenscale.sim.traces import Trace, compress_time, load_trace
from tokenscale.twin import speedup

SPEEDUPS = [pytest.param(2.0, id="2x"), pytest.param(4.0, id="4x"), pytest.param(7.5, id="7.5x")]


def bundled(name: str = "llama-3.1-8b-h100") -> profiles.ProfileFile:
    text = (Path(profiles.__file__).parent / "data" / "profiles" / f"{name}.yaml").read_text()
    return profiles.ProfileFile.model_validate(yaml.safe_load(text))


@pytest.mark.parametrize("factor", SPEEDUPS)
def test_compressed_profile_divides_durations_and_multiplies_velocities(factor: float, tmp_path: Path) -> None:
    base = bundled()
    fast = speedup.compress_profile(base, speedup=factor)
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(fast.model_dump(by_alias=True, mode="json")))
    # What the operator loads: its default arguments, and the velocities the file states.
    loaded = profiles.load_profile(str(path))
    original = profiles.load_profile("llama-3.1-8b-h100")
    assert loaded.perf.cold_start_seconds == pytest.approx(original.perf.cold_start_seconds / factor)
    assert loaded.perf.decode_fixed_ms == pytest.approx(original.perf.decode_fixed_ms / factor)
    assert loaded.perf.kv_transfer_ms(tokens=2000) == pytest.approx(original.perf.kv_transfer_ms(tokens=2000) / factor)
    assert loaded.perf.kv_capacity_tokens == original.perf.kv_capacity_tokens
    assert loaded.velocities.prefill_tokens_per_second == pytest.approx(
        factor * original.velocities.prefill_tokens_per_second
    )
    assert loaded.velocities.decode_tokens_per_second == pytest.approx(
        tuple(factor * v for v in original.velocities.decode_tokens_per_second)
    )
    assert fast.name == f"llama-3.1-8b-h100-x{factor:g}"


def _run(*, perf: Any, config: ClusterConfig, trace: Trace, scale_at: float) -> Cluster:
    cluster = Cluster(perf=perf, config=config)
    cluster.submit_all(
        arrival_seconds=trace.arrival_seconds.tolist(),
        input_tokens=trace.input_tokens.tolist(),
        output_tokens=trace.output_tokens.tolist(),
    )
    cluster.start_instances(Role.PREFILL, 1, ready_now=True)
    cluster.start_instances(Role.DECODE, 2, ready_now=True)
    cluster.advance_to(scale_at)
    cluster.convert(cluster.decoders[0].name)  # mixed prefill+decode steps, bounded by the TPOT objective
    cluster.set_replicas(Role.PREFILL, 3)  # two more after the cold start
    cluster.advance_to(10 * trace.span_seconds + 1000.0)
    return cluster


@pytest.mark.parametrize("factor", SPEEDUPS)
def test_a_run_in_the_sped_up_world_is_the_real_run_faster(factor: float) -> None:
    source = load_trace("azure-code")
    keep = (source.arrival_seconds >= 850) & (source.arrival_seconds < 880)  # a burst
    trace = Trace(
        "burst", source.arrival_seconds[keep] - 850, source.input_tokens[keep], source.output_tokens[keep], 30
    )
    real_perf = bundled().to_core().perf
    fast_perf = speedup.compress_profile(bundled(), speedup=factor).to_core().perf
    real_config = ClusterConfig()
    fast_config = ClusterConfig(
        disaggregation_overhead_seconds=real_config.disaggregation_overhead_seconds / factor,
        tpot_slo_seconds=real_config.tpot_slo_seconds / factor,
    )
    real = _run(perf=real_perf, config=real_config, trace=trace, scale_at=5.0).outcomes()
    fast = _run(
        perf=fast_perf, config=fast_config, trace=compress_time(trace, factor=factor), scale_at=5.0 / factor
    ).outcomes()
    assert np.all(np.isfinite(real.finish_seconds))
    np.testing.assert_allclose(fast.first_token_seconds * factor, real.first_token_seconds, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(fast.finish_seconds * factor, real.finish_seconds, rtol=1e-9, atol=1e-9)


def _walk(document: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    found: dict[tuple[str, ...], Any] = {}
    if isinstance(document, dict):
        for key, value in document.items():
            found.update(_walk(value, (*path, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.update(_walk(value, (*path, str(index))))
    else:
        found[path] = document
    return found


@pytest.mark.parametrize("factor", SPEEDUPS)
def test_compressed_spec_scales_times_and_rates_and_keeps_the_rest(factor: float) -> None:
    base = v1alpha1.DisaggregatedInferenceServiceSpec(
        prefill=v1alpha1.RoleSpec(scale_target_ref=v1alpha1.ScaleTargetRef(name="p")),
        decode=v1alpha1.RoleSpec(scale_target_ref=v1alpha1.ScaleTargetRef(name="d")),
        policy=v1alpha1.PolicySpec(
            heteroscale=v1alpha1.HeteroScalePolicySpec(target_decode_tokens_per_second=5000.0),
            distserve=v1alpha1.DistServePolicySpec(
                prefill_goodput_requests_per_second=3.0, decode_goodput_requests_per_second=2.0
            ),
        ),
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    fast = speedup.compress_spec(base, speedup=factor)
    before, after = _walk(base), _walk(fast)
    assert before.keys() == after.keys()
    for path, value in before.items():
        key = next(part for part in reversed(path) if not part.isdigit())
        if key.endswith("Seconds"):
            assert after[path] == pytest.approx(value / factor), path
        elif key.endswith("PerSecond"):
            assert after[path] == pytest.approx(value * factor), path
        else:
            assert after[path] == value, path
    parsed = v1alpha1.parse_spec(fast)
    assert parsed.metrics.scrape_interval_seconds == pytest.approx(1.0 / factor)
    assert parsed.slo.ttft_tiers[0].ttft_seconds == pytest.approx(0.25 / factor)
    assert parsed.policy.distserve is not None
    assert parsed.policy.distserve.prefill_goodput_requests_per_second == pytest.approx(3.0 * factor)


@pytest.mark.parametrize("factor", [pytest.param(0.5, id="slower"), pytest.param(11.0, id="tick-below-0.1s")])
def test_speedups_outside_1_to_10_are_refused(factor: float) -> None:
    with pytest.raises(ValueError, match="speed-up must be between"):
        speedup.compress_spec({}, speedup=factor)
    with pytest.raises(ValueError, match="speed-up must be between"):
        speedup.compress_profile(bundled(), speedup=factor)


def test_simulated_units_undo_the_speedup() -> None:
    assert speedup.to_simulated_seconds(15.0, speedup=4.0) == 60.0
    assert speedup.to_simulated_rate(400.0, speedup=4.0) == 100.0
