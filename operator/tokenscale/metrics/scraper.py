"""The async scraper: every pod of a role, every tick, through one shared aiohttp session.

`Scraper` holds the process-wide pieces: an `aiohttp.ClientSession` (made on the first scrape, inside the running
loop), a semaphore bounding concurrent scrapes, the memoising `SampleReader`, and each pod endpoint's URL, built
once. The session is set up for scraping and nothing else: its connector keeps one idle HTTP/1.1 connection per
pod endpoint alive between ticks (closed after ``keepalive_seconds`` unused, or when the server ends it) and
resolves nothing (pod IPs only); no cookie jar, no redirects, no proxies or credentials from the environment, no
content decoding, and headers fixed (``Accept-Encoding: identity``, so that the size cap counts the bytes
received). aiohttp is kopf's HTTP stack, already in the process; its response parser is C (llhttp), and a scrape
costs about half the CPU of the httpcore transport it replaced (docs/benchmarks.md, issue 6). `Scraper.scrape`
reads the pods it is given and answers each with an `EngineSample` or an `Unknown`; it never raises for a pod.
`PodMetricsSource` binds one engine preset, model and port to a scraper as a `MetricsSource`.

Per pod, in order:

1. the pod IP must be an IP address inside ``allowed_networks``, or the pod is ``NotAllowed`` and nothing
   is dialled;
2. one GET under a total deadline of ``timeout_seconds`` (connect, headers and body together; waiting for the
   semaphore does not count). For a preset with ``name_query`` (vLLM) the URL asks for the preset's samples
   only, ``?name[]=<sample name>&…`` as prometheus_client's exposition understands it. A registry in
   prometheus_client's multiprocess mode answers that query with an empty page (vLLM with several API servers),
   so when the filtered answer holds none of the preset's families, or is an HTTP error, the same deadline
   covers a second GET without the query; if that one gives a sample, the pod endpoint is read without the
   query from then on;
3. status 200 and no content coding, else ``HTTPStatus`` / ``ParseError``; a ``Content-Length`` over the cap,
   or a body without one that grows past it while streaming, stops the read (``TooLarge``) and closes the
   connection, so memory per pod is bounded by the cap plus one network read. A body with a
   ``Content-Length`` is read whole in one call: the response parser stops at the declared length;
4. the body is read with the preset (`tokenscale.metrics.reader`); the sample is stamped with the
   injected clock when the response headers arrived (the server renders the whole exposition before it
   sends them, so that is the instant the counters were read).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

import aiohttp
from yarl import URL

import tokenscale
from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines.preset import EnginePreset, NoMatchingFamilyError
from tokenscale.metrics.exposition import ExpositionError
from tokenscale.metrics.reader import SampleReader
from tokenscale.metrics.source import Clock, PodTarget, SampleOrUnknown, Unknown, UnknownReason

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
    keepalive_seconds: float = 60.0
    """An idle connection unused this long is closed (a pod that went away, or a service no longer scraped).
    Every pod is scraped once a tick, so any tick interval below this keeps each pod's connection warm."""
    max_endpoints: int = 4096
    """Pod endpoints whose URL is kept built; beyond this the memo starts again (pods come and go)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to read one engine's metrics on each pod."""

    preset: EnginePreset
    port: int = 8000
    path: str = "/metrics"
    model_name: str | None = None
    scheme: str = "http"


class Scraper:
    """One HTTP session, a concurrency bound and a parse memo for every scrape of the process.

    ``clock`` stamps samples (default `time.time`); ``tls_context`` verifies https pod endpoints (default: the
    system's trust store). Close it with `aclose` or use it as an async context manager.
    """

    def __init__(
        self, settings: ScrapeSettings, *, clock: Clock = time.time, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._tls_context = tls_context
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._reader = SampleReader()
        self._session: aiohttp.ClientSession | None = None
        # What each (pod IP, endpoint) resolves to, worked out once: the URLs to request, or why the IP may not
        # be dialled. Bounded by ``max_endpoints``.
        self._targets: dict[tuple[str, str, int, str], _Target | _Refusal] = {}

    async def __aenter__(self) -> Scraper:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def scrape(self, pods: Sequence[PodTarget], endpoint: Endpoint) -> dict[str, SampleOrUnknown]:
        """Scrape every pod concurrently; one answer per pod name."""
        results = await asyncio.gather(*(self._scrape_pod(pod, endpoint) for pod in pods))
        return {pod.name: result for pod, result in zip(pods, results, strict=True)}

    def _session_now(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp binds it to the loop it is made in."""
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,  # the semaphore bounds scrapes; a second request to a busy pod opens a second connection
                keepalive_timeout=self._settings.keepalive_seconds,
                use_dns_cache=False,  # pod IPs only: nothing is resolved
                ssl=self._tls_context if self._tls_context is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=_HEADERS,
                auto_decompress=False,
                trust_env=False,
                timeout=aiohttp.ClientTimeout(total=None),  # the scrape's own deadline covers the whole exchange
            )
        return self._session

    async def _scrape_pod(self, pod: PodTarget, endpoint: Endpoint) -> SampleOrUnknown:
        key = (pod.ip, endpoint.scheme, endpoint.port, endpoint.path)
        target = self._targets.get(key)
        if target is None:
            target = self._resolve(pod.ip, endpoint)
        if isinstance(target, _Refusal):
            return self._unknown(UnknownReason.NOT_ALLOWED, target.message)
        url = target.text
        async with self._semaphore:
            try:
                async with asyncio.timeout(self._settings.timeout_seconds):
                    result = await self._fetch_and_parse(target.first, url, endpoint)
                    if target.unfiltered is None or not _may_be_the_filter(result):
                        return result
                    retried = await self._fetch_and_parse(target.unfiltered, url, endpoint)
                    if isinstance(retried, EngineSample):  # the query was the fault: never send it there again
                        self._targets[key] = _Target(text=url, first=target.unfiltered, unfiltered=None)
                    return retried
            except TimeoutError:
                return self._unknown(UnknownReason.TIMEOUT, f"no answer from {url} within {self._timeout_text}")
            except aiohttp.ClientConnectorError as error:
                return self._unknown(UnknownReason.CONNECTION_FAILED, f"{url}: {error}")
            except aiohttp.ClientError as error:  # the connection broke or the answer is not HTTP
                return self._unknown(UnknownReason.TRANSPORT_ERROR, f"{url}: {type(error).__name__}: {error}")
            except Exception as error:  # the contract: nothing raises out of a scrape
                return self._unknown(UnknownReason.INTERNAL_ERROR, f"{url}: {type(error).__name__}: {error}")

    def _resolve(self, ip: str, endpoint: Endpoint) -> _Target | _Refusal:
        """The URLs for ``endpoint`` on the pod at ``ip``, or why that IP is not dialled; memoised."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            resolved: _Target | _Refusal = _Refusal(f"pod IP {ip[:64]!r} is not an IP address")
        else:
            if any(address in network for network in self._settings.allowed_networks):
                query = endpoint.preset.name_query_params if endpoint.preset.name_query else ()
                resolved = _Target.of(
                    scheme=endpoint.scheme, host=str(address), port=endpoint.port, path=endpoint.path, query=query
                )
            else:
                resolved = _Refusal(f"pod IP {address} is outside the allowed networks")
        if len(self._targets) >= self._settings.max_endpoints:
            self._targets.clear()
        self._targets[(ip, endpoint.scheme, endpoint.port, endpoint.path)] = resolved
        return resolved

    @property
    def _timeout_text(self) -> str:
        return f"{self._settings.timeout_seconds:g} s"

    async def _fetch_and_parse(self, request_url: URL, url: str, endpoint: Endpoint) -> SampleOrUnknown:
        """One GET of ``request_url`` (``url`` names it in messages) and its body parsed with the preset."""
        cap = self._settings.max_body_bytes
        async with self._session_now().get(request_url, allow_redirects=False) as response:
            timestamp_seconds = self._clock()
            refusal = self._refusal(url, response)
            if refusal is not None:
                # The body is not read: a connection it is still arriving on is closed. (A body that came whole
                # with the headers has already handed its connection back for reuse, as it should.)
                response.close()
                return Unknown(timestamp_seconds, *refusal)
            if response.content_length is not None:  # checked against the cap above; the parser stops there
                body = await response.read()
            else:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > cap:
                        response.close()
                        message = f"{url} body exceeds the cap of {cap} bytes"
                        return Unknown(timestamp_seconds, UnknownReason.TOO_LARGE, message)
                    chunks.append(chunk)
                body = b"".join(chunks)
        text = body.decode("utf-8", errors="replace")
        try:
            return self._reader.read(
                endpoint.preset, text, timestamp_seconds=timestamp_seconds, model_name=endpoint.model_name, source=url
            )
        except NoMatchingFamilyError as error:
            return Unknown(timestamp_seconds, UnknownReason.NO_MATCHING_FAMILY, f"{url}: {error}")
        except ExpositionError as error:
            return Unknown(timestamp_seconds, UnknownReason.PARSE_ERROR, f"{url}: {error}")

    def _refusal(self, url: str, response: aiohttp.ClientResponse) -> tuple[UnknownReason, str] | None:
        """Why the response headers already rule out reading the body, if they do."""
        if response.status != HTTPStatus.OK:
            return UnknownReason.HTTP_STATUS, f"{url} answered HTTP {response.status}"
        # Repeated headers are one comma-separated list.
        coding = ", ".join(response.headers.getall("Content-Encoding", ())).strip().lower()
        if coding not in ("identity", ""):
            return UnknownReason.PARSE_ERROR, f"{url} sent content-encoding {coding[:32]!r}"
        declared = response.content_length
        if declared is not None and declared > self._settings.max_body_bytes:
            cap = self._settings.max_body_bytes
            return UnknownReason.TOO_LARGE, f"{url} declared {declared} bytes, cap {cap}"
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
    """One pod endpoint: its URL as text for messages (without the query), the URL requested first, and when
    that one carries the ``name[]`` query, the same URL without it (the fallback); built once."""

    text: str
    first: URL
    unfiltered: URL | None

    @classmethod
    def of(cls, *, scheme: str, host: str, port: int, path: str, query: Sequence[tuple[str, str]] = ()) -> _Target:
        """Built and escaped by yarl (aiohttp's URL type) once, so no request parses or quotes it again."""
        unfiltered = URL.build(scheme=scheme, host=host, port=port, path=path)
        if not query:
            return cls(str(unfiltered), unfiltered, None)
        return cls(str(unfiltered), unfiltered.with_query(list(query)), unfiltered)


_HEADERS = {
    "Accept": "text/plain",
    "Accept-Encoding": "identity",
    "User-Agent": f"tokenscale/{tokenscale.__version__}",
}
"""Every request's headers (aiohttp adds Host): no cookies, no credentials, and an identity coding."""


class PodMetricsSource:
    """`MetricsSource` that scrapes each pod's endpoint directly through a shared `Scraper`."""

    def __init__(self, scraper: Scraper, endpoint: Endpoint) -> None:
        self._scraper = scraper
        self._endpoint = endpoint

    async def sample(self, pods: Sequence[PodTarget]) -> dict[str, SampleOrUnknown]:
        return await self._scraper.scrape(pods, self._endpoint)
