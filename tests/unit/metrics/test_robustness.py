"""Adversarial exposition text: nothing but `ExpositionError` leaves the parser, nothing at all leaves the scraper.

Hypothesis feeds malformed, truncated, huge and hostile text (NaN, infinities, negative counters, duplicate
series, binary junk, label values full of escapes) through both paths; the scraper must answer every pod
with a sample or an unknown reason, and must stop reading at its size cap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import tracemalloc
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from tests.unit.metrics.fakes import Engines, Reply, Streamed, response

from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines import PRESETS, preset_for
from tokenscale.metrics.engines.preset import sample_from_series
from tokenscale.metrics.exposition import ExpositionError, SeriesParser
from tokenscale.metrics.scraper import Endpoint, Scraper, ScrapeSettings
from tokenscale.metrics.source import PodTarget, Unknown, UnknownReason

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
WANTED_NAMES = sorted({name for preset in PRESETS.values() for name in preset.exposition_names})

values = st.sampled_from(
    ["0", "1", "7", "0.5", "1e6", "3.5"] * 10
    + ["-1", "NaN", "+Inf", "-Inf", "1e308", "-0", "1_0", "0x10", "", "abc", "1 2", "1 2 3", "1 1700000000000"]
)
# Label values: mostly plain, some escaped the way the format allows, some raw hostile characters.
plain_label_text = st.sampled_from(["m", "0", "1", "0.1", "+Inf", "10", "stop"])
label_text = st.one_of(
    *[plain_label_text] * 6,
    st.lists(st.sampled_from(["a", "\\\\", '\\"', "\\n", "}", "{", ",", "=", " ", "#"]), max_size=6).map("".join),
    st.text(alphabet=st.sampled_from('ab"\\{}=,\n\t #'), max_size=8),
)
labels = st.lists(
    st.tuples(
        st.sampled_from(["model_name", "engine", "pid", "tp_rank", "x"] * 4 + ["le", "__name__", "1bad"]), label_text
    ),
    max_size=4,
    unique_by=lambda pair: pair[0],
)


@st.composite
def hostile_line(draw: st.DrawFn, names: tuple[str, ...] = tuple(WANTED_NAMES)) -> str:
    suffix = draw(st.sampled_from(["", "", "", "_bucket", "_sum", "_count", "x", "{", " "]))
    name = draw(st.sampled_from(names)) + suffix
    pairs = draw(labels)
    if suffix == "_bucket" and draw(st.integers(0, 4)) and all(key != "le" for key, _ in pairs):
        pairs.append(("le", draw(st.sampled_from(["0.1", "1", "+Inf", "x", "NaN"]))))
    rendered = ",".join(f'{key}="{value}"' for key, value in pairs)
    brace = draw(st.sampled_from(["{%s}"] * 20 + ["{%s", "%s}", "{%s}}", "%s"])) % rendered
    return name + brace + draw(st.sampled_from([" "] * 10 + ["\t", "", "  "])) + draw(values)


def exposition_texts(names: tuple[str, ...] = tuple(WANTED_NAMES)) -> st.SearchStrategy[str]:
    """Arbitrary text, decoded binary, or lines of ``names`` with hostile labels and values, elisions, junk."""
    lines = st.one_of(hostile_line(names), st.sampled_from(["...", "# TYPE x counter", "", "\x00"]))
    return st.one_of(
        st.text(max_size=400),
        st.binary(max_size=400).map(lambda raw: raw.decode("utf-8", errors="replace")),
        st.lists(lines, max_size=30).map("\n".join),
        st.lists(hostile_line(names), min_size=1, max_size=3).map("\n".join),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), engine=st.sampled_from(sorted(PRESETS)))
def test_parsing_hostile_text_raises_nothing_but_exposition_error(data: st.DataObject, engine: str) -> None:
    preset = preset_for(engine)
    text = data.draw(exposition_texts(preset.exposition_names))
    parser = SeriesParser()
    outcomes = []
    for _ in range(2):  # the second pass reads memoised series texts and must agree with the first
        try:
            series = parser.parse(text, preset.series_filter)
            outcomes.append(sample_from_series(preset, series, timestamp_seconds=0.0, model_name=None))
        except ExpositionError as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]


@settings(max_examples=200, deadline=None)
@given(
    label_values=st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), max_size=20), min_size=1, max_size=5, unique=True
    ),
    counts=st.lists(st.integers(min_value=0, max_value=10**9), min_size=5, max_size=5),
)
def test_label_values_with_any_escapes_round_trip(label_values: list[str], counts: list[int]) -> None:
    """Whatever the label values hold, the library's own escaping parses back to them and the counts add up."""
    registry = CollectorRegistry()
    gauge = Gauge("vllm:num_requests_waiting", "waiting", ["model_name", "weird"], registry=registry)
    for value, count in zip(label_values, counts, strict=False):
        gauge.labels(model_name="m", weird=value).set(count)
    text = generate_latest(registry).decode()
    series = SeriesParser().parse(text, preset_for("vllm").series_filter)
    assert sorted(s.label("weird") or "" for s in series) == sorted(label_values)
    sample = sample_from_series(preset_for("vllm"), series, timestamp_seconds=0.0, model_name="m")
    assert sample.requests_waiting == sum(counts[: len(label_values)])


def _scrape(answer: Reply, *, max_body_bytes: int = 1 << 20) -> EngineSample | Unknown:
    """One scrape of an engine on 127.0.0.9 that answers ``answer``."""

    async def run() -> EngineSample | Unknown:
        engines = await Engines(lambda _: answer).start(["127.0.0.9"])
        try:
            async with Scraper(
                ScrapeSettings(allowed_networks=LOOPBACK, max_body_bytes=max_body_bytes, timeout_seconds=5.0)
            ) as scraper:
                endpoint = Endpoint(preset=preset_for("vllm"), port=engines.port)
                return (await scraper.scrape([PodTarget("p", "127.0.0.9")], endpoint))["p"]
        finally:
            await engines.stop()

    return asyncio.run(run())


@settings(max_examples=150, deadline=None)
@given(
    body=st.one_of(st.binary(max_size=600), exposition_texts(preset_for("vllm").exposition_names).map(str.encode)),
    status=st.sampled_from([200, 200, 200, 204, 301, 404, 500, 503]),
    headers=st.dictionaries(
        st.sampled_from(["content-type", "content-encoding", "set-cookie", "x-junk"]),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
        max_size=3,
    ),
)
def test_scraper_answers_hostile_responses_with_a_sample_or_a_reason(
    body: bytes, status: int, headers: dict[str, str]
) -> None:
    result = _scrape(response(status, body, headers=headers))
    assert isinstance(result, EngineSample | Unknown)
    if isinstance(result, Unknown):
        assert result.reason in set(UnknownReason)
        assert result.message


def test_ten_megabyte_body_is_refused_with_bounded_memory() -> None:
    chunk_bytes = 64 * 1024
    cap = 1024 * 1024
    total_bytes = 10 * 1024 * 1024
    sent = 0

    async def ten_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(total_bytes // chunk_bytes):
            sent += chunk_bytes
            yield b"vllm:prompt_tokens_total 1\n" * (chunk_bytes // 27) + b"\n" * (chunk_bytes % 27)

    tracemalloc.start()
    try:
        result = _scrape(Streamed(ten_megabytes()), max_body_bytes=cap)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, Unknown)
    assert result.reason == UnknownReason.TOO_LARGE
    # The scraper stopped reading and closed: the engine could not send the rest (what it did send past the cap
    # sat in the kernel's socket buffers, not in the scraper's memory).
    assert sent < total_bytes
    assert peak_bytes < 2 * cap


@pytest.mark.parametrize("size_bytes", [pytest.param(10 * 1024 * 1024, id="10MB")])
def test_huge_exposition_of_wanted_lines_parses_or_fails_cleanly(size_bytes: int) -> None:
    """The CLI parses files without a cap: a 10 MB file of one repeated series is a duplicate, not a crash."""
    line = 'vllm:prompt_tokens_total{model_name="m"} 1\n'
    text = line * (size_bytes // len(line))
    with pytest.raises(ExpositionError, match="duplicate"):
        SeriesParser().parse(text, preset_for("vllm").series_filter)
