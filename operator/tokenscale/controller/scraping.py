"""The controller's `PodScraper` over `tokenscale.metrics`: one shared pod scraper for the process, and one
Prometheus source per distinct Prometheus a service names (``spec.metrics.source: prometheus``)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from tokenscale.controller.service import MetricsEndpoint
from tokenscale.core.types import EngineSample
from tokenscale.metrics import engines, prometheus_source, scraper
from tokenscale.metrics import source as metrics_source

__all__ = ["MetricsScraper", "close"]


class MetricsScraper:
    """Scrapes pods directly (only IPs inside ``allowed_cidrs``), or asks a service's Prometheus."""

    def __init__(
        self,
        *,
        allowed_cidrs: tuple[scraper.IPNetwork, ...],
        timeout_seconds: float,
        clock: metrics_source.Clock = time.time,
    ) -> None:
        self._timeout_seconds = timeout_seconds
        self._clock = clock
        self._scraper = scraper.Scraper(
            scraper.ScrapeSettings(allowed_networks=allowed_cidrs, timeout_seconds=timeout_seconds), clock=clock
        )
        self._endpoints: dict[MetricsEndpoint, scraper.Endpoint] = {}
        self._prometheus: dict[tuple[str, str, str | None, str], prometheus_source.PrometheusSource] = {}

    async def scrape(
        self, *, targets: Sequence[metrics_source.PodTarget], endpoint: MetricsEndpoint
    ) -> Mapping[str, EngineSample | metrics_source.Unknown]:
        if endpoint.prometheus_url is not None:
            return await self._prometheus_source(endpoint).sample(targets)
        found = self._endpoints.get(endpoint)
        if found is None:
            found = self._endpoints[endpoint] = scraper.Endpoint(
                preset=engines.preset_for(endpoint.engine),
                port=endpoint.port,
                path=endpoint.path,
                model_name=endpoint.model_name,
            )
        return await self._scraper.scrape(targets, found)

    def _prometheus_source(self, endpoint: MetricsEndpoint) -> prometheus_source.PrometheusSource:
        assert endpoint.prometheus_url is not None
        key = (endpoint.prometheus_url, endpoint.engine, endpoint.model_name, endpoint.namespace)
        found = self._prometheus.get(key)
        if found is None:
            found = self._prometheus[key] = prometheus_source.PrometheusSource(
                endpoint.prometheus_url,
                preset=engines.preset_for(endpoint.engine),
                model_name=endpoint.model_name,
                namespace=endpoint.namespace,
                timeout_seconds=self._timeout_seconds,
                clock=self._clock,
            )
        return found

    async def aclose(self) -> None:
        await self._scraper.aclose()
        for source in self._prometheus.values():
            await source.aclose()


async def close(scraper_: object) -> None:
    """Close a scraper made by `MetricsScraper` (the runtime holds it as a `PodScraper`)."""
    if isinstance(scraper_, MetricsScraper):
        await scraper_.aclose()
