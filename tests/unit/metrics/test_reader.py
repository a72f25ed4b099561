"""`SampleReader` (layout plans) reads exactly what the generic path reads: the same sample, bit for bit, or the
same exception with the same message, on every real fixture layout and on layouts with engine parts, process
and rank copies, model filters, fills, duplicates and disagreeing histograms, whatever the values."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from benchmarks import bench_operator
from benchmarks.restricted_exposition import restricted_lines
from benchmarks.vllm_payload import vllm_exposition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.engines.preset import sample_from_series
from tokenscale.metrics.exposition import SeriesParser
from tokenscale.metrics.reader import SampleReader

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metrics"
VLLM_LABELS = 'model_name="m"'


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _bench_exposition() -> str:
    return bench_operator.exposition(prefill=False, elapsed_seconds=5.0).decode()


def _histogram_lines(name: str, labels: str, bounds: tuple[str, ...], counts: tuple[float, ...], total: float) -> str:
    rows = [f'{name}_bucket{{{labels},le="{le}"}} {count}' for le, count in zip(bounds, counts, strict=True)]
    return "\n".join([*rows, f"{name}_count{{{labels}}} {counts[-1]}", f"{name}_sum{{{labels}}} {total}"])


def _vllm_pid_copies() -> str:
    """vLLM with two API-server processes: gauges once per pid (one carries the value), counters per pid."""
    lines = []
    for pid, running, usage in (("1", 4, 0.5), ("2", 0, 0.0)):
        labels = f'{VLLM_LABELS},engine="0",pid="{pid}"'
        lines += [
            f"vllm:num_requests_running{{{labels}}} {running}",
            f"vllm:kv_cache_usage_perc{{{labels}}} {usage}",
            f"vllm:prompt_tokens_total{{{labels}}} {100 * int(pid)}",
            f'vllm:cache_config_info{{block_size="16",num_gpu_blocks="1000",{labels}}} 1.0',
        ]
    return "\n".join(lines)


def _vllm_engines_and_fills() -> str:
    """Two engines (parts), a TTFT without +Inf (filled from _count), an ITL under its new name without +Inf or
    _count (passed over for the old name), request counters by finished_reason, a prefix-sharing _created."""
    lines = []
    for engine in ("0", "1"):
        labels = f'{VLLM_LABELS},engine="{engine}"'
        lines += [
            f"vllm:num_requests_waiting{{{labels}}} {engine}",
            f"vllm:gpu_cache_usage_perc{{{labels}}} 0.25",
            f'vllm:request_success_total{{{labels},finished_reason="stop"}} 10',
            f'vllm:request_success_total{{{labels},finished_reason="length"}} 3',
            f"vllm:prompt_tokens_total_created{{{labels}}} 1.7e9",
            _histogram_lines("vllm:time_to_first_token_seconds", labels, ("0.1", "1.0"), (2.0, 5.0), 3.5),
            f'vllm:inter_token_latency_seconds_bucket{{{labels},le="0.01"}} 4',
            f"vllm:inter_token_latency_seconds_sum{{{labels}}} 0.02",
            _histogram_lines("vllm:time_per_output_token_seconds", labels, ("0.05", "+Inf"), (1.0, 6.0), 0.3),
        ]
    return "\n".join(lines)


def _vllm_two_models() -> str:
    """Two models in one exposition, one label set written in two label orders (two series texts, one id)."""
    lines = []
    for model, running in (("a", 3), ("b", 5)):
        lines += [
            f'vllm:num_requests_running{{model_name="{model}",engine="0"}} {running}',
            f'vllm:generation_tokens_total{{model_name="{model}",engine="0"}} {running * 100}',
            _histogram_lines("vllm:request_prompt_tokens", f'model_name="{model}"', ("10", "+Inf"), (1.0, 2.0), 15),
        ]
    lines.append('vllm:kv_cache_usage_perc{engine="0",model_name="a"} 0.5')
    lines.append('vllm:kv_cache_usage_perc{model_name="a",engine="0"} 0.25')
    return "\n".join(lines)


def _sglang_ranks() -> str:
    """SGLang with two data-parallel ranks (parts) of two tensor-parallel ranks each (copies, which differ here
    so that which copy is taken shows)."""
    lines = []
    for dp in (0, 1):
        for tp in (0, 1):
            labels = f'model_name="m",dp_rank="{dp}",tp_rank="{tp}"'
            ttft = (1.0 + tp, 5.0 - tp + dp)  # the larger copy is tp 1 at 0.5, tp 0 at +Inf
            lines += [
                f"sglang:num_running_reqs{{{labels}}} {dp + 2 + tp}",
                f"sglang:token_usage{{{labels}}} 0.{dp}{5 - tp}",
                f"sglang:max_total_num_tokens{{{labels}}} {1000 - tp}",
                f"sglang:generation_tokens_total{{{labels}}} {5 + tp}",
                _histogram_lines("sglang:time_to_first_token_seconds", labels, ("0.5", "+Inf"), ttft, 2.5 - tp),
            ]
    return "\n".join(lines)


def _trtllm_capacity() -> str:
    labels = 'model_name="q",engine_type="trtllm"'
    return "\n".join(
        [
            f"trtllm_kv_cache_utilization{{{labels}}} 0.25",
            f"trtllm_kv_cache_max_blocks{{{labels}}} 1000",
            f"trtllm_kv_cache_tokens_per_block{{{labels}}} 32",
            f"trtllm_request_success_total{{{labels}}} 7",
            'dynamo_component_inflight_requests{dynamo_endpoint="generate"} 6',
        ]
    )


def _duplicated() -> str:
    line = f"vllm:num_requests_running{{{VLLM_LABELS}}} 1"
    return "\n".join([line, f"vllm:prompt_tokens_total{{{VLLM_LABELS}}} 5", line])


def _disagreeing_bounds() -> str:
    return "\n".join(
        [
            _histogram_lines("vllm:request_prompt_tokens", 'engine="0"', ("10", "+Inf"), (1.0, 2.0), 15),
            _histogram_lines("vllm:request_prompt_tokens", 'engine="1"', ("20", "+Inf"), (1.0, 2.0), 15),
            'vllm:num_requests_running{engine="0"} 1',
        ]
    )


def _unlabelled() -> str:
    """Lines without labels, one of them a name that merely starts with a wanted one (the generic path drops it)."""
    return 'vllm:num_requests_running 3\nvllm:num_requests_waiting7\nvllm:kv_cache_usage_perc{engine="0"} 0.5'


# (engine, model_name, text): each text's label sets and line order are its layout; values are redrawn.
LAYOUTS = [
    pytest.param(
        "vllm",
        None,
        restricted_lines(_bench_exposition(), preset_for("vllm").exposition_names).decode(),
        id="vllm-name-query-answer",
    ),
    pytest.param("vllm", None, _bench_exposition(), id="vllm-bench-whole"),
    pytest.param("vllm", "meta-llama/Llama-3.1-8B-Instruct", vllm_exposition(engines=2, seed=3), id="vllm-2-engines"),
    pytest.param("vllm", None, _fixture("vllm-v1-metrics.txt"), id="vllm-design-doc"),
    pytest.param("vllm", None, _fixture("vllm-v1-metrics-usage-doc.txt"), id="vllm-usage-doc"),
    pytest.param("sglang", None, _fixture("sglang-metrics.txt"), id="sglang-production-metrics"),
    pytest.param("trtllm", None, _fixture("trtllm-dynamo-metrics.txt"), id="trtllm-via-dynamo"),
    pytest.param("trtllm", None, _fixture("dynamo-component-metrics.txt"), id="dynamo-component"),
    pytest.param("vllm", None, _vllm_pid_copies(), id="vllm-pid-copies"),
    pytest.param("vllm", "m", _vllm_engines_and_fills(), id="vllm-engines-fills"),
    pytest.param("vllm", "a", _vllm_two_models(), id="vllm-model-a"),
    pytest.param("vllm", None, _vllm_two_models(), id="vllm-every-model"),
    pytest.param("vllm", "c", _vllm_two_models(), id="vllm-absent-model"),
    pytest.param("sglang", None, _sglang_ranks(), id="sglang-dp-tp-ranks"),
    pytest.param("trtllm", None, _trtllm_capacity(), id="trtllm-capacity"),
    pytest.param("vllm", None, _duplicated(), id="duplicate-series"),
    pytest.param("vllm", None, _disagreeing_bounds(), id="disagreeing-bounds"),
    pytest.param("vllm", None, _unlabelled(), id="unlabelled-line"),
    pytest.param("vllm", None, f"vllm:prompt_tokens_total_created{{{VLLM_LABELS}}} 1.7e9", id="only-dropped-names"),
    pytest.param(
        "vllm",
        None,
        f'vllm:inter_token_latency_seconds_bucket{{{VLLM_LABELS},le="0.01"}} 4\n'
        f"vllm:inter_token_latency_seconds_sum{{{VLLM_LABELS}}} 0.02",
        id="only-an-incomplete-histogram",
    ),
]

_VALUE = re.compile(r"^([^#\n][^\n]*?(?:\}|\S(?=[ \t])))([ \t][^\n}]*)$")
"""A sample line: the series text (up to its last ``}``, or a name followed by a blank) and the value text."""


def _template(text: str) -> tuple[list[str], list[int], list[float]]:
    """``text`` as lines, the indices of its sample lines, and their values (0 where not a number)."""
    lines = text.split("\n")
    slots: list[int] = []
    originals: list[float] = []
    for index, line in enumerate(lines):
        match = _VALUE.match(line)
        if match is None:
            continue
        lines[index] = match.group(1)
        slots.append(index)
        try:
            originals.append(float(match.group(2).split()[0]))
        except (ValueError, IndexError):
            originals.append(0.0)
    return lines, slots, originals


HOSTILE = [
    "NaN", "nan", "+Inf", "-Inf", "infinity", "-1", "-0", "-0.0", "1_000", "1 1700000000000", "1 2 3", "", "abc",
    "0x10", "1e308", "1e309", "+5", ".5", "5.", "\u0663", "7 ", "\t7", "1" * 4100,
]  # fmt: skip


def _number(value: float, style: str) -> str:
    match style:
        case "repr":
            return repr(value)
        case "g":
            return f"{value:g}"
        case "fixed":
            return f"{value:.0f}"
        case _:
            return f"{value:.3e}"


@st.composite
def scrapes(draw: st.DrawFn, originals: list[float]) -> list[str]:
    """Value texts for one scrape: the layout's values scaled alike (buckets stay cumulative), in one of several
    spellings, with a few lines made hostile now and then; or every value drawn on its own."""
    if draw(st.integers(0, 9)) == 0:
        each = st.one_of(st.sampled_from(HOSTILE), st.floats(allow_nan=True).map(repr), st.integers(0, 99).map(str))
        return [draw(each) for _ in originals]
    scale = draw(st.sampled_from([1.0, 1.0, 2.0, 0.5, 0.0, 1e6, 1e-3, 3.0, 1e300]))
    style = draw(st.sampled_from(["repr", "g", "fixed", "e"]))
    values = [_number(value * scale, style) for value in originals]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if values:
            values[draw(st.integers(0, len(values) - 1))] = draw(st.sampled_from(HOSTILE))
    return values


def _render(lines: list[str], slots: list[int], values: list[str]) -> str:
    rendered = list(lines)
    for index, value in zip(slots, values, strict=True):
        rendered[index] = f"{rendered[index]} {value}"
    return "\n".join(rendered)


def _outcome(call: object) -> str:
    """The sample's repr (floats spelled exactly, -0.0 included) or the exception's type and message."""
    try:
        return repr(call())  # type: ignore[operator]
    except Exception as error:
        return f"{type(error).__name__}: {error}"


def _generic(engine: str, text: str, model_name: str | None) -> str:
    preset = preset_for(engine)

    def read() -> object:
        series = SeriesParser().parse(text, preset.series_filter)
        return sample_from_series(preset, series, timestamp_seconds=3.0, model_name=model_name)

    return _outcome(read)


def _planned(reader: SampleReader, engine: str, text: str, model_name: str | None) -> str:
    preset = preset_for(engine)
    return _outcome(lambda: reader.read(preset, text, timestamp_seconds=3.0, model_name=model_name, source="pod"))


@pytest.mark.parametrize(("engine", "model_name", "text"), LAYOUTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reader_reads_every_scrape_of_a_layout_as_the_generic_path(
    engine: str, model_name: str | None, text: str, data: st.DataObject
) -> None:
    lines, slots, originals = _template(text)
    reader = SampleReader()
    # Several scrapes through one reader: the first compiles the layout, later ones use its plan and skeleton.
    for values in data.draw(st.lists(scrapes(originals), min_size=1, max_size=6)):
        scrape = _render(lines, slots, values)
        assert _planned(reader, engine, scrape, model_name) == _generic(engine, scrape, model_name)


@pytest.mark.parametrize(("engine", "model_name", "text"), LAYOUTS)
def test_reader_reads_the_layout_as_written(engine: str, model_name: str | None, text: str) -> None:
    reader = SampleReader()
    for _ in range(4):
        assert _planned(reader, engine, text, model_name) == _generic(engine, text, model_name)


def _vllm_text(running: float | str, *, extra: str = "") -> str:
    return (
        f"vllm:num_requests_running{{{VLLM_LABELS}}} {running}\n"
        f'vllm:request_success_total{{{VLLM_LABELS},finished_reason="stop"}} 9\n'
        + _histogram_lines("vllm:time_to_first_token_seconds", VLLM_LABELS, ("0.1", "+Inf"), (1.0, 4.0), 0.6)
        + extra
    )


def test_later_scrapes_of_a_layout_use_its_plan_without_compiling_again() -> None:
    reader = SampleReader()
    vllm = preset_for("vllm")
    samples = [reader.read(vllm, _vllm_text(n), timestamp_seconds=1.0, model_name=None) for n in (1, 2)]
    assert [s.requests_running for s in samples] == [1.0, 2.0]
    stats = reader.stats
    assert (stats.layouts_compiled, stats.generic_reads) == (1, 0)
    assert stats.layout_reads + stats.skeleton_reads == 2


def test_a_changed_layout_compiles_a_plan_of_its_own() -> None:
    reader = SampleReader()
    vllm = preset_for("vllm")
    reader.read(vllm, _vllm_text(1), timestamp_seconds=1.0, model_name=None)
    extra = f'\nvllm:request_success_total{{{VLLM_LABELS},finished_reason="length"}} 2'
    sample = reader.read(vllm, _vllm_text(1, extra=extra), timestamp_seconds=1.0, model_name=None)
    assert sample.requests_finished_total == 11.0
    assert reader.stats.layouts_compiled == 2
    assert reader.stats.generic_reads == 0


def test_a_source_whose_skeleton_repeats_is_read_by_it() -> None:
    reader = SampleReader()
    vllm = preset_for("vllm")
    for running in range(5):
        sample = reader.read(vllm, _vllm_text(running), timestamp_seconds=1.0, model_name=None, source="a")
        assert sample.requests_running == running
    # Read 1 compiles and probes, read 2 finds the same skeleton, reads 3-5 split at the values only.
    assert reader.stats == (1, 3, 2, 0)


def test_changing_unlabelled_lines_of_other_families_keep_a_source_off_the_skeleton() -> None:
    reader = SampleReader()
    vllm = preset_for("vllm")
    for seconds in range(5):
        text = _vllm_text(1) + f"\nprocess_cpu_seconds_total {seconds}.5"
        reader.read(vllm, text, timestamp_seconds=1.0, model_name=None, source="a")
    assert reader.stats == (1, 0, 5, 0)


@pytest.mark.parametrize(
    ("model_name", "models"),
    [
        pytest.param(None, ("a", "a", "a", "b", "b", "a"), id="every-model"),
        pytest.param("a", ("a", "a", "a", "b", "b", "a"), id="model-a"),
        # A "}" in a label value: the text after it is a value run, so the skeleton cannot tell the series apart.
        pytest.param("a}b", ("a}b", "a}b", "a}b", "a}c", "a}c", "a}b"), id="brace-in-a-label-value"),
    ],
)
def test_a_source_whose_series_change_is_read_as_its_new_layout(
    model_name: str | None, models: tuple[str, ...]
) -> None:
    """Label values change but every value run stays in place."""
    reader = SampleReader()
    for model in models:
        text = _vllm_text(3).replace('model_name="m"', f'model_name="{model}"')
        assert _planned(reader, "vllm", text, model_name) == _generic("vllm", text, model_name)


def test_a_layout_the_generic_path_refuses_is_never_planned() -> None:
    reader = SampleReader()
    vllm = preset_for("vllm")
    for _ in range(3):
        with pytest.raises(ValueError, match="duplicate series"):
            reader.read(vllm, _duplicated(), timestamp_seconds=1.0, model_name=None)
    assert reader.stats == (1, 0, 0, 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("NaN", "must be a finite non-negative count, got nan", id="nan"),
        pytest.param("-1", "must be a finite non-negative count, got -1.0", id="negative"),
        pytest.param("1_0", "invalid number '1_0'", id="underscore"),
    ],
)
def test_a_value_the_plan_leaves_to_the_generic_path_gets_its_message(value: str, message: str) -> None:
    reader = SampleReader()
    vllm = preset_for("vllm")
    for _ in range(3):  # past the probes: the skeleton read hands the value over too
        reader.read(vllm, _vllm_text(1), timestamp_seconds=1.0, model_name=None)
    with pytest.raises(ValueError, match=re.escape(message)):
        reader.read(vllm, _vllm_text(value), timestamp_seconds=1.0, model_name=None)
    assert reader.stats.generic_reads == 1


def test_layouts_are_forgotten_all_at_once_when_the_memo_is_full() -> None:
    reader = SampleReader(max_layouts=2)
    vllm = preset_for("vllm")
    texts = [_vllm_text(1, extra=f'\nvllm:request_success_total{{finished_reason="{r}"}} 1') for r in "abc"]
    for text in [*texts, texts[0]]:
        reader.read(vllm, text, timestamp_seconds=1.0, model_name=None)
    assert reader.stats.layouts_compiled == 4  # the third cleared the memo, so the first is compiled again


def test_filled_histogram_reads_inf_from_count() -> None:
    text = _vllm_engines_and_fills()
    reader = SampleReader()
    sample = reader.read(preset_for("vllm"), text, timestamp_seconds=1.0, model_name="m")
    assert sample.time_to_first_token_seconds is not None
    assert sample.time_to_first_token_seconds.bucket_upper_bounds == (0.1, 1.0, math.inf)
    assert sample.time_to_first_token_seconds.cumulative_counts == (4.0, 10.0, 10.0)
    assert reader.stats.layout_reads == 1
