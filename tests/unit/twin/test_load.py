"""The twin's load: a slice of a trace or a synthetic load, rate-scaled and time-compressed."""

from __future__ import annotations

import numpy as np
import pytest

from tokenscale.sim import traces
from tokenscale.twin.load import LoadSpec, build_load, parse_synthetic


def test_a_slice_starts_at_zero_and_holds_the_requests_of_its_window() -> None:
    source = traces.load_trace("azure-code")
    load = build_load(LoadSpec(source="azure-code", start_seconds=810.0, duration_seconds=120.0))
    in_window = (source.arrival_seconds >= 810.0) & (source.arrival_seconds < 930.0)
    assert len(load) == int(in_window.sum())
    np.testing.assert_allclose(load.arrival_seconds, source.arrival_seconds[in_window] - 810.0)
    np.testing.assert_array_equal(load.input_tokens, source.input_tokens[in_window])
    assert load.span_seconds == 120.0


@pytest.mark.parametrize(
    ("rate_scale", "compression"),
    [
        pytest.param(2.0, 1.0, id="twice-the-rate"),
        pytest.param(1.0, 4.0, id="four-times-faster"),
        pytest.param(3.0, 2.0, id="both"),
    ],
)
def test_rate_scale_multiplies_requests_and_compression_shortens_the_span(
    rate_scale: float, compression: float
) -> None:
    plain = build_load(LoadSpec(source="azure-conv", duration_seconds=300.0))
    scaled = build_load(
        LoadSpec(source="azure-conv", duration_seconds=300.0, rate_scale=rate_scale, time_compression=compression)
    )
    assert len(scaled) == pytest.approx(rate_scale * len(plain), rel=0.05)
    assert scaled.span_seconds == pytest.approx(300.0 / compression)
    assert scaled.arrival_seconds.max() < 300.0 / compression


@pytest.mark.parametrize(
    ("text", "expected_rate"),
    [
        pytest.param("poisson:rps=5", 5.0, id="poisson"),
        pytest.param("burst:rps=2,factor=8,burst=30,period=120,first=0", 2.0 * (30 * 8 + 90) / 120, id="burst"),
        pytest.param("diurnal:rps=4,amplitude=0.5,period=300", 4.0, id="diurnal"),
    ],
)
def test_synthetic_loads_have_their_mean_rate(text: str, expected_rate: float) -> None:
    load = build_load(LoadSpec(source=text, duration_seconds=600.0, seed=3))
    assert len(load) / 600.0 == pytest.approx(expected_rate, rel=0.1)
    assert set(load.input_tokens.tolist()) == {1024}


def test_synthetic_lengths_can_come_from_a_trace() -> None:
    load = build_load(LoadSpec(source="poisson:rps=10,lengths=azure-code", duration_seconds=60.0, seed=1))
    code = traces.load_trace("azure-code")
    pairs = set(zip(code.input_tokens.tolist(), code.output_tokens.tolist(), strict=True))
    assert set(zip(load.input_tokens.tolist(), load.output_tokens.tolist(), strict=True)) <= pairs


def test_the_same_seed_gives_the_same_load() -> None:
    spec = LoadSpec(source="burst:rps=3", duration_seconds=200.0, rate_scale=1.5, seed=9)
    first, second = build_load(spec), build_load(spec)
    np.testing.assert_array_equal(first.arrival_seconds, second.arrival_seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("sawtooth:rps=1", "unknown synthetic load", id="unknown-kind"),
        pytest.param("poisson:factor=2", "bad option", id="option-of-another-kind"),
        pytest.param("burst:factor=2", "needs rps", id="no-rate"),
        pytest.param("poisson:rps", "bad option", id="no-value"),
    ],
)
def test_malformed_synthetic_loads_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_synthetic(text)


def test_an_unknown_source_names_the_bundled_traces() -> None:
    with pytest.raises(ValueError, match="azure-code"):
        build_load(LoadSpec(source="no-such-trace"))


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"start_seconds": -1.0}, id="negative-start"),
        pytest.param({"duration_seconds": 0.0}, id="empty-slice"),
        pytest.param({"rate_scale": 0.0}, id="zero-rate"),
        pytest.param({"time_compression": -2.0}, id="negative-compression"),
    ],
)
def test_nonsense_specs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        LoadSpec(**kwargs)  # type: ignore[arg-type]
