"""Prometheus text exposition: the sample lines an engine preset reads, parsed and aggregated per pod.

Parsing (`SeriesParser.parse`) has two stages:

1. **Family filter.** One compiled regular expression picks the lines that start with a wanted family name
   (`SeriesFilter`). Everything else (``# HELP``/``# TYPE`` comments, the API server's HTTP and process
   metrics, upstream ``...`` elisions, binary junk) is never looked at. This is the robustness boundary and
   the first speed-up: a 50 KB vLLM scrape keeps 96 of its 518 lines (4× less parsing; docs/benchmarks.md).
2. **Series parse.** Each kept line is split at its last ``}`` into the series text (name and labels) and
   the value (a value and a timestamp never contain ``}``); the filter's regular expression does the split.
   The series text is parsed by `prometheus_client.parser.text_string_to_metric_families` (label quoting,
   escapes, name rules) the first time it is seen and memoised, so a repeated scrape of the same label sets
   pays only for the number (another 7×).
   The value is read the same way whether memoised or not: `float` on the rest of the line when it is one
   number without digit-group underscores (the usual line), else `parse_number` on each token.

This parse and the aggregation below are the *generic path*, the reference semantics. The scraper reads
through `tokenscale.metrics.reader.SampleReader`, which for a layout it has seen before (the same series texts
in the same order, as every pod of a deployment exposes) reads only the values, by position, with a plan
compiled once (`tokenscale.metrics.layout`), and falls back to this path for anything unusual: its samples and
errors are this path's.

Aggregation (`sum_values`, `fraction_value`, `shared_value`, `histogram_from_series`) turns the series of
one name into one pod-level number, collapsing the label sets the engine splits its view into:

- process copies (``pid``; vLLM PR #28792: with ``--api-server-count > 1`` a gauge without a multiprocess
  mode appears once per API-server process, one carrying the value and the rest 0) and a preset's
  ``copy_labels`` (SGLang: every TP/PP rank exports the same scheduler view);
- engine ranks (vLLM ``engine``, SGLang ``dp_rank``, Dynamo ``dp_rank``), which are independent parts of
  the pod;
- every other label (``finished_reason``, ``is_streaming``, ...), summed as parts.

Any value that cannot be what the engine means (NaN, infinite, a negative count, a fraction outside 0–1, a
histogram whose cumulative counts fall) raises `ExpositionError`; the scraper turns that into an *unknown*
pod with the message as its reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from tokenscale.core.types import Histogram

__all__ = [
    "PROCESS_LABEL",
    "ExpositionError",
    "Series",
    "SeriesFilter",
    "SeriesId",
    "SeriesParser",
    "fraction_value",
    "histogram_from_series",
    "parse_number",
    "select_model",
    "shared_value",
    "sum_values",
]

PROCESS_LABEL = "pid"
"""The label that splits one engine's view per API-server process (see the module docstring)."""

MODEL_LABEL = "model_name"
BUCKET_LABEL = "le"
MAX_LINE_CHARS = 4096
"""Longest sample line read. Real series lines are under 1 KB; the library's label parser is pure Python and
superlinear in quotes, so a longer line is refused rather than parsed."""
MAX_MEMO_KEY_CHARS = 1024


class ExpositionError(ValueError):
    """The exposition text of a wanted family is malformed or holds a value the engine cannot mean."""


@dataclass(frozen=True, slots=True)
class SeriesId:
    """What identifies a series, with the parts aggregation needs worked out once (the parser memoises it).

    ``group`` is ``labels`` without ``le``; ``bucket_bound`` is ``le`` as a number on ``_bucket`` series.
    """

    name: str
    labels: tuple[tuple[str, str], ...]
    model_name: str | None
    bucket_bound: float | None
    group: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, name: str, labels: Mapping[str, str]) -> SeriesId:
        """Raises `ExpositionError` for a ``_bucket`` series whose ``le`` is missing or not a number."""
        ordered = tuple(sorted(labels.items()))
        bound = None
        if name.endswith("_bucket"):
            le_text = labels.get(BUCKET_LABEL)
            if le_text is None:
                raise ExpositionError(f"{name} without an le label")
            bound = parse_number(le_text)
            if math.isnan(bound):
                raise ExpositionError(f"{name} with le={le_text!r}")
        group = tuple(pair for pair in ordered if pair[0] != BUCKET_LABEL)
        return cls(name, ordered, labels.get(MODEL_LABEL), bound, group)


class Series(NamedTuple):
    """One sample line: its identity (exposition name such as ``vllm:prompt_tokens_total``, labels) and value."""

    id: SeriesId
    value: float

    def label(self, name: str) -> str | None:
        for key, value in self.id.labels:
            if key == name:
                return value
        return None


class SeriesFilter:
    """The sample names one preset reads, and the regular expression that finds their lines.

    ``prefixes`` are family names a wanted line starts with (a histogram's base name covers its ``_bucket``,
    ``_sum`` and ``_count`` lines); ``names`` are the exact sample names kept after parsing, so a line that
    merely shares a prefix (``…_created``) is dropped.
    """

    def __init__(self, *, prefixes: Iterable[str], names: Iterable[str]) -> None:
        self.names = frozenset(names)
        ordered = sorted(set(prefixes), key=len, reverse=True)
        if not ordered:
            raise ValueError("a series filter needs at least one family name")
        # A literal head ("\nvllm:") lets the regex engine skip ahead with a fast substring search. Group 1 is
        # the name and, when the line holds a "}", everything up to the last one (the series text: a value and
        # a timestamp never hold a "}"); group 2 is the rest of the line. Splitting here, in the regex engine,
        # saves a search and two slices per line in Python.
        first, last = min(ordered), max(ordered)
        common = first[: next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), len(first))]
        alternatives = "|".join(re.escape(prefix[len(common) :]) for prefix in ordered)
        self._lines = re.compile("\n(" + re.escape(common) + "(?:" + alternatives + ")(?:[^\n]*\\})?)([^\n}]*)")

    def candidate_lines(self, text: str) -> list[str]:
        """Lines of ``text`` that start with a wanted family name, in order."""
        return [head + rest for head, rest in self.split_candidate_lines(text)]

    def split_candidate_lines(self, text: str) -> list[tuple[str, str]]:
        """`candidate_lines`, each split in two: up to and including its last ``}`` (or, without one, the
        family name the line starts with), and the rest."""
        return self._lines.findall("\n" + text)


def parse_number(token: str) -> float:
    """A sample value or timestamp as Prometheus writes it: a float, ``NaN``, ``+Inf`` or ``-Inf``.

    Stricter than Python's `float` where the exposition format is: no digit-group underscores.
    """
    if "_" in token:
        raise ExpositionError(f"invalid number {token[:40]!r}")
    try:
        return float(token)
    except ValueError:
        raise ExpositionError(f"invalid number {token[:40]!r}") from None


class SeriesParser:
    """Parses the wanted lines of exposition texts, memoising the series text of each line.

    One parser is shared by every pod of a scraper: pods of one deployment expose the same label sets, so
    after the first scrape a line costs a dictionary look-up and a `float`. The memo is bounded: it is
    cleared when it reaches ``max_memo_entries`` and keys longer than 1 KB are never stored.
    """

    def __init__(self, *, max_memo_entries: int = 65_536) -> None:
        self._memo: dict[str, SeriesId] = {}
        self._max_memo_entries = max_memo_entries

    def parse(self, text: str, wanted: SeriesFilter) -> list[Series]:
        """The series of ``text`` whose names ``wanted`` keeps.

        Raises `ExpositionError` for a malformed wanted line or a series that appears twice (Prometheus
        rejects such a scrape too). Lines of other families are ignored whatever they hold.
        """
        return self.parse_lines(wanted.split_candidate_lines(text), wanted)

    def parse_lines(self, lines: Iterable[tuple[str, str]], wanted: SeriesFilter) -> list[Series]:
        """`parse` of lines already found and split by ``wanted.split_candidate_lines``."""
        found: list[Series] = []
        seen: set[str] = set()
        memo = self._memo
        names = wanted.names
        for head, rest in lines:
            if len(head) + len(rest) > MAX_LINE_CHARS:
                line = head + rest
                raise ExpositionError(f"sample line longer than {MAX_LINE_CHARS} characters: {line[:80]!r}")
            if head[-1] == "}":
                key, value_text = head, rest
            else:  # no label set: the series text is the name, up to the first blank
                key, _, value_text = (head + rest).replace("\t", " ").partition(" ")
            series_id = memo.get(key)
            if series_id is None:
                series_id = self._identify(key)
            if series_id.name not in names:
                continue
            # The usual line is a value alone, which `float` reads blanks and all; anything else (a timestamp,
            # digit-group underscores, junk) takes the exact path.
            if "_" in value_text:
                value = _value_of(value_text, line=head + rest)
            else:
                try:
                    value = float(value_text)
                except ValueError:
                    value = _value_of(value_text, line=head + rest)
            if key in seen:
                raise ExpositionError(f"duplicate series {key[:120]!r}")
            seen.add(key)
            found.append(Series(series_id, value))
        return found

    def series_id(self, key: str) -> SeriesId:
        """The identity of the series text ``key`` (name and label set, up to its last ``}``), memoised.

        Raises `ExpositionError` when ``key`` is not one well-formed series text.
        """
        series_id = self._memo.get(key)
        return self._identify(key) if series_id is None else series_id

    def _identify(self, key: str) -> SeriesId:
        series_id = _parse_series_text(key)
        if len(key) <= MAX_MEMO_KEY_CHARS:
            if len(self._memo) >= self._max_memo_entries:
                self._memo.clear()
            self._memo[key] = series_id
        return series_id


def _value_of(value_text: str, *, line: str) -> float:
    """The value in ``value_text``, what follows the series text on ``line``: one number and an optional
    timestamp (checked, not used: the scrape time is what counts)."""
    tokens = value_text.split()
    if not tokens or len(tokens) > 2:
        raise ExpositionError(f"expected a value and an optional timestamp: {line[:120]!r}")
    value = parse_number(tokens[0])
    if len(tokens) == 2:
        parse_number(tokens[1])
    return value


def _parse_series_text(key: str) -> SeriesId:
    """Identity of the series text ``key`` (name and label set), read by prometheus_client's text parser.

    The library is given ``key`` with a dummy value 0. Had ``key`` held anything after its label set (which
    the library tolerates), that text would surface as the value or a timestamp, so the parse must give
    exactly value 0 and no timestamp: then ``key`` is the series text and nothing else.
    """
    try:
        families = list(text_string_to_metric_families(key + " 0"))
    except Exception as error:  # third-party parser on untrusted input: any failure is a malformed line
        raise ExpositionError(f"malformed sample line {key[:120]!r}: {error}"[:300]) from None
    if len(families) != 1 or len(families[0].samples) != 1:
        raise ExpositionError(f"malformed sample line {key[:120]!r}")
    sample = families[0].samples[0]
    if sample.value != 0 or sample.timestamp is not None:
        raise ExpositionError(f"malformed sample line {key[:120]!r}: text after the label set")
    return SeriesId.of(sample.name, sample.labels)


def select_model(series: Iterable[Series], *, model_name: str | None) -> list[Series]:
    """The series of one model: those whose ``model_name`` label is ``model_name``, or all when it is None.

    A series without a ``model_name`` label (Dynamo's worker gauges) describes the whole pod and is kept.
    """
    if model_name is None:
        return list(series)
    return [s for s in series if s.id.model_name in (None, model_name)]


Labels = tuple[tuple[str, str], ...]


def _without(labels: Labels, names: Collection[str]) -> Labels:
    if not names:
        return labels
    return tuple(pair for pair in labels if pair[0] not in names)


def _count(series: Series) -> float:
    value = series.value
    if not 0.0 <= value < math.inf:  # also false for NaN
        raise ExpositionError(f"{series.id.name} must be a finite non-negative count, got {value}")
    return value


def _max_over(series: Iterable[Series], copies: Collection[str]) -> dict[Labels, float]:
    """Collapse series that differ only in the ``copies`` labels (copies of one view) by their maximum."""
    groups: dict[Labels, float] = {}
    for s in series:
        value = _count(s)
        key = _without(s.id.labels, copies)
        groups[key] = max(value, groups.get(key, 0.0))
    return groups


def sum_values(series: Sequence[Series], *, copy_labels: Collection[str] = ()) -> float:
    """A count over the pod: copies (``copy_labels``) collapse by maximum, every other label set adds up.

    Used for counters and count gauges. ``pid`` is a part here, not a copy: per-process counts add up, and
    a per-process gauge copy that never set its value reads 0.
    """
    if not copy_labels:
        return sum(_count(s) for s in series)
    return sum(_max_over(series, copy_labels).values())


def shared_value(series: Sequence[Series], *, copy_labels: Collection[str] = ()) -> float:
    """Like `sum_values`, but ``pid`` copies collapse by maximum too: for configuration (KV capacity)."""
    return sum(_max_over(series, (*copy_labels, PROCESS_LABEL)).values())


def fraction_value(series: Sequence[Series], *, copy_labels: Collection[str] = ()) -> float:
    """A 0–1 fraction over the pod: copies (``pid`` and ``copy_labels``) by maximum, then the mean of parts.

    The parts are engine ranks with equal KV caches, so their mean is exactly the pod's used/total; a
    maximum would let one hot rank scale the whole service.
    """
    parts = list(_max_over(series, (*copy_labels, PROCESS_LABEL)).values())
    if any(value > 1.0 for value in parts):
        raise ExpositionError(f"{series[0].id.name} must be a fraction 0–1, got {max(parts)}")
    return sum(parts) / len(parts)


def histogram_from_series(
    by_name: Mapping[str, Sequence[Series]], *, base_name: str, copy_labels: Collection[str] = ()
) -> Histogram | None:
    """The pod's histogram ``base_name`` from its ``_bucket``, ``_sum`` and ``_count`` series.

    Label sets add up bucket by bucket (copies in ``copy_labels`` by maximum). A missing ``+Inf`` bucket is
    filled in from ``_count`` (and ``count`` from ``+Inf`` when ``_count`` is missing). Returns None when the
    histogram is absent or incomplete (no ``_sum``, or neither ``+Inf`` nor ``_count``): its mean is unknown.
    Raises `ExpositionError` when label sets disagree on bucket bounds or cumulative counts fall.
    """
    buckets = by_name.get(base_name + "_bucket", ())
    sums = by_name.get(base_name + "_sum", ())
    counts = by_name.get(base_name + "_count", ())
    if not (buckets or counts) or not sums:
        return None

    per_set: dict[Labels, dict[float, float]] = {}
    for series_id, value in buckets:  # the hot loop of a scrape: ~100 bucket lines per pod
        if not 0.0 <= value < math.inf:  # as `_count`, inline: also false for NaN
            raise ExpositionError(f"{series_id.name} must be a finite non-negative count, got {value}")
        group = series_id.group if not copy_labels else _without(series_id.group, copy_labels)
        counts_by_bound = per_set.get(group)
        if counts_by_bound is None:
            counts_by_bound = per_set[group] = {}
        bound = series_id.bucket_bound
        assert bound is not None  # `SeriesId.of` sets it on every _bucket series
        previous = counts_by_bound.get(bound)
        if previous is None or value > previous:
            counts_by_bound[bound] = value
    total_sum = _sum_finite(sums, copy_labels=copy_labels)
    total_count = sum_values(counts, copy_labels=copy_labels) if counts else None

    sets = list(per_set.values())
    bounds = sorted(sets[0]) if sets else []
    if any(len(c) != len(bounds) or any(b not in c for b in bounds) for c in sets[1:]):
        raise ExpositionError(f"{base_name} label sets disagree on bucket bounds")
    cumulative = [sets[0][b] for b in bounds] if len(sets) == 1 else [sum(c[b] for c in sets) for b in bounds]
    if cumulative != sorted(cumulative):  # counts are finite (checked above), so sorted means non-decreasing
        raise ExpositionError(f"{base_name} cumulative bucket counts decrease")
    if not bounds or not math.isinf(bounds[-1]):
        if total_count is None:
            return None
        if cumulative and total_count < cumulative[-1]:
            raise ExpositionError(f"{base_name}_count {total_count} is below its last bucket {cumulative[-1]}")
        bounds.append(math.inf)
        cumulative.append(total_count)
    count = total_count if total_count is not None else cumulative[-1]
    return Histogram(bucket_upper_bounds=tuple(bounds), cumulative_counts=tuple(cumulative), sum=total_sum, count=count)


def _sum_finite(series: Sequence[Series], *, copy_labels: Collection[str]) -> float:
    """Sum of a histogram's ``_sum`` series (may be negative for signed observations, never NaN/Inf)."""
    groups: dict[Labels, float] = {}
    for s in series:
        if not math.isfinite(s.value):
            raise ExpositionError(f"{s.id.name} must be finite, got {s.value}")
        key = _without(s.id.labels, copy_labels)
        groups[key] = max(s.value, groups[key]) if key in groups else s.value
    return sum(groups.values())
