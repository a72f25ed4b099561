"""``tokenscale metrics``: read one engine exposition the way the operator does, and print the sample as JSON.

``parse`` reads a file (``-`` for stdin); ``scrape`` reads a live endpoint through the operator's scraper.
Both print the normalised `EngineSample` (a histogram as ``{"buckets": {le: count}, "sum", "count"}``, ``"+Inf"``
last) and exit 0, or print the unknown reason and exit 1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from tokenscale.api.v1alpha1 import Engine
from tokenscale.core.types import EngineSample, Histogram
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.engines.preset import NoMatchingFamilyError, sample_from_series
from tokenscale.metrics.exposition import ExpositionError, SeriesParser
from tokenscale.metrics.scraper import Endpoint, Scraper, ScrapeSettings
from tokenscale.metrics.source import PodTarget, SampleOrUnknown, Unknown, UnknownReason

__all__ = ["app", "sample_json"]

app = typer.Typer(help="Read engine metrics the way the operator does.", no_args_is_help=True)

EngineOption = Annotated[Engine, typer.Option("--engine", help="Engine whose metric names to read.")]
ModelOption = Annotated[
    str | None, typer.Option("--model-name", help="Only series with this model_name label count; unset: all.")
]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Histogram):
        return {
            "buckets": {
                "+Inf" if bound == float("inf") else repr(bound): count
                for bound, count in zip(value.bucket_upper_bounds, value.cumulative_counts, strict=True)
            },
            "sum": value.sum,
            "count": value.count,
        }
    return value


def sample_json(result: SampleOrUnknown) -> str:
    """The JSON the commands print: every `EngineSample` field, or the unknown reason and message."""
    if isinstance(result, Unknown):
        payload: dict[str, Any] = {
            "timestamp_seconds": result.timestamp_seconds,
            "unknown": str(result.reason),
            "message": result.message,
        }
    else:
        payload = {field.name: _jsonable(getattr(result, field.name)) for field in dataclasses.fields(EngineSample)}
    return json.dumps(payload, indent=2)


def _emit(result: SampleOrUnknown) -> None:
    typer.echo(sample_json(result))
    if isinstance(result, Unknown):
        raise typer.Exit(1)


@app.command("parse")
def parse(
    file: Annotated[Path, typer.Argument(help="Exposition text file; - reads stdin.", allow_dash=True)],
    engine: EngineOption = Engine.VLLM,
    model_name: ModelOption = None,
) -> None:
    """Parse a saved /metrics text and print the normalised sample."""
    text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8", errors="replace")
    preset = preset_for(engine)
    now = time.time()
    result: SampleOrUnknown
    try:
        series = SeriesParser().parse(text, preset.series_filter)
        result = sample_from_series(preset, series, timestamp_seconds=now, model_name=model_name)
    except NoMatchingFamilyError as error:
        result = Unknown(now, UnknownReason.NO_MATCHING_FAMILY, str(error))
    except ExpositionError as error:
        result = Unknown(now, UnknownReason.PARSE_ERROR, str(error))
    _emit(result)


@app.command("scrape")
def scrape(
    url: Annotated[str, typer.Argument(help="Metrics URL, e.g. http://127.0.0.1:8000/metrics")],
    engine: EngineOption = Engine.VLLM,
    model_name: ModelOption = None,
    timeout_seconds: Annotated[float, typer.Option(help="Deadline for the whole request.")] = 5.0,
) -> None:
    """Scrape a live endpoint once and print the normalised sample."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise typer.BadParameter(f"not an http(s) URL: {url}", param_hint="URL")
    try:
        address = ipaddress.ip_address(socket.getaddrinfo(parts.hostname, None)[0][4][0])
    except (OSError, ValueError) as error:
        raise typer.BadParameter(f"cannot resolve {parts.hostname}: {error}", param_hint="URL") from None
    settings = ScrapeSettings(
        # The one address the user named is the only one allowed.
        allowed_networks=(ipaddress.ip_network(address),),
        timeout_seconds=timeout_seconds,
    )
    endpoint = Endpoint(
        preset=preset_for(engine),
        port=parts.port or (443 if parts.scheme == "https" else 80),
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        model_name=model_name,
        scheme=parts.scheme,
    )
    pod = PodTarget(name=url, ip=str(address))

    async def scrape_once() -> SampleOrUnknown:
        async with Scraper(settings) as scraper:
            return (await scraper.scrape([pod], endpoint))[pod.name]

    _emit(asyncio.run(scrape_once()))
