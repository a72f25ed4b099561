"""The shape of an engine preset: exposition names mapped to `EngineSample` fields, and how to aggregate them.

A preset lists, per field, candidate exposition names in order of preference; the first one the pod
exposes wins. That is how renames are read (vLLM ``kv_cache_usage_perc`` before the deprecated
``gpu_cache_usage_perc``, ``inter_token_latency_seconds`` before ``time_per_output_token_seconds``) and how
TensorRT-LLM falls back from its own gauges to Dynamo's worker gauges.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from tokenscale.core.types import EngineSample
from tokenscale.metrics import exposition
from tokenscale.metrics.exposition import ExpositionError, Series, SeriesFilter

__all__ = [
    "Aggregation",
    "DerivedField",
    "EnginePreset",
    "HistogramField",
    "NoMatchingFamilyError",
    "ScalarField",
    "sample_from_series",
]


class NoMatchingFamilyError(ExpositionError):
    """The exposition holds none of the families the preset reads (wrong engine, wrong port, no model)."""


class Aggregation(enum.Enum):
    """How the series of one name combine into the pod's value (see `tokenscale.metrics.exposition`)."""

    COUNT = "count"
    """Counters and count gauges: parts add up (`exposition.sum_values`)."""
    FRACTION = "fraction"
    """0–1 gauges such as KV-cache usage: mean over engine ranks (`exposition.fraction_value`)."""
    SHARED = "shared"
    """Configuration gauges: process copies by maximum, ranks add up (`exposition.shared_value`)."""


@dataclass(frozen=True, slots=True)
class ScalarField:
    """One counter or gauge field: ``names`` are exposition sample names, first present wins."""

    field: str
    names: tuple[str, ...]
    aggregation: Aggregation = Aggregation.COUNT


@dataclass(frozen=True, slots=True)
class HistogramField:
    """One histogram field: ``names`` are histogram base names (without ``_bucket``), first present wins."""

    field: str
    names: tuple[str, ...]


DerivedFn = Callable[[Mapping[str, Sequence[Series]], tuple[str, ...]], float | None]


@dataclass(frozen=True, slots=True)
class DerivedField:
    """A field computed from several series or from labels (KV capacity from ``cache_config_info``).

    ``compute`` receives the model's series by name and the preset's copy labels, and returns None when the
    inputs are absent. It reads only the series of ``names`` (a layout plan hands it only those,
    `tokenscale.metrics.layout`).
    """

    field: str
    names: tuple[str, ...]
    compute: DerivedFn


@dataclass(frozen=True)
class EnginePreset:
    """What one engine exposes, as `EngineSample` fields.

    ``copy_labels`` name the labels whose series are copies of one engine's view (collapsed by maximum,
    never summed): SGLang's ``tp_rank``/``pp_rank``.

    ``name_query`` says whether to ask the engine for only the samples the preset reads, with
    prometheus_client's ``?name[]=<sample name>`` query (`name_query_params`): an engine that serves ``/metrics``
    through prometheus_client (its ASGI/WSGI app or ``start_http_server``) then renders only those samples,
    a 50 KB vLLM exposition shrinking to about a quarter. It is off for an engine whose registry answers it
    with nothing (prometheus_client's multiprocess mode without ``support_collectors_without_names``, as
    SGLang always runs) or whose server ignores it; the scraper falls back to the whole exposition for a
    pod whose filtered answer holds nothing (`tokenscale.metrics.scraper`).
    """

    engine: str
    scalars: tuple[ScalarField, ...]
    histograms: tuple[HistogramField, ...] = ()
    derived: tuple[DerivedField, ...] = ()
    copy_labels: tuple[str, ...] = ()
    name_query: bool = False

    def __post_init__(self) -> None:
        known = {f.name for f in dataclasses.fields(EngineSample)}
        mapped = [s.field for s in self.scalars] + [h.field for h in self.histograms] + [d.field for d in self.derived]
        for field in mapped:
            if field not in known:
                raise ValueError(f"{self.engine} preset maps to unknown EngineSample field {field!r}")

    @cached_property
    def series_filter(self) -> SeriesFilter:
        """The lines this preset reads, compiled once."""
        scalar_names = [name for s in self.scalars for name in s.names] + [
            name for d in self.derived for name in d.names
        ]
        bases = [base for h in self.histograms for base in h.names]
        histogram_names = [base + suffix for base in bases for suffix in ("_bucket", "_sum", "_count")]
        return SeriesFilter(prefixes=[*scalar_names, *bases], names=[*scalar_names, *histogram_names])

    @cached_property
    def exposition_names(self) -> tuple[str, ...]:
        """Every exposition sample name the preset may read (for a Prometheus ``__name__`` selector)."""
        return tuple(sorted(self.series_filter.names))

    @cached_property
    def name_query_params(self) -> tuple[tuple[str, str], ...]:
        """The ``name[]`` query parameters asking a prometheus_client exposition for `exposition_names` only.

        prometheus_client keeps a sample when its *sample* name is listed (``…_total`` for a counter;
        ``…_bucket``, ``…_sum`` and ``…_count`` for a histogram), which is what `exposition_names` holds.
        """
        return tuple(("name[]", name) for name in self.exposition_names)


def sample_from_series(
    preset: EnginePreset, series: Sequence[Series], *, timestamp_seconds: float, model_name: str | None
) -> EngineSample:
    """Normalise one pod's series into an `EngineSample` stamped ``timestamp_seconds``.

    Raises `NoMatchingFamilyError` when no field could be read (all None), and `ExpositionError` when a
    value is invalid for what the engine means.
    """
    by_name: dict[str, list[Series]] = defaultdict(list)
    for s in series if model_name is None else exposition.select_model(series, model_name=model_name):
        by_name[s.id.name].append(s)

    values: dict[str, Any] = {}
    for scalar in preset.scalars:
        for name in scalar.names:
            found = by_name.get(name)
            if found:
                values[scalar.field] = _aggregate(found, scalar.aggregation, preset.copy_labels)
                break
    for histogram_spec in preset.histograms:
        for base in histogram_spec.names:
            histogram = exposition.histogram_from_series(by_name, base_name=base, copy_labels=preset.copy_labels)
            if histogram is not None:
                values[histogram_spec.field] = histogram
                break
    for derived in preset.derived:
        value = derived.compute(by_name, preset.copy_labels)
        if value is not None:
            values[derived.field] = value

    if not values:
        scope = f" for model_name={model_name!r}" if model_name is not None else ""
        raise NoMatchingFamilyError(f"no {preset.engine} metric family{scope} in the exposition")
    return EngineSample(timestamp_seconds=timestamp_seconds, **values)


def _aggregate(series: Sequence[Series], aggregation: Aggregation, copy_labels: tuple[str, ...]) -> float:
    match aggregation:
        case Aggregation.COUNT:
            return exposition.sum_values(series, copy_labels=copy_labels)
        case Aggregation.FRACTION:
            return exposition.fraction_value(series, copy_labels=copy_labels)
        case Aggregation.SHARED:
            return exposition.shared_value(series, copy_labels=copy_labels)
