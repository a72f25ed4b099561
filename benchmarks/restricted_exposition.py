"""What a prometheus_client exposition answers to ``?name[]=…``: how the fake engines honour the query.

vLLM serves ``/metrics`` through prometheus_client, whose exposition (``_bake_output``, behind its ASGI and WSGI
apps and ``start_http_server``) answers a request with ``name[]`` query parameters by rendering
``registry.restricted_registry(names)``: the samples whose *sample* names are listed, under their families'
HELP and TYPE lines, nothing else. The fake engines hold a fixed text; to answer the query as vLLM does, they
load that text into a registry (`TextCollector`) and let prometheus_client render the restricted view
(`restricted`), so what the scraper receives is what a vLLM pod would send, formatting included. Rendering
through prometheus_client parses the text first (milliseconds); a fake engine that re-renders its text many
times a second uses the line model `restricted_lines` instead, after checking it against `restricted`
(`same_samples`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = [
    "NamelessTextCollector",
    "TextCollector",
    "requested_names",
    "restricted",
    "restricted_lines",
    "same_samples",
]


class NamelessTextCollector(Collector):
    """The families of an exposition text, as a collector that names nothing when registered, like
    prometheus_client's ``MultiProcessCollector``: a plain ``CollectorRegistry()`` leaves it out of every
    restricted view (the empty answer of a multiprocess vLLM or SGLang to ``name[]``)."""

    def __init__(self, text: str) -> None:
        self._families = list(text_string_to_metric_families(text))

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


class TextCollector(NamelessTextCollector):
    """The families of an exposition text, named when registered as prometheus_client's own metric objects are
    (``describe``), so a restricted view finds them."""

    def describe(self) -> Iterator[Metric]:
        return self.collect()


def requested_names(target: str) -> list[str] | None:
    """The ``name[]`` values of a request target (``/metrics?name[]=a&name[]=b``) as prometheus_client reads
    them (`urllib.parse.parse_qs`), or None when the query has none."""
    return parse_qs(urlsplit(target).query).get("name[]")


def restricted(text: str, names: Iterable[str]) -> bytes:
    """The exposition prometheus_client renders for ``?name[]=<names>`` from a registry holding ``text``."""
    registry = CollectorRegistry()
    registry.register(TextCollector(text))
    return generate_latest(registry.restricted_registry(names))


def restricted_lines(text: str, names: Collection[str]) -> bytes:
    """`restricted` modelled on the text's lines, for a text whose every family opens with its ``# HELP`` line:
    each family with a listed sample, as its comment lines and its listed sample lines, in order."""
    kept: list[str] = []
    family: list[str] = []
    wanted = False
    for line in text.splitlines():
        if line.startswith("# HELP "):
            if wanted:
                kept += family
            family, wanted = [line], False
        elif line.startswith("#"):
            family.append(line)
        elif line.partition("{")[0].partition(" ")[0] in names:
            family.append(line)
            wanted = True
    if wanted:
        kept += family
    return "".join(line + "\n" for line in kept).encode()


def same_samples(first: bytes, second: bytes) -> bool:
    """Whether two expositions hold the same families with the same samples (names, labels and values)."""

    def samples(text: bytes) -> list[tuple[str, str, list[tuple[str, tuple[tuple[str, str], ...], float]]]]:
        return [
            (family.name, family.type, [(s.name, tuple(sorted(s.labels.items())), s.value) for s in family.samples])
            for family in text_string_to_metric_families(text.decode())
        ]

    return samples(first) == samples(second)
