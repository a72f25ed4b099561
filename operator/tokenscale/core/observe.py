"""Build an `Observation` from pods and their recent engine samples (the window maths of `tokenscale.core.windows`).

Per pod, over the sliding window (``settings.window_seconds``) and the short recent window
(``settings.recent_window_seconds``, at least one tick):

- a pod is *unknown* when it has no sample, its newest sample is older than ``settings.stale_after_seconds``,
  or the counter its role needs (prompt tokens for prefill work, generation tokens for decode work) has fewer
  than two samples in the window (a pod warming up). An unknown pod never counts as idle;
- otherwise its token rates come from its counters (resets counted from 0) and its gauges from its newest sample.

Per role, pods that do prefill work are the prefill pods and the converted decoders; pods that do decode work
are the decode pods (converted ones included). Service-wide signals:

- processed prompt tokens/s ``r_proc`` = Σ pod rates; queue growth ``ΔQ/Δt`` = Σ per-pod growth of waiting
  requests; mean prompt length ``L̄_in`` from the prompt-length histograms' window delta (else since engine
  start, else the grid's middle representative length), ``L̄_out`` likewise from the generation-length ones;
- arriving prompt tokens/s ``λ_in = r_proc + (ΔQ/Δt)·L̄_in`` (see `windows.arriving_tokens_per_second` for its
  error), arriving requests/s ``R = r_proc/L̄_in + ΔQ/Δt``; the same over the recent window;
- bucket rates λ_b from the length histograms (`tokenscale.core.buckets`);
- TTFT and inter-token-latency p90 from the merged histogram deltas of all pods.

An unknown Ready pod is assumed to carry the mean load of the known pods of its group: each group's rates are
scaled by ``(known + unknown Ready) / known``. Its name and why go to ``Observation.unknown_reasons`` (which
blocks scale-in). When a role has no known Ready pod at all, ``load`` is ``None`` and every policy holds.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenscale.core import buckets, windows
from tokenscale.core.settings import ScalingSettings
from tokenscale.core.types import (
    EngineSample,
    Histogram,
    LoadSignals,
    Observation,
    PodView,
    Role,
    RoleView,
    ServingRole,
)

__all__ = ["LATENCY_QUANTILE", "build_observation"]

LATENCY_QUANTILE = 0.9
"""Quantile of TTFT and inter-token latency reported in `LoadSignals` (HeteroScale's p90)."""

_MAX_NAMES_IN_REASON = 3

_prompt_total = operator.attrgetter("prompt_tokens_total")
_generation_total = operator.attrgetter("generation_tokens_total")
_waiting = operator.attrgetter("requests_waiting")


@dataclass(frozen=True, slots=True)
class _PodWindow:
    """One known pod's numbers over the windows."""

    pod: PodView
    prompt_tokens_per_second: float
    recent_prompt_tokens_per_second: float
    waiting_growth_per_second: float
    recent_waiting_growth_per_second: float
    generation_tokens_per_second: float
    prompt_lengths: Histogram | None
    generation_lengths: Histogram | None
    prompt_lengths_since_start: Histogram | None
    generation_lengths_since_start: Histogram | None
    ttft: Histogram | None
    itl: Histogram | None


def _does_prefill(pod: PodView) -> bool:
    return pod.role is Role.PREFILL or pod.serving_role is ServingRole.CONVERTED


def _window_of(
    *, pod: PodView, samples: Sequence[EngineSample], now_seconds: float, settings: ScalingSettings
) -> _PodWindow | str:
    """The pod's window numbers, or why it is unknown."""
    if not samples:
        return "no metrics sample"
    newest = samples[-1]
    age = now_seconds - newest.timestamp_seconds
    if age > settings.stale_after_seconds:
        return f"newest sample is {age:.1f} s old (stale after {settings.stale_after_seconds:.1f} s)"
    window = windows.samples_in_window(samples=samples, now_seconds=now_seconds, window_seconds=settings.window_seconds)
    recent = windows.samples_in_window(
        samples=samples,
        now_seconds=now_seconds,
        window_seconds=max(settings.recent_window_seconds, settings.tick_seconds),
    )
    prompt_rate = windows.counter_rate_per_second(samples=window, value_of=_prompt_total)
    generation_rate = windows.counter_rate_per_second(samples=window, value_of=_generation_total)
    if _does_prefill(pod) and prompt_rate is None:
        return "needs two samples with prompt tokens in the window (warming up, or the engine exposes none)"
    if pod.role is Role.DECODE and generation_rate is None:
        return "needs two samples with generation tokens in the window (warming up, or the engine exposes none)"
    recent_prompt_rate = windows.counter_rate_per_second(samples=recent, value_of=_prompt_total)
    growth = windows.gauge_growth_per_second(samples=window, value_of=_waiting)
    recent_growth = windows.gauge_growth_per_second(samples=recent, value_of=_waiting)
    filled = dataclasses.replace(
        pod,
        load_known=True,
        requests_running=newest.requests_running or 0.0,
        requests_waiting=newest.requests_waiting or 0.0,
        kv_cache_usage_ratio=newest.kv_cache_usage_ratio or 0.0,
        prompt_tokens_per_second=prompt_rate or 0.0,
        generation_tokens_per_second=generation_rate or 0.0,
        unknown_reason=None,
    )
    return _PodWindow(
        pod=filled,
        prompt_tokens_per_second=prompt_rate or 0.0,
        recent_prompt_tokens_per_second=(prompt_rate or 0.0) if recent_prompt_rate is None else recent_prompt_rate,
        waiting_growth_per_second=growth or 0.0,
        recent_waiting_growth_per_second=(growth or 0.0) if recent_growth is None else recent_growth,
        generation_tokens_per_second=generation_rate or 0.0,
        prompt_lengths=_delta(window, "request_prompt_tokens"),
        generation_lengths=_delta(window, "request_generation_tokens"),
        prompt_lengths_since_start=newest.request_prompt_tokens,
        generation_lengths_since_start=newest.request_generation_tokens,
        ttft=_delta(window, "time_to_first_token_seconds"),
        itl=_delta(window, "inter_token_latency_seconds"),
    )


def _delta(samples: Sequence[EngineSample], name: str) -> Histogram | None:
    histograms = [h for s in samples if (h := getattr(s, name)) is not None]
    return windows.histogram_delta(histograms)


def _positive_mean(*candidates: Histogram | None, fallback: float) -> float:
    for candidate in candidates:
        mean = windows.histogram_mean(candidate)
        if mean is not None and mean > 0:
            return mean
    return fallback


def _shares(
    *,
    candidates: Sequence[Histogram | None],
    mean_tokens: float,
    edges_tokens: tuple[int, int],
    representative_tokens: tuple[float, float, float],
) -> buckets.LengthShares:
    for candidate in candidates:
        shares = buckets.length_shares(
            histogram=candidate, edges_tokens=edges_tokens, representative_tokens=representative_tokens
        )
        if shares is not None:
            return shares
    return buckets.point_shares(
        tokens=mean_tokens, edges_tokens=edges_tokens, representative_tokens=representative_tokens
    )


def _scale(*, known: int, unknown_ready: int) -> float:
    """Extrapolation of a group's sums to its unknown Ready pods, at the known pods' mean."""
    return (known + unknown_ready) / known if known else 1.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def build_observation(
    *,
    now_seconds: float,
    settings: ScalingSettings,
    prefill_spec_replicas: int,
    decode_spec_replicas: int,
    pods: Sequence[PodView],
    histories: Mapping[str, Sequence[EngineSample]],
) -> Observation:
    """The observation at ``now_seconds``: pods with their load filled in, and service-wide `LoadSignals`.

    ``histories`` maps pod names to their recent samples in ascending time; a pod missing from it has no sample.
    ``load`` is ``None`` (and ``unknown_reasons`` says why) when either role has no Ready pod with fresh metrics.
    """
    known: list[_PodWindow] = []
    filled: list[PodView] = []
    unknown_reasons: list[str] = []
    unknown_ready_prefill_work = unknown_ready_decode_work = 0
    for pod in pods:
        result = _window_of(pod=pod, samples=histories.get(pod.name, ()), now_seconds=now_seconds, settings=settings)
        if isinstance(result, str):
            filled.append(dataclasses.replace(pod, load_known=False, unknown_reason=result))
            if pod.ready:
                unknown_reasons.append(f"{pod.name}: {result}")
                unknown_ready_prefill_work += _does_prefill(pod)
                unknown_ready_decode_work += pod.role is Role.DECODE
        else:
            known.append(result)
            filled.append(result.pod)

    prefill_view = RoleView(
        spec_replicas=prefill_spec_replicas, pods=tuple(p for p in filled if p.role is Role.PREFILL)
    )
    decode_view = RoleView(spec_replicas=decode_spec_replicas, pods=tuple(p for p in filled if p.role is Role.DECODE))

    missing_roles = [
        role
        for role, view in ((Role.PREFILL, prefill_view), (Role.DECODE, decode_view))
        if not any(p.ready and p.load_known for p in view.pods)
    ]
    if missing_roles:
        for role in missing_roles:
            view = prefill_view if role is Role.PREFILL else decode_view
            names = ", ".join(p.name for p in view.pods[:_MAX_NAMES_IN_REASON]) or "none"
            unknown_reasons.insert(0, f"{role.value}: no Ready pod with fresh metrics (pods: {names})")
        return Observation(
            now_seconds=now_seconds,
            prefill=prefill_view,
            decode=decode_view,
            load=None,
            unknown_reasons=tuple(unknown_reasons),
        )

    load = _load_signals(
        known=known,
        settings=settings,
        unknown_ready_prefill_work=unknown_ready_prefill_work,
        unknown_ready_decode_work=unknown_ready_decode_work,
    )
    return Observation(
        now_seconds=now_seconds,
        prefill=prefill_view,
        decode=decode_view,
        load=load,
        unknown_reasons=tuple(unknown_reasons),
    )


def _load_signals(
    *,
    known: Sequence[_PodWindow],
    settings: ScalingSettings,
    unknown_ready_prefill_work: int,
    unknown_ready_decode_work: int,
) -> LoadSignals:
    grid = settings.profile.buckets
    prefill_work = [w for w in known if _does_prefill(w.pod)]
    decode_work = [w for w in known if w.pod.role is Role.DECODE]
    prefill_scale = _scale(known=len(prefill_work), unknown_ready=unknown_ready_prefill_work)
    decode_scale = _scale(known=len(decode_work), unknown_ready=unknown_ready_decode_work)

    prompt_window = windows.merge_histograms(w.prompt_lengths for w in prefill_work)
    prompt_since_start = windows.merge_histograms(w.prompt_lengths_since_start for w in prefill_work)
    generation_window = windows.merge_histograms(w.generation_lengths for w in decode_work)
    generation_since_start = windows.merge_histograms(w.generation_lengths_since_start for w in decode_work)
    mean_prompt = _positive_mean(prompt_window, prompt_since_start, fallback=grid.representative_input_tokens[1])
    mean_generation = _positive_mean(
        generation_window, generation_since_start, fallback=grid.representative_output_tokens[1]
    )

    processed = prefill_scale * sum(w.prompt_tokens_per_second for w in prefill_work)
    recent_processed = prefill_scale * sum(w.recent_prompt_tokens_per_second for w in prefill_work)
    growth = prefill_scale * sum(w.waiting_growth_per_second for w in prefill_work)
    recent_growth = prefill_scale * sum(w.recent_waiting_growth_per_second for w in prefill_work)
    arriving = windows.arriving_tokens_per_second(
        processed_tokens_per_second=processed,
        waiting_growth_requests_per_second=growth,
        mean_prompt_tokens=mean_prompt,
    )
    recent_arriving = windows.arriving_tokens_per_second(
        processed_tokens_per_second=recent_processed,
        waiting_growth_requests_per_second=recent_growth,
        mean_prompt_tokens=mean_prompt,
    )
    arriving_requests = max(0.0, processed / mean_prompt + growth)

    inputs = _shares(
        candidates=(prompt_window, prompt_since_start),
        mean_tokens=mean_prompt,
        edges_tokens=grid.input_edges_tokens,
        representative_tokens=grid.representative_input_tokens,
    )
    outputs = _shares(
        candidates=(generation_window, generation_since_start),
        mean_tokens=mean_generation,
        edges_tokens=grid.output_edges_tokens,
        representative_tokens=grid.representative_output_tokens,
    )
    ready_prefill = [w.pod for w in known if w.pod.role is Role.PREFILL and w.pod.ready]
    ready_decode = [w.pod for w in decode_work if w.pod.ready]
    return LoadSignals(
        arriving_prompt_tokens_per_second=arriving,
        processed_prompt_tokens_per_second=processed,
        generation_tokens_per_second=decode_scale * sum(w.generation_tokens_per_second for w in decode_work),
        arriving_requests_per_second=arriving_requests,
        mean_prompt_tokens=mean_prompt,
        mean_generation_tokens=mean_generation,
        bucket_tokens_per_second=buckets.bucket_token_rates(
            arriving_requests_per_second=arriving_requests, inputs=inputs, outputs=outputs
        ),
        requests_waiting=prefill_scale * sum(w.pod.requests_waiting for w in prefill_work),
        prefill_requests_running_per_pod=_mean([p.requests_running for p in ready_prefill]),
        decode_requests_running_per_pod=_mean([p.requests_running for p in ready_decode]),
        prefill_kv_cache_usage_ratio=_mean([p.kv_cache_usage_ratio for p in ready_prefill]),
        decode_kv_cache_usage_ratio=_mean([p.kv_cache_usage_ratio for p in ready_decode]),
        ttft_p90_seconds=windows.histogram_quantile(
            quantile=LATENCY_QUANTILE, histogram=windows.merge_histograms(w.ttft for w in known)
        ),
        itl_p90_seconds=windows.histogram_quantile(
            quantile=LATENCY_QUANTILE, histogram=windows.merge_histograms(w.itl for w in known)
        ),
        recent_arriving_prompt_tokens_per_second=recent_arriving,
    )
