"""Exposition text to `EngineSample`, through a plan per layout (`tokenscale.metrics.layout`) when one applies.

`SampleReader.read` gives exactly what the generic path (`SeriesParser.parse`, then `sample_from_series`)
gives, or raises what it raises; it only gets there faster for the pods of a deployment, which expose one
layout. A read takes the first of these that applies:

1. **Skeleton.** Once two scrapes of a layout had the same text apart from the values after each ``}`` (the
   *skeleton*: comments, series texts, the lines of other families; `re.split` at the value runs), a source
   whose last text matched it splits the new text the same way and, if the skeleton is unchanged, hands the
   plan the kept lines' value runs. Equal skeletons mean equal candidate lines: a line is a candidate by its
   first characters, before any ``}``, and its series text ends at its last ``}``, so only the values differ
   (a layout whose series texts hold a ``}`` of their own gets no skeleton). The split scans the whole text, so
   it is used only where the text holds at most twice as many value runs as candidate lines (a ``name[]``
   answer, not a whole exposition with the API server's own families).
2. **Layout.** The family filter's split (`SeriesFilter.split_candidate_lines`); its heads (the series texts)
   are the layout, looked up among the layouts seen (compiled on first sight, `compile_plan`), and the plan
   reads the values.
3. **Generic.** A layout without a plan, or values the plan leaves to it (`LayoutPlan.sample` answered None):
   the generic path, which reads or refuses them with its own message.

Memos are bounded: layouts (``max_layouts``) and sources (``max_sources``) are each forgotten all at once when
full, like `SeriesParser`'s memo.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple

from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines.preset import EnginePreset, sample_from_series
from tokenscale.metrics.exposition import SeriesParser
from tokenscale.metrics.layout import LayoutPlan, Picker, compile_plan, picker

__all__ = ["ReaderStats", "SampleReader"]

_VALUE_RUNS = re.compile(r"\}([^\n}]*)")
"""A value run: what follows a ``}`` up to the end of its line or the next ``}``. A candidate line's value
(`SeriesFilter` splits the line at its last ``}``) is the run after its last ``}``."""
_SKELETON_PROBES = 3
"""Scrapes of a layout whose skeletons are compared before giving up on the skeleton read for it."""
_MAX_RUNS_PER_LINE = 2
"""Most value runs per candidate line for which splitting the whole text beats the family filter."""


class ReaderStats(NamedTuple):
    """How a `SampleReader`'s reads went, counted since it was made."""

    layouts_compiled: int
    """Layouts seen for the first time (with or without a plan)."""
    skeleton_reads: int
    layout_reads: int
    generic_reads: int


@dataclass(frozen=True, slots=True)
class _Skeleton:
    pieces: list[str]
    """The text between value runs (a list, to compare with a fresh split's slice)."""
    kept: Picker | None
    """The kept lines' value runs among all the text's value runs (None: all of them, in order)."""
    fixed_chars: int
    """The text's length less its value runs."""


@dataclass(slots=True)
class _Layout:
    """A layout seen: its plan (None: always the generic path), and its skeleton once two scrapes agreed."""

    preset: EnginePreset  # holds the preset alive while the layout is remembered under its id()
    heads: tuple[str, ...]
    plan: LayoutPlan | None
    skeleton: _Skeleton | None = None
    probe: list[str] | None = None
    probes_left: int = _SKELETON_PROBES


class SampleReader:
    """Reads exposition texts into samples, remembering the layouts it has seen (see the module docstring).

    One reader serves every pod of a scraper. ``parser`` is the generic path's parser, whose memo of series
    texts the plans share.
    """

    def __init__(
        self, *, parser: SeriesParser | None = None, max_layouts: int = 1_024, max_sources: int = 65_536
    ) -> None:
        self._parser = parser or SeriesParser()
        self._max_layouts = max_layouts
        self._max_sources = max_sources
        self._layouts: dict[tuple[int, str | None, int, str, str], list[_Layout]] = {}
        self._layout_count = 0
        # Per source: the layout its last text had, and the skeleton that text did not match (None if none).
        self._recent: dict[tuple[int, str | None, Hashable], tuple[_Layout, _Skeleton | None]] = {}
        self._stats = [0, 0, 0, 0]

    @property
    def stats(self) -> ReaderStats:
        return ReaderStats(*self._stats)

    def read(
        self,
        preset: EnginePreset,
        text: str,
        *,
        timestamp_seconds: float,
        model_name: str | None,
        source: Hashable = None,
    ) -> EngineSample:
        """``text`` read with ``preset`` for ``model_name`` (None: every model), stamped ``timestamp_seconds``.

        ``source`` names where the text comes from (the scraper passes the pod's URL): a source whose texts keep
        one skeleton is read by it. Raises as `sample_from_series` after `SeriesParser.parse` does.
        """
        source_key = (id(preset), model_name, source)
        recent = self._recent.get(source_key)
        if recent is not None:
            layout, rejected = recent
            skeleton = layout.skeleton
            if skeleton is not None and skeleton is not rejected:
                parts = _VALUE_RUNS.split(text)
                if parts[0::2] == skeleton.pieces:
                    return self._read_runs(
                        layout, skeleton, text, parts[1::2], timestamp_seconds=timestamp_seconds, model_name=model_name
                    )
                self._recent[source_key] = (layout, skeleton)

        lines = preset.series_filter.split_candidate_lines(text)
        if lines:
            heads, rests = zip(*lines, strict=True)
            layout = self._layout(preset, heads, model_name)
            if recent is None or recent[0] is not layout:
                if len(self._recent) >= self._max_sources:
                    self._recent.clear()
                self._recent[source_key] = (layout, None)
            plan = layout.plan
            if plan is not None and _short_enough(rests, plan.max_value_chars):
                texts = rests if plan.kept is None else plan.kept(rests)
                sample = plan.sample(texts, timestamp_seconds=timestamp_seconds)
                if sample is not None:
                    self._stats[2] += 1
                    if layout.skeleton is None and layout.probes_left:
                        self._probe(layout, text, lines)
                    return sample
        self._stats[3] += 1
        series = self._parser.parse_lines(lines, preset.series_filter)
        return sample_from_series(preset, series, timestamp_seconds=timestamp_seconds, model_name=model_name)

    def _read_runs(
        self,
        layout: _Layout,
        skeleton: _Skeleton,
        text: str,
        runs: list[str],
        *,
        timestamp_seconds: float,
        model_name: str | None,
    ) -> EngineSample:
        plan = layout.plan
        assert plan is not None  # a skeleton is only made for a layout with a plan
        limit = plan.max_value_chars
        if len(text) - skeleton.fixed_chars <= limit or max(map(len, runs)) <= limit:
            texts = runs if skeleton.kept is None else skeleton.kept(runs)
            sample = plan.sample(texts, timestamp_seconds=timestamp_seconds)
            if sample is not None:
                self._stats[1] += 1
                return sample
        self._stats[3] += 1
        series = self._parser.parse(text, layout.preset.series_filter)
        return sample_from_series(layout.preset, series, timestamp_seconds=timestamp_seconds, model_name=model_name)

    def _layout(self, preset: EnginePreset, heads: tuple[str, ...], model_name: str | None) -> _Layout:
        """The layout of ``heads``, compiled on first sight. Hashing two heads and comparing all of them costs
        less than hashing all of them."""
        key = (id(preset), model_name, len(heads), heads[0], heads[-1])
        seen = self._layouts.get(key)
        if seen is not None:
            for layout in seen:
                if layout.heads == heads:
                    return layout
        if self._layout_count >= self._max_layouts:
            self._layouts.clear()
            self._recent.clear()
            self._layout_count = 0
        self._stats[0] += 1
        layout = _Layout(preset, heads, compile_plan(preset, heads, parser=self._parser, model_name=model_name))
        self._layouts.setdefault(key, []).append(layout)
        self._layout_count += 1
        return layout

    def _probe(self, layout: _Layout, text: str, lines: list[tuple[str, str]]) -> None:
        """Compare this text's skeleton with the last probe's; make the layout's skeleton when they agree."""
        parts = _VALUE_RUNS.split(text)
        pieces = parts[0::2]
        # A "}" inside a series text (in a label value) starts a run that is part of the series: equal skeletons
        # would no longer mean equal series.
        if len(pieces) - 1 > _MAX_RUNS_PER_LINE * len(lines) or any("}" in head[:-1] for head in layout.heads):
            layout.probes_left = 0
            return
        if pieces != layout.probe:
            layout.probe = pieces
            layout.probes_left -= 1
            return
        layout.probe = None
        layout.probes_left = 0
        assert layout.plan is not None
        runs = parts[1::2]
        line_runs = _candidate_runs(layout.plan.preset, text, pieces, runs, lines)
        if line_runs is not None:
            kept_runs = tuple(line_runs[line] for line in layout.plan.kept_lines)
            kept = None if kept_runs == tuple(range(len(runs))) else picker(kept_runs)
            layout.skeleton = _Skeleton(pieces, kept, len(text) - sum(map(len, runs)))


def _short_enough(texts: tuple[str, ...], limit: int) -> bool:
    """Whether no text is longer than ``limit``; their total length usually answers it at the cost of a join."""
    return len("".join(texts)) <= limit or max(map(len, texts)) <= limit


def _candidate_runs(
    preset: EnginePreset, text: str, pieces: list[str], runs: list[str], lines: list[tuple[str, str]]
) -> list[int] | None:
    """For each candidate line, the index of its value run (the last run on its line), or None if the two
    splits do not line up (they always should)."""
    last_run_on_line: dict[int, int] = {}
    line_number = 0
    for run, piece in enumerate(pieces[:-1]):  # run ``run`` follows piece ``run``; runs hold no newline
        line_number += piece.count("\n")
        last_run_on_line[line_number] = run
    wanted = preset.series_filter
    found = [n for n, line in enumerate(text.split("\n")) if wanted.split_candidate_lines(line)]
    if len(found) != len(lines) or any(n not in last_run_on_line for n in found):
        return None
    line_runs = [last_run_on_line[n] for n in found]
    if any(runs[run] != rest for run, (_, rest) in zip(line_runs, lines, strict=True)):
        return None
    return line_runs
