"""The second source: the Prometheus HTTP API, for clusters that already scrape their engine pods.

Each `PrometheusSource.sample` call sends ONE instant query (``POST /api/v1/query``) that selects every raw
series the engine preset reads for every asked pod::

    {__name__=~"vllm:prompt_tokens_total|…|vllm:time_to_first_token_seconds_bucket|…", pod=~"a|b", namespace="ns"}

and feeds each pod's series through the same normalisation as a direct scrape
(`tokenscale.metrics.engines.preset.sample_from_series`), so both sources give the same `EngineSample` for
the same exposition. Labels Prometheus attaches to a scrape target (``instance``, ``job``, the pod label,
...) are dropped first; if two jobs scrape one pod, the newer copy of a series wins instead of doubling it.

A sample is stamped with the time Prometheus scraped it (the newest sample timestamp of the pod, Unix
seconds), not the query time: Prometheus scrapes every 15–60 s while ticks come every second, and rates
over ticks would otherwise see flat runs and jumps. A pod Prometheus stopped scraping keeps its old
timestamp (for up to the 5 min lookback), which the window maths reads as stale.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import httpx

from tokenscale.metrics.engines.preset import EnginePreset, NoMatchingFamilyError, sample_from_series
from tokenscale.metrics.exposition import ExpositionError, Series, SeriesId, parse_number
from tokenscale.metrics.source import Clock, PodTarget, SampleOrUnknown, Unknown, UnknownReason

__all__ = ["TARGET_LABELS", "PrometheusSource", "instant_query"]

TARGET_LABELS = frozenset({"instance", "job", "namespace", "pod", "container", "endpoint", "service"})
"""Labels a Prometheus scrape configuration commonly attaches to every series of a target."""

_REGEX_SPECIALS = frozenset("\\.^$*+?()[]{}|")


def _regex_literal(text: str) -> str:
    """``text`` matched literally by an RE2 regular expression."""
    return "".join("\\" + c if c in _REGEX_SPECIALS else c for c in text)


def _promql_string(text: str) -> str:
    """A double-quoted PromQL string literal holding ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def instant_query(*, names: Sequence[str], pods: Sequence[str], pod_label: str, namespace: str | None) -> str:
    """The PromQL selector of every series named ``names`` of the ``pods``."""
    matchers = [
        "__name__=~" + _promql_string("|".join(_regex_literal(n) for n in names)),
        pod_label + "=~" + _promql_string("|".join(_regex_literal(p) for p in pods)),
    ]
    if namespace is not None:
        matchers.append("namespace=" + _promql_string(namespace))
    return "{" + ", ".join(matchers) + "}"


class PrometheusSource:
    """`MetricsSource` answering from a Prometheus server's instant queries.

    ``pod_label`` is the label that carries the pod name on the scraped series (``pod`` with the usual
    Kubernetes service discovery relabelling); ``namespace``, when set, narrows the query to one namespace.
    The answer body is read up to ``max_response_bytes``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        preset: EnginePreset,
        model_name: str | None = None,
        pod_label: str = "pod",
        namespace: str | None = None,
        timeout_seconds: float = 5.0,
        max_response_bytes: int = 64 * 1024 * 1024,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._query_url = base_url.rstrip("/") + "/api/v1/query"
        self._preset = preset
        self._model_name = model_name
        self._pod_label = pod_label
        self._namespace = namespace
        self._timeout_seconds = timeout_seconds
        self._max_response_bytes = max_response_bytes
        self._clock = clock
        self._client = httpx.AsyncClient(transport=transport, timeout=timeout_seconds, trust_env=False)

    async def __aenter__(self) -> PrometheusSource:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def sample(self, pods: Sequence[PodTarget]) -> dict[str, SampleOrUnknown]:
        """One instant query for all ``pods``; a failed query makes every pod unknown with its reason."""
        if not pods:
            return {}
        try:
            result = await self._query([pod.name for pod in pods])
        except (TimeoutError, httpx.TimeoutException):
            return self._all_unknown(pods, UnknownReason.TIMEOUT, f"Prometheus query timed out ({self._query_url})")
        except httpx.HTTPError as error:
            return self._all_unknown(pods, UnknownReason.QUERY_FAILED, f"{self._query_url}: {error}")
        except _QueryError as error:
            return self._all_unknown(pods, UnknownReason.QUERY_FAILED, str(error))
        except Exception as error:  # the contract: nothing raises out of a source
            return self._all_unknown(pods, UnknownReason.INTERNAL_ERROR, f"{type(error).__name__}: {error}")
        return {pod.name: self._pod_sample(pod, result.get(pod.name, {})) for pod in pods}

    async def _query(self, pod_names: list[str]) -> dict[str, dict[SeriesId, tuple[float, float]]]:
        """Series per pod name: identity -> (sample timestamp, value), the newest copy of each."""
        query = instant_query(
            names=self._preset.exposition_names, pods=pod_names, pod_label=self._pod_label, namespace=self._namespace
        )
        async with self._client.stream("POST", self._query_url, data={"query": query}) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self._max_response_bytes:
                    raise _QueryError(f"Prometheus answer exceeds {self._max_response_bytes} bytes")
        try:
            answer: Any = json.loads(body)
        except ValueError:
            raise _QueryError(f"Prometheus answered HTTP {response.status_code} with a body that is not JSON") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error", "") if isinstance(answer, dict) else ""
            raise _QueryError(f"Prometheus answered HTTP {response.status_code}: {str(error)[:200]}")
        data = answer.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
            raise _QueryError("Prometheus answer is not an instant vector")

        per_pod: dict[str, dict[SeriesId, tuple[float, float]]] = defaultdict(dict)
        try:
            for item in data["result"]:
                labels = dict(item["metric"])
                name = labels.pop("__name__")
                pod_name = labels.get(self._pod_label)
                if not isinstance(pod_name, str):
                    continue
                for target_label in (*TARGET_LABELS, self._pod_label):
                    labels.pop(target_label, None)
                timestamp_text, value_text = item["value"]
                series_id = SeriesId.of(name, labels)
                timestamp_seconds = float(timestamp_text)
                known = per_pod[pod_name].get(series_id)
                if known is None or timestamp_seconds > known[0]:
                    per_pod[pod_name][series_id] = (timestamp_seconds, parse_number(value_text))
        except (KeyError, TypeError, ValueError) as error:
            raise _QueryError(f"unexpected series in the Prometheus answer: {error}"[:300]) from None
        return per_pod

    def _pod_sample(self, pod: PodTarget, series: dict[SeriesId, tuple[float, float]]) -> SampleOrUnknown:
        if not series:
            return self._unknown(UnknownReason.NO_MATCHING_FAMILY, f"Prometheus holds no series for pod {pod.name}")
        timestamp_seconds = max(timestamp for timestamp, _ in series.values())
        if not math.isfinite(timestamp_seconds):
            return self._unknown(UnknownReason.QUERY_FAILED, f"Prometheus sample time {timestamp_seconds}")
        try:
            return sample_from_series(
                self._preset,
                [Series(series_id, value) for series_id, (_, value) in series.items()],
                timestamp_seconds=timestamp_seconds,
                model_name=self._model_name,
            )
        except NoMatchingFamilyError as error:
            return Unknown(timestamp_seconds, UnknownReason.NO_MATCHING_FAMILY, f"pod {pod.name}: {error}")
        except ExpositionError as error:
            return Unknown(timestamp_seconds, UnknownReason.PARSE_ERROR, f"pod {pod.name}: {error}")

    def _unknown(self, reason: UnknownReason, message: str) -> Unknown:
        return Unknown(self._clock(), reason, message)

    def _all_unknown(
        self, pods: Sequence[PodTarget], reason: UnknownReason, message: str
    ) -> dict[str, SampleOrUnknown]:
        unknown = self._unknown(reason, message)
        return {pod.name: unknown for pod in pods}


class _QueryError(Exception):
    """Prometheus answered, but not with an instant vector."""
