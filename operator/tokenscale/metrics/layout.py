"""Layout plans: a pod's exposition read into an `EngineSample` by position, worked out once per layout.

The pods of one deployment expose the same *layout*: the same series texts (name and label set) in the same
order, only the values changing from scrape to scrape. Everything `sample_from_series` decides from that
structure alone is decided once, by `compile_plan`, from the layout's series ids:

- which of the family filter's candidate lines are kept (the exact sample names, `SeriesFilter.names`) and
  which of those belong to the model (`select_model`);
- per scalar field, the first present name and how its series group into parts (added) and copies
  (maximum) under its aggregation;
- per histogram field, which base names are evaluated, the label sets of their buckets, the sorted bounds,
  which values sit at each bound, how ``_sum`` and ``_count`` series group, and whether ``+Inf`` is filled in
  from ``_count``;
- per derived field, the series its function reads.

`LayoutPlan.sample` then reads one scrape's value texts with `float`, checks them as the generic path would
(finite non-negative counts, finite sums, fractions at most 1, non-decreasing cumulative buckets, ``_count``
at least the last bucket), and computes every field with the generic path's arithmetic in the generic path's
order, so the sample is the same to the bit. Wherever the generic path could raise, or read a value
differently (a value with a timestamp or digit-group underscores, a value `float` refuses), it answers None
instead, and the caller takes the generic path, which stays the reference: it gives the sample or raises with
its own message. A layout the generic path always refuses (a malformed or duplicated series, label sets that
disagree on bucket bounds, a line without labels: the filter splits it differently) gets no plan at all.

The folds below mirror `tokenscale.metrics.exposition`'s aggregation (which copy a maximum keeps, where a sum
starts); a change there must be made here too. `tests/unit/metrics/test_reader.py` compares the two paths'
samples and errors on random values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from tokenscale.core.types import EngineSample, Histogram
from tokenscale.metrics.engines.preset import Aggregation, DerivedField, EnginePreset
from tokenscale.metrics.exposition import MAX_LINE_CHARS, PROCESS_LABEL, ExpositionError, Series, SeriesId, SeriesParser

__all__ = ["LayoutPlan", "Picker", "compile_plan", "picker"]

Positions = tuple[int, ...]
Groups = tuple[Positions, ...]
"""Value positions in groups: the copies of one part (collapsed by maximum); the parts add up."""
Picker = Callable[[Sequence[Any]], tuple[Any, ...]]
Labels = tuple[tuple[str, str], ...]


class _UnplannedError(Exception):
    """A value the plan does not read the way the generic path would (or, compiling, a layout the generic path
    always refuses): take the generic path."""


def picker(positions: Positions) -> Picker:
    """The items of a sequence at ``positions``, as a tuple (`itemgetter` returns a lone item bare)."""
    if len(positions) == 1:
        (only,) = positions
        return lambda items: (items[only],)
    return itemgetter(*positions)


def _max_from_zero(values: Sequence[float], group: Positions) -> float:
    """As `exposition._max_over` folds copies: ``max(value, so_far)`` from 0.0, in order."""
    total = 0.0
    for position in group:
        total = max(values[position], total)
    return total


def _first_max(values: Sequence[float], group: Positions) -> float:
    """As `histogram_from_series` folds buckets of one bound: the first value, replaced by a greater one."""
    return max([values[position] for position in group])


def _latest_max(values: Sequence[float], group: Positions) -> float:
    """As `exposition._sum_finite` folds ``_sum`` copies: the first value, then ``max(value, so_far)``."""
    total = values[group[0]]
    for position in group[1:]:
        total = max(values[position], total)
    return total


Fold = Callable[[Sequence[float], Positions], float]


@dataclass(frozen=True, slots=True)
class _Parts:
    """The parts of a total, each part's copies folded by ``fold``; ``lone`` picks them when every part is one
    value (the usual layout, where every fold gives that value)."""

    groups: Groups
    fold: Fold
    lone: Picker | None

    @classmethod
    def of(cls, groups: Groups, fold: Fold) -> _Parts:
        lone = picker(tuple(group[0] for group in groups)) if all(len(group) == 1 for group in groups) else None
        return cls(groups, fold, lone)

    def values(self, values: Sequence[float]) -> tuple[float, ...]:
        if self.lone is not None:
            return self.lone(values)
        fold = self.fold
        return tuple(fold(values, group) for group in self.groups)


@dataclass(frozen=True, slots=True)
class _Scalar:
    """A counter or gauge field of several parts or copies (one series is `LayoutPlan.lone_fields`)."""

    field: str
    fraction: bool
    parts: _Parts

    def value(self, values: Sequence[float]) -> float:
        parts = self.parts.values(values)
        return sum(parts) / len(parts) if self.fraction else sum(parts)


@dataclass(frozen=True, slots=True)
class _Histogram:
    """One evaluated histogram base name.

    ``bound_sets[i]`` holds, per label set, the positions of bound ``i``'s values (usually one);
    ``cumulative`` picks them directly when there is one label set of one series per bound. ``complete`` is
    False for a base the generic path checks and then passes over (no ``+Inf`` bucket and no ``_count``).
    """

    bounds: tuple[float, ...]
    cumulative: Picker | None
    bound_sets: tuple[Groups, ...]
    sums: _Parts
    counts: _Parts | None
    fill_inf: bool
    complete: bool

    def read(self, values: Sequence[float]) -> Histogram | None:
        cumulative: tuple[float, ...]
        if self.cumulative is not None:
            cumulative = self.cumulative(values)
        elif self.bound_sets and len(self.bound_sets[0]) == 1:
            cumulative = tuple(_first_max(values, sets[0]) for sets in self.bound_sets)
        else:
            cumulative = tuple(sum(_first_max(values, members) for members in sets) for sets in self.bound_sets)
        if list(cumulative) != sorted(cumulative):
            raise _UnplannedError
        total_sum = sum(self.sums.values(values))
        total_count = None if self.counts is None else sum(self.counts.values(values))
        if self.fill_inf:
            if total_count is None:
                return None
            if cumulative and total_count < cumulative[-1]:
                raise _UnplannedError
            cumulative = (*cumulative, total_count)
        count = total_count if total_count is not None else cumulative[-1]
        return Histogram(bucket_upper_bounds=self.bounds, cumulative_counts=cumulative, sum=total_sum, count=count)


@dataclass(frozen=True, slots=True)
class _Derived:
    """A derived field and, per name it reads, the series ids and value positions of the model's series."""

    spec: DerivedField
    series: tuple[tuple[str, tuple[tuple[SeriesId, int], ...]], ...]

    def value(self, values: Sequence[float], copy_labels: tuple[str, ...]) -> float | None:
        by_name = {name: [Series(sid, values[position]) for sid, position in found] for name, found in self.series}
        return self.spec.compute(by_name, copy_labels)


@dataclass(frozen=True, slots=True)
class LayoutPlan:
    """How one layout's value texts become an `EngineSample` (see the module docstring).

    Positions index the values of the *kept* lines, in line order. ``kept_lines`` are those lines among the
    candidate lines (``kept`` picks their value texts; None when every candidate line is kept).
    ``max_value_chars`` is the longest value text any candidate line may have before the generic path calls
    the line too long. ``counts``, ``sums`` and ``fractions`` pick the values that must be finite
    non-negative counts, finite sums and at most 1. ``lone`` picks the values of the scalar fields
    ``lone_fields`` that read one series each; ``scalars`` are the others.
    """

    preset: EnginePreset
    kept_lines: Positions
    kept: Picker | None
    max_value_chars: int
    counts: Picker | None
    sums: Picker | None
    fractions: Picker | None
    lone_fields: tuple[str, ...]
    lone: Picker | None
    scalars: tuple[_Scalar, ...]
    histograms: tuple[tuple[str, tuple[_Histogram, ...]], ...]
    derived: tuple[_Derived, ...]

    def sample(self, texts: Sequence[str], *, timestamp_seconds: float) -> EngineSample | None:
        """The sample of the kept lines' value texts ``texts``, or None where the generic path must decide."""
        if "_" in "".join(texts):  # digit-group underscores: the generic path refuses what `float` would take
            return None
        try:
            values = list(map(float, texts))
        except ValueError:  # a timestamp, junk: the generic path reads or refuses it
            return None
        try:
            return self._sample(values, timestamp_seconds)
        except _UnplannedError:
            return None

    def _sample(self, values: list[float], timestamp_seconds: float) -> EngineSample | None:
        if self.counts is not None:
            counts = self.counts(values)
            # min catches negatives (and a leading NaN); the sum is NaN or infinite if any value is.
            if not (min(counts) >= 0.0 and sum(counts) < math.inf):
                return None
        if self.sums is not None and not -math.inf < sum(self.sums(values)) < math.inf:
            return None
        if self.fractions is not None and max(self.fractions(values)) > 1.0:
            return None
        fields: dict[str, Any] = {}
        if self.lone is not None:  # each the sum of one part, added as the generic path adds (0 + value)
            fields.update(zip(self.lone_fields, map(sum, zip(self.lone(values))), strict=True))
        for scalar in self.scalars:
            fields[scalar.field] = scalar.value(values)
        for field, attempts in self.histograms:
            for attempt in attempts:
                histogram = attempt.read(values)
                if histogram is not None:
                    fields[field] = histogram
                    break
        # Every check the generic path makes before its derived fields has passed, so a derived field that raises
        # here raises the same in the generic path.
        for derived in self.derived:
            value = derived.value(values, self.preset.copy_labels)
            if value is not None:
                fields[derived.spec.field] = value
        if not fields:
            return None
        return EngineSample(timestamp_seconds=timestamp_seconds, **fields)


def compile_plan(
    preset: EnginePreset, heads: Sequence[str], *, parser: SeriesParser, model_name: str | None
) -> LayoutPlan | None:
    """The plan for the candidate lines whose series texts are ``heads`` (`SeriesFilter.split_candidate_lines`
    gives each line's head), or None for a layout the generic path always refuses or splits differently.

    ``parser`` identifies the series texts (its memo is shared with the generic path).
    """
    if not heads or any(head[-1] != "}" for head in heads):  # a line without labels: the generic path's split
        return None
    longest = max(map(len, heads))
    if longest > MAX_LINE_CHARS:
        return None
    try:
        ids = [parser.series_id(head) for head in heads]
        return _compile(preset, heads, ids, model_name=model_name, max_value_chars=MAX_LINE_CHARS - longest)
    except (ExpositionError, _UnplannedError):
        return None


def _compile(
    preset: EnginePreset,
    heads: Sequence[str],
    ids: Sequence[SeriesId],
    *,
    model_name: str | None,
    max_value_chars: int,
) -> LayoutPlan | None:
    names = preset.series_filter.names
    kept_lines = tuple(line for line, sid in enumerate(ids) if sid.name in names)
    if not kept_lines or len({heads[line] for line in kept_lines}) != len(kept_lines):  # none, or a duplicate
        return None
    kept_ids = [ids[line] for line in kept_lines]
    by_name: dict[str, list[int]] = {}
    for position, sid in enumerate(kept_ids):
        if model_name is None or sid.model_name in (None, model_name):
            by_name.setdefault(sid.name, []).append(position)

    copy_labels = preset.copy_labels
    counts: list[int] = []
    sums: list[int] = []
    fractions: list[int] = []
    scalars: list[_Scalar] = []
    lone: dict[str, int] = {}
    for scalar_spec in preset.scalars:
        found = next((by_name[name] for name in scalar_spec.names if name in by_name), None)
        if found is None:
            continue
        counts += found
        fraction = scalar_spec.aggregation is Aggregation.FRACTION
        if fraction:
            fractions += found
        # As `sum_values`: without copy labels every series is a part of its own; otherwise, and for shared
        # and fraction gauges (where pid copies collapse too), label sets without the copy labels are parts.
        copies = copy_labels if scalar_spec.aggregation is Aggregation.COUNT else (*copy_labels, PROCESS_LABEL)
        groups = _parts(kept_ids, found, copies if copies else None)
        if len(groups) == 1 and len(groups[0]) == 1:
            lone[scalar_spec.field] = groups[0][0]
        else:
            scalars.append(_Scalar(scalar_spec.field, fraction, _Parts.of(groups, _max_from_zero)))

    histograms: list[tuple[str, tuple[_Histogram, ...]]] = []
    for histogram_spec in preset.histograms:
        attempts: list[_Histogram] = []
        for base in histogram_spec.names:
            attempt = _histogram(kept_ids, by_name, base=base, copy_labels=copy_labels)
            if attempt is None:
                continue
            attempts.append(attempt)
            counts.extend(p for sets in attempt.bound_sets for members in sets for p in members)
            counts.extend(p for group in (attempt.counts.groups if attempt.counts else ()) for p in group)
            sums.extend(p for group in attempt.sums.groups for p in group)
            if attempt.complete:
                break
        if attempts:
            histograms.append((histogram_spec.field, tuple(attempts)))

    derived = tuple(
        _Derived(spec, tuple(_named_series(kept_ids, by_name, name) for name in spec.names if name in by_name))
        for spec in preset.derived
    )
    complete = any(attempt.complete for _, attempts in histograms for attempt in attempts)
    if not (scalars or lone or complete or any(field.series for field in derived)):
        return None  # nothing to read: the generic path says so
    return LayoutPlan(
        preset=preset,
        kept_lines=kept_lines,
        kept=None if len(kept_lines) == len(heads) else picker(kept_lines),
        max_value_chars=max_value_chars,
        counts=picker(tuple(counts)) if counts else None,
        sums=picker(tuple(sums)) if sums else None,
        fractions=picker(tuple(fractions)) if fractions else None,
        lone_fields=tuple(lone),
        lone=picker(tuple(lone.values())) if lone else None,
        scalars=tuple(scalars),
        histograms=tuple(histograms),
        derived=derived,
    )


def _named_series(
    ids: Sequence[SeriesId], by_name: dict[str, list[int]], name: str
) -> tuple[str, tuple[tuple[SeriesId, int], ...]]:
    return name, tuple((ids[position], position) for position in by_name[name])


def _histogram(
    ids: Sequence[SeriesId], by_name: dict[str, list[int]], *, base: str, copy_labels: tuple[str, ...]
) -> _Histogram | None:
    """The plan of histogram ``base`` as `histogram_from_series` evaluates it; None where it returns None
    before looking at a value (no ``_sum``, or neither buckets nor ``_count``). Raises `_UnplannedError` where it
    always raises (label sets that disagree on bucket bounds)."""
    buckets = by_name.get(base + "_bucket", [])
    sums = by_name.get(base + "_sum", [])
    counts = by_name.get(base + "_count", [])
    if not (buckets or counts) or not sums:
        return None
    per_set: dict[Labels, dict[float, list[int]]] = {}
    for position in buckets:
        sid = ids[position]
        group = _without(sid.group, copy_labels)
        assert sid.bucket_bound is not None  # `SeriesId.of` sets it on every _bucket series
        per_set.setdefault(group, {}).setdefault(sid.bucket_bound, []).append(position)
    sets = list(per_set.values())
    bounds = sorted(sets[0]) if sets else []
    if any(sorted(other) != bounds for other in sets[1:]):
        raise _UnplannedError
    bound_sets = tuple(tuple(tuple(members[bound]) for members in sets) for bound in bounds)
    single = len(sets) == 1 and all(len(members) == 1 for (members,) in bound_sets)
    fill_inf = not bounds or not math.isinf(bounds[-1])
    return _Histogram(
        bounds=(*bounds, math.inf) if fill_inf else tuple(bounds),
        cumulative=picker(tuple(members[0] for (members,) in bound_sets)) if single and bound_sets else None,
        bound_sets=bound_sets,
        sums=_Parts.of(_parts(ids, sums, copy_labels), _latest_max),
        counts=_Parts.of(_parts(ids, counts, copy_labels if copy_labels else None), _max_from_zero) if counts else None,
        fill_inf=fill_inf,
        complete=not fill_inf or bool(counts),
    )


def _without(labels: Labels, names: Collection[str]) -> Labels:
    if not names:
        return labels
    return tuple(pair for pair in labels if pair[0] not in names)


def _parts(ids: Sequence[SeriesId], positions: Sequence[int], copies: Collection[str] | None) -> Groups:
    """``positions`` grouped as `exposition._max_over` groups series (label sets without ``copies``, in order of
    first appearance); each position a group of its own when ``copies`` is None (`sum_values` without copies)."""
    if copies is None:
        return tuple((position,) for position in positions)
    groups: dict[Labels, list[int]] = {}
    for position in positions:
        groups.setdefault(_without(ids[position].labels, copies), []).append(position)
    return tuple(tuple(group) for group in groups.values())
