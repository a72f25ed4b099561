"""The async scraper: every pod of a role, every tick, through one shared httpx client.

`Scraper` holds the process-wide pieces: one `httpx.AsyncClient` (keep-alive, ``trust_env=False``, cookies
never stored, redirects not followed) over a `PerOriginTransport`, a semaphore bounding concurrent
scrapes, and the memoising `SeriesParser`. `Scraper.scrape` reads the pods it is given and answers each
with an `EngineSample` or an `Unknown`; it never raises for a pod. `PodMetricsSource` binds one engine
preset, model and port to a scraper as a `MetricsSource`.

Per pod, in order:

1. the pod IP must be an IP address inside ``allowed_networks``, or the pod is ``NotAllowed`` and nothing
   is dialled;
2. one GET with ``Accept-Encoding: identity`` under a total deadline of ``timeout_seconds`` (connect,
   headers and body together; waiting for the semaphore does not count);
3. status 200 and no content coding, else ``HTTPStatus`` / ``ParseError``; a ``Content-Length`` over the
   cap, or a body that grows past it while streaming, stops the read (``TooLarge``), so memory per pod is
   bounded by the cap plus one network read;
4. the body is parsed with the preset (`tokenscale.metrics.engines`); the sample is stamped with the
   injected clock when the response headers arrived (the server renders the whole exposition before it
   sends them, so that is the instant the counters were read).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from tokenscale.metrics.engines.preset import EnginePreset, NoMatchingFamilyError, sample_from_series
from tokenscale.metrics.exposition import ExpositionError, SeriesParser
from tokenscale.metrics.source import Clock, PodTarget, SampleOrUnknown, Unknown, UnknownReason
from tokenscale.metrics.transport import PerOriginTransport

__all__ = ["Endpoint", "IPNetwork", "PodMetricsSource", "ScrapeSettings", "Scraper"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ScrapeSettings:
    """Process-wide scrape limits."""

    allowed_networks: tuple[IPNetwork, ...]
    """Pod IPs that may be dialled (the cluster's pod CIDRs). No default: an operator states where pods live,
    so a forged ``status.podIP`` cannot point the scraper at anything else."""
    timeout_seconds: float = 2.0
    """Deadline for one scrape: connect, headers and body. Below the 1 s tick would drop slow pods every
    tick; the controller should keep it under its tick interval."""
    max_body_bytes: int = 4 * 1024 * 1024
    """Cap on an exposition body. vLLM serves 50–100 KB; 4 MiB leaves room for many LoRA or DP label sets."""
    max_concurrency: int = 64
    """Scrapes in flight at once, across every call sharing the scraper."""
    max_origins: int = 4096
    """Keep-alive pools kept (one per pod endpoint); the least recently used beyond this are closed."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to read one engine's metrics on each pod."""

    preset: EnginePreset
    port: int = 8000
    path: str = "/metrics"
    model_name: str | None = None
    scheme: str = "http"


class Scraper:
    """One shared client, a concurrency bound and a parse memo for every scrape of the process.

    ``clock`` stamps samples (default `time.time`); ``transport`` replaces the network (tests pass
    `httpx.MockTransport`). Close it with `aclose` or use it as an async context manager.
    """

    def __init__(
        self,
        settings: ScrapeSettings,
        *,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._parser = SeriesParser()
        self._client = httpx.AsyncClient(
            transport=transport or PerOriginTransport(max_origins=settings.max_origins),
            timeout=settings.timeout_seconds,
            headers={"Accept": "text/plain", "Accept-Encoding": "identity"},
            # A pod answering Set-Cookie must not grow the client's jar: this policy stores nothing.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            follow_redirects=False,
            trust_env=False,
        )
        # Requests are built once per URL and re-sent: building one (URL parsing, header merging) costs about
        # a fifth of a scrape's client CPU. Bounded like the transport's pools.
        self._requests: dict[str, httpx.Request] = {}

    async def __aenter__(self) -> Scraper:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def scrape(self, pods: Sequence[PodTarget], endpoint: Endpoint) -> dict[str, SampleOrUnknown]:
        """Scrape every pod concurrently; one answer per pod name."""
        results = await asyncio.gather(*(self._scrape_pod(pod, endpoint) for pod in pods))
        return {pod.name: result for pod, result in zip(pods, results, strict=True)}

    async def _scrape_pod(self, pod: PodTarget, endpoint: Endpoint) -> SampleOrUnknown:
        try:
            address = ipaddress.ip_address(pod.ip)
        except ValueError:
            return self._unknown(UnknownReason.NOT_ALLOWED, f"pod IP {pod.ip[:64]!r} is not an IP address")
        if not any(address in network for network in self._settings.allowed_networks):
            return self._unknown(UnknownReason.NOT_ALLOWED, f"pod IP {address} is outside the allowed networks")
        host = f"[{address}]" if address.version == 6 else str(address)
        url = f"{endpoint.scheme}://{host}:{endpoint.port}{endpoint.path}"
        async with self._semaphore:
            try:
                async with asyncio.timeout(self._settings.timeout_seconds):
                    return await self._fetch_and_parse(url, endpoint)
            except (TimeoutError, httpx.TimeoutException):
                return self._unknown(UnknownReason.TIMEOUT, f"no answer from {url} within {self._timeout_text}")
            except httpx.ConnectError as error:
                return self._unknown(UnknownReason.CONNECTION_FAILED, f"{url}: {error or type(error).__name__}")
            except httpx.HTTPError as error:
                return self._unknown(UnknownReason.TRANSPORT_ERROR, f"{url}: {type(error).__name__}: {error}")
            except Exception as error:  # the contract: nothing raises out of a scrape
                return self._unknown(UnknownReason.INTERNAL_ERROR, f"{url}: {type(error).__name__}: {error}")

    @property
    def _timeout_text(self) -> str:
        return f"{self._settings.timeout_seconds:g} s"

    async def _fetch_and_parse(self, url: str, endpoint: Endpoint) -> SampleOrUnknown:
        request = self._requests.get(url)
        if request is None:
            if len(self._requests) >= self._settings.max_origins:
                self._requests.clear()
            request = self._requests[url] = self._client.build_request("GET", url)
        response = await self._client.send(request, stream=True)
        try:
            timestamp_seconds = self._clock()
            if response.status_code != httpx.codes.OK:
                return self._unknown(UnknownReason.HTTP_STATUS, f"{url} answered HTTP {response.status_code}")
            coding = response.headers.get("content-encoding", "identity").strip().lower()
            if coding not in ("identity", ""):
                return self._unknown(UnknownReason.PARSE_ERROR, f"{url} sent content-encoding {coding[:32]!r}")
            cap = self._settings.max_body_bytes
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > cap:
                return self._unknown(UnknownReason.TOO_LARGE, f"{url} declared {declared} bytes, cap {cap}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > cap:
                    return self._unknown(UnknownReason.TOO_LARGE, f"{url} body exceeds the cap of {cap} bytes")
                chunks.append(chunk)
        finally:
            await response.aclose()
        text = b"".join(chunks).decode("utf-8", errors="replace")
        try:
            series = self._parser.parse(text, endpoint.preset.series_filter)
            return sample_from_series(
                endpoint.preset, series, timestamp_seconds=timestamp_seconds, model_name=endpoint.model_name
            )
        except NoMatchingFamilyError as error:
            return Unknown(timestamp_seconds, UnknownReason.NO_MATCHING_FAMILY, f"{url}: {error}")
        except ExpositionError as error:
            return Unknown(timestamp_seconds, UnknownReason.PARSE_ERROR, f"{url}: {error}")

    def _unknown(self, reason: UnknownReason, message: str) -> Unknown:
        return Unknown(self._clock(), reason, message)


class PodMetricsSource:
    """`MetricsSource` that scrapes each pod's endpoint directly through a shared `Scraper`."""

    def __init__(self, scraper: Scraper, endpoint: Endpoint) -> None:
        self._scraper = scraper
        self._endpoint = endpoint

    async def sample(self, pods: Sequence[PodTarget]) -> dict[str, SampleOrUnknown]:
        return await self._scraper.scrape(pods, self._endpoint)
