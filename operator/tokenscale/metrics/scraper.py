"""The async scraper: every pod of a role, every tick, through one shared transport.

`Scraper` holds the process-wide pieces: the transport (`tokenscale.metrics.transport.KeptConnections`: httpcore
HTTP/1.1 connections, one kept alive per pod endpoint; no cookies, no redirects, no proxies from the
environment), a semaphore bounding concurrent scrapes, the memoising `SampleReader`, and each pod endpoint's
request, built once (URL parsed and escaped by httpx, headers fixed). It sends through httpcore rather than an
`httpx.AsyncClient`: the client's per-request work (request and response models, header merging, cookie
extraction, auth and redirect hooks) is about 0.1 ms of CPU per scrape, and the scraper uses none of it
(docs/benchmarks.md, issue 3). `Scraper.scrape` reads the pods it is given and answers each with an
`EngineSample` or an `Unknown`; it never raises for a pod. `PodMetricsSource` binds one engine preset, model and
port to a scraper as a `MetricsSource`.

Per pod, in order:

1. the pod IP must be an IP address inside ``allowed_networks``, or the pod is ``NotAllowed`` and nothing
   is dialled;
2. one GET with ``Accept-Encoding: identity`` under a total deadline of ``timeout_seconds`` (connect,
   headers and body together; waiting for the semaphore does not count). For a preset with
   ``name_query`` (vLLM) the URL asks for the preset's samples only, ``?name[]=<sample name>&…`` as
   prometheus_client's exposition understands it. A registry in prometheus_client's multiprocess mode answers
   that query with an empty page (vLLM with several API servers), so when the filtered answer holds none of
   the preset's families, or is an HTTP error, the same deadline covers a second GET without the query; if
   that one gives a sample, the pod endpoint is read without the query from then on;
3. status 200 and no content coding, else ``HTTPStatus`` / ``ParseError``; a ``Content-Length`` over the
   cap, or a body that grows past it while streaming, stops the read (``TooLarge``), so memory per pod is
   bounded by the cap plus one network read;
4. the body is read with the preset (`tokenscale.metrics.reader`); the sample is stamped with the
   injected clock when the response headers arrived (the server renders the whole exposition before it
   sends them, so that is the instant the counters were read).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

import httpcore
import httpx

import tokenscale
from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines.preset import EnginePreset, NoMatchingFamilyError
from tokenscale.metrics.exposition import ExpositionError
from tokenscale.metrics.reader import SampleReader
from tokenscale.metrics.source import Clock, PodTarget, SampleOrUnknown, Unknown, UnknownReason
from tokenscale.metrics.transport import KeptConnections, Transport

__all__ = ["Endpoint", "IPNetwork", "PodMetricsSource", "ScrapeSettings", "Scraper"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ScrapeSettings:
    """Process-wide scrape limits."""

    allowed_networks: tuple[IPNetwork, ...]
    """Pod IPs that may be dialled (the cluster's pod CIDRs). No default: an operator states where pods live,
    so a forged ``status.podIP`` cannot point the scraper at anything else."""
    timeout_seconds: float = 2.0
    """Deadline for one scrape: connect, headers and body together. A pod that misses it is unknown for that
    tick; keep it at or below the tick interval so one hung pod cannot hold up a tick."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Cap on an exposition body. vLLM serves 50–100 KB; 4 MiB leaves room for many LoRA or DP label sets."""
    max_concurrency: int = 64
    """Scrapes in flight at once, across every call sharing the scraper."""
    max_origins: int = 4096
    """Idle keep-alive connections kept (one per pod endpoint), and pod endpoints whose request is kept built;
    the least recently used connections beyond this are closed."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to read one engine's metrics on each pod."""

    preset: EnginePreset
    port: int = 8000
    path: str = "/metrics"
    model_name: str | None = None
    scheme: str = "http"


class Scraper:
    """One transport, a concurrency bound and a parse memo for every scrape of the process.

    ``clock`` stamps samples (default `time.time`); ``transport`` replaces the network (default
    `KeptConnections`; tests pass a fake answering `httpcore.Request` with `httpcore.Response`). Close it
    with `aclose` or use it as an async context manager.
    """

    def __init__(
        self,
        settings: ScrapeSettings,
        *,
        clock: Clock = time.time,
        transport: Transport | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._reader = SampleReader()
        self._transport = transport or KeptConnections(max_origins=settings.max_origins)
        # What each (pod IP, endpoint) resolves to, worked out once: the request to send (URL parsed and
        # escaped, headers built), or why the IP may not be dialled. Bounded like the transport's origins.
        self._targets: dict[tuple[str, str, int, str], _Target | _Refusal] = {}

    async def __aenter__(self) -> Scraper:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def scrape(self, pods: Sequence[PodTarget], endpoint: Endpoint) -> dict[str, SampleOrUnknown]:
        """Scrape every pod concurrently; one answer per pod name."""
        results = await asyncio.gather(*(self._scrape_pod(pod, endpoint) for pod in pods))
        return {pod.name: result for pod, result in zip(pods, results, strict=True)}

    async def _scrape_pod(self, pod: PodTarget, endpoint: Endpoint) -> SampleOrUnknown:
        key = (pod.ip, endpoint.scheme, endpoint.port, endpoint.path)
        target = self._targets.get(key)
        if target is None:
            target = self._resolve(pod.ip, endpoint)
        if isinstance(target, _Refusal):
            return self._unknown(UnknownReason.NOT_ALLOWED, target.message)
        url = target.url
        async with self._semaphore:
            try:
                async with asyncio.timeout(self._settings.timeout_seconds):
                    result = await self._fetch_and_parse(target.url, target.request, endpoint)
                    if target.unfiltered is None or not _may_be_the_filter(result):
                        return result
                    retried = await self._fetch_and_parse(target.url, target.unfiltered, endpoint)
                    if isinstance(retried, EngineSample):  # the query was the fault: never send it there again
                        self._targets[key] = _Target(target.url, target.unfiltered, None)
                    return retried
            except (TimeoutError, httpcore.TimeoutException):
                return self._unknown(UnknownReason.TIMEOUT, f"no answer from {url} within {self._timeout_text}")
            except httpcore.ConnectError as error:
                return self._unknown(UnknownReason.CONNECTION_FAILED, f"{url}: {str(error) or type(error).__name__}")
            except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
                return self._unknown(UnknownReason.TRANSPORT_ERROR, f"{url}: {type(error).__name__}: {error}")
            except Exception as error:  # the contract: nothing raises out of a scrape
                return self._unknown(UnknownReason.INTERNAL_ERROR, f"{url}: {type(error).__name__}: {error}")

    def _resolve(self, ip: str, endpoint: Endpoint) -> _Target | _Refusal:
        """The request for ``endpoint`` on the pod at ``ip``, or why that IP is not dialled; memoised."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            resolved: _Target | _Refusal = _Refusal(f"pod IP {ip[:64]!r} is not an IP address")
        else:
            if any(address in network for network in self._settings.allowed_networks):
                host = f"[{address}]" if address.version == 6 else str(address)
                query = endpoint.preset.name_query_params if endpoint.preset.name_query else ()
                resolved = _Target.of(f"{endpoint.scheme}://{host}:{endpoint.port}{endpoint.path}", query=query)
            else:
                resolved = _Refusal(f"pod IP {address} is outside the allowed networks")
        if len(self._targets) >= self._settings.max_origins:
            self._targets.clear()
        self._targets[(ip, endpoint.scheme, endpoint.port, endpoint.path)] = resolved
        return resolved

    @property
    def _timeout_text(self) -> str:
        return f"{self._settings.timeout_seconds:g} s"

    async def _fetch_and_parse(self, url: str, request: httpcore.Request, endpoint: Endpoint) -> SampleOrUnknown:
        response = await self._transport.handle_async_request(request)
        try:
            timestamp_seconds = self._clock()
            refusal = self._refusal(url, response)
            if refusal is not None:
                return Unknown(timestamp_seconds, *refusal)
            cap = self._settings.max_body_bytes
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_stream():  # identity only (checked above): no decoding
                size += len(chunk)
                if size > cap:
                    message = f"{url} body exceeds the cap of {cap} bytes"
                    return Unknown(timestamp_seconds, UnknownReason.TOO_LARGE, message)
                chunks.append(chunk)
        finally:
            await response.aclose()
        text = b"".join(chunks).decode("utf-8", errors="replace")
        try:
            return self._reader.read(
                endpoint.preset, text, timestamp_seconds=timestamp_seconds, model_name=endpoint.model_name, source=url
            )
        except NoMatchingFamilyError as error:
            return Unknown(timestamp_seconds, UnknownReason.NO_MATCHING_FAMILY, f"{url}: {error}")
        except ExpositionError as error:
            return Unknown(timestamp_seconds, UnknownReason.PARSE_ERROR, f"{url}: {error}")

    def _refusal(self, url: str, response: httpcore.Response) -> tuple[UnknownReason, str] | None:
        """Why the response headers already rule out reading the body, if they do."""
        if response.status != HTTPStatus.OK:
            return UnknownReason.HTTP_STATUS, f"{url} answered HTTP {response.status}"
        coding = b""
        declared = b""
        for name, value in response.headers:
            lowered = name.lower()
            if lowered == b"content-encoding":  # repeated headers are one comma-separated list
                coding = value if not coding else coding + b", " + value
            elif lowered == b"content-length":
                declared = value
        coding = coding.strip().lower()
        if coding not in (b"identity", b""):
            return UnknownReason.PARSE_ERROR, f"{url} sent content-encoding {coding[:32].decode('latin-1')!r}"
        if declared.isdigit() and int(declared) > self._settings.max_body_bytes:
            cap = self._settings.max_body_bytes
            return UnknownReason.TOO_LARGE, f"{url} declared {declared.decode()} bytes, cap {cap}"
        return None

    def _unknown(self, reason: UnknownReason, message: str) -> Unknown:
        return Unknown(self._clock(), reason, message)


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A pod IP that is not dialled, and why."""

    message: str


def _may_be_the_filter(result: SampleOrUnknown) -> bool:
    """Whether a filtered request's answer may be the ``name[]`` query's fault: an exposition without the
    preset's families (a registry whose restricted view is empty) or an HTTP error (a server or proxy that
    refuses the query)."""
    return isinstance(result, Unknown) and result.reason in (
        UnknownReason.NO_MATCHING_FAMILY,
        UnknownReason.HTTP_STATUS,
    )


@dataclass(frozen=True, slots=True)
class _Target:
    """One pod endpoint's URL (for messages, without the query), the request sent to it, and when that request
    carries the ``name[]`` query, the same request without it (the fallback); built once."""

    url: str
    request: httpcore.Request
    unfiltered: httpcore.Request | None

    @classmethod
    def of(cls, url_text: str, *, query: Sequence[tuple[str, str]] = ()) -> _Target:
        """Parsed and escaped as httpx does (``httpx.URL``; ``query`` is merged into the URL's own); the headers
        are the scraper's, nothing else: no cookies, no credentials, and an identity coding so that the size
        cap counts the bytes received."""
        url = httpx.URL(url_text)
        unfiltered = _request(url)
        if not query:
            return cls(str(url), unfiltered, None)
        return cls(str(url), _request(url.copy_merge_params(list(query))), unfiltered)


def _request(url: httpx.URL) -> httpcore.Request:
    return httpcore.Request(
        b"GET",
        httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
        headers=[
            (b"Host", url.netloc),
            (b"Accept", b"text/plain"),
            (b"Accept-Encoding", b"identity"),
            (b"User-Agent", _USER_AGENT),
        ],
    )


_USER_AGENT = f"tokenscale/{tokenscale.__version__}".encode()


class PodMetricsSource:
    """`MetricsSource` that scrapes each pod's endpoint directly through a shared `Scraper`."""

    def __init__(self, scraper: Scraper, endpoint: Endpoint) -> None:
        self._scraper = scraper
        self._endpoint = endpoint

    async def sample(self, pods: Sequence[PodTarget]) -> dict[str, SampleOrUnknown]:
        return await self._scraper.scrape(pods, self._endpoint)
