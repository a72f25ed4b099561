"""Cost of the core per tick for a 64-pod service: `observe.build_observation` and `decide.decide` per policy.

The service has 24 prefill and 40 decode pods (4 of them converted), each with 11 samples (10 s window, 1 s
tick) carrying the counters and four vLLM-bucketed histograms. Each policy runs over 200 consecutive ticks so
that its windows and histories are full. Prints microseconds per call, the best of 5 repeats (the machine is
shared: the minimum is the least disturbed measurement, as `timeit` advises).
Goal (issue 4): decide() well under 1 ms.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tokenscale.api import profiles
from tokenscale.core import decide, observe
from tokenscale.core.policies import registry
from tokenscale.core.settings import SLO, Behavior, DistServeSettings, RoleBounds, ScalingSettings, StaticSettings
from tokenscale.core.types import EngineSample, Histogram, Observation, PodView, Role, ServingRole

PREFILL_PODS = 24
DECODE_PODS = 40
CONVERTED_PODS = 4
TICKS = 200
REPEATS = 5

LENGTH_BOUNDS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, math.inf)
LATENCY_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, math.inf)


def _histogram(bounds: tuple[float, ...], observations: float, mean: float) -> Histogram:
    # a spread over the buckets around the mean: cumulative share grows with the bound
    counts = tuple(observations * min(1.0, b / (2 * mean)) if not math.isinf(b) else observations for b in bounds)
    return Histogram(bounds, counts, observations * mean, observations)


def _sample(t: float, index: int, *, prefill: bool, decode: bool) -> EngineSample:
    requests = 20.0 * t + index
    return EngineSample(
        timestamp_seconds=t,
        prompt_tokens_total=20_000.0 * t if prefill else None,
        generation_tokens_total=2_000.0 * t if decode else None,
        requests_waiting=float(index % 5),
        requests_running=float(40 + index % 7),
        kv_cache_usage_ratio=0.3 + 0.01 * (index % 10),
        requests_finished_total=requests,
        time_to_first_token_seconds=_histogram(LATENCY_BOUNDS, requests, 0.2),
        inter_token_latency_seconds=_histogram(LATENCY_BOUNDS, 50 * requests, 0.03),
        request_prompt_tokens=_histogram(LENGTH_BOUNDS, requests, 1000.0),
        request_generation_tokens=_histogram(LENGTH_BOUNDS, requests, 100.0),
    )


def _service() -> tuple[list[PodView], dict[str, list[EngineSample]]]:
    pods: list[PodView] = []
    histories: dict[str, list[EngineSample]] = {}
    for i in range(PREFILL_PODS + DECODE_PODS):
        role = Role.PREFILL if i < PREFILL_PODS else Role.DECODE
        converted = role is Role.DECODE and i >= PREFILL_PODS + DECODE_PODS - CONVERTED_PODS
        serving = ServingRole.CONVERTED if converted else ServingRole(role.value)
        name = f"{role.value}-{i}"
        pods.append(PodView(name=name, role=role, serving_role=serving, ready=True))
        histories[name] = [
            _sample(float(t), i, prefill=role is Role.PREFILL or converted, decode=role is Role.DECODE)
            for t in range(90, 101)
        ]
    return pods, histories


def _settings(policy: str) -> ScalingSettings:
    return ScalingSettings(
        policy=policy,
        prefill=RoleBounds(1, 64),
        decode=RoleBounds(1, 64),
        behavior=Behavior(),
        slo=SLO(),
        profile=profiles.load_profile("llama-3.1-8b-h100"),
        distserve=DistServeSettings(prefill_goodput_requests_per_second=20, decode_goodput_requests_per_second=40),
        static=StaticSettings(prefill_replicas=PREFILL_PODS, decode_replicas=DECODE_PODS),
    )


def _best_microseconds(run: Callable[[], int]) -> float:
    timings = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        calls = run()
        timings.append((time.perf_counter() - start) / calls * 1e6)
    return min(timings)


def main() -> None:
    pods, histories = _service()
    settings = _settings("tokenscale")
    now = 100.0

    def observe_once() -> int:
        observe.build_observation(
            now_seconds=now,
            settings=settings,
            prefill_spec_replicas=PREFILL_PODS,
            decode_spec_replicas=DECODE_PODS,
            pods=pods,
            histories=histories,
        )
        return 1

    observation = observe.build_observation(
        now_seconds=now,
        settings=settings,
        prefill_spec_replicas=PREFILL_PODS,
        decode_spec_replicas=DECODE_PODS,
        pods=pods,
        histories=histories,
    )
    print(f"bench_core: {PREFILL_PODS} prefill + {DECODE_PODS} decode pods, 11 samples each")
    observed = _best_microseconds(observe_once)
    pod_count = PREFILL_PODS + DECODE_PODS
    print(f"  build_observation: {observed:8.1f} us/call, {observed / pod_count:6.1f} us/pod")
    for policy in registry.policy_names():
        policy_settings = _settings(policy)

        def ticks(policy_settings: ScalingSettings = policy_settings) -> int:
            state = decide.initial_state(settings=policy_settings)
            for tick in range(TICKS):
                shifted = Observation(
                    now_seconds=now + tick,
                    prefill=observation.prefill,
                    decode=observation.decode,
                    load=observation.load,
                    unknown_reasons=observation.unknown_reasons,
                )
                _, state = decide.decide(settings=policy_settings, observation=shifted, state=state)
            return TICKS

        print(f"  decide[{policy}]: {_best_microseconds(ticks):8.1f} us/call")


if __name__ == "__main__":
    main()
