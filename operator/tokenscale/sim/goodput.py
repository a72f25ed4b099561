"""DistServe's per-instance goodputs, found the way DistServe finds them: by simulation (algorithms.md §3.4).

Goodput is the highest request rate one instance serves with at least ``target_attainment`` (90%) of requests
within the SLO. For each role, a binary search over the rate runs the cluster model for ``sample_seconds`` of
Poisson arrivals whose lengths are drawn from the trace (seeded):

- prefill: one prefiller and ample decoders; attainment of the TTFT objective (DistServe's prefill phase SLO);
- decode: one decoder and ample prefillers; attainment of both objectives (a decoder out of KV makes requests wait
  for admission, which shows in TTFT; TPOT alone would never fail).

The result goes to `tokenscale.core.settings.DistServeSettings`, which the DistServe-style policy (and TokenScale's
prefill-only ablation) sizes with: ``n = ceil(request rate / goodput)``.
"""

from __future__ import annotations

import math

import numpy as np

from tokenscale.core import velocity
from tokenscale.core.profile import Profile
from tokenscale.core.settings import SLO, DistServeSettings
from tokenscale.core.types import Role
from tokenscale.sim import report, traces
from tokenscale.sim.cluster import Cluster, ClusterConfig

__all__ = ["distserve_settings", "instance_goodput"]

_AMPLE = 16
_ITERATIONS = 7


def _attainment(
    *, role: Role, rate: float, trace: traces.Trace, profile: Profile, slo: SLO, sample_seconds: float, seed: int
) -> float:
    sample = traces.poisson_trace(rate_per_second=rate, duration_seconds=sample_seconds, seed=seed, lengths_from=trace)
    cluster = Cluster(perf=profile.perf, config=ClusterConfig(tpot_slo_seconds=slo.tpot_seconds))
    cluster.start_instances(Role.PREFILL, 1 if role == Role.PREFILL else _AMPLE, ready_now=True)
    cluster.start_instances(Role.DECODE, _AMPLE if role == Role.PREFILL else 1, ready_now=True)
    cluster.submit_all(
        arrival_seconds=sample.arrival_seconds.tolist(),
        input_tokens=sample.input_tokens.tolist(),
        output_tokens=sample.output_tokens.tolist(),
    )
    # Requests still queued well after the sample ends have missed anyway: stop there.
    cluster.advance_to(sample_seconds + 60.0)
    scores = report.attainment(outcomes=cluster.outcomes(), slo=slo)
    return scores.ttft if role == Role.PREFILL else scores.slo


def instance_goodput(
    *,
    role: Role,
    trace: traces.Trace,
    profile: Profile,
    slo: SLO,
    target_attainment: float = 0.9,
    sample_seconds: float = 120.0,
    seed: int = 0,
) -> float:
    """Requests/s one instance of ``role`` serves with ``target_attainment`` of them within the SLO."""
    mean_input = float(np.mean(trace.input_tokens))
    mean_output = float(np.mean(trace.output_tokens))
    if role == Role.PREFILL:
        estimate = velocity.prefill_tokens_per_second(perf=profile.perf, prompt_tokens=mean_input) / mean_input
    else:
        estimate = velocity.decode_tokens_per_second(
            perf=profile.perf, input_tokens=mean_input, output_tokens=mean_output, tpot_slo_seconds=slo.tpot_seconds
        ) / (mean_input + mean_output)
    low, high = 0.0, 2.0 * estimate
    for _ in range(_ITERATIONS):
        middle = 0.5 * (low + high)
        attained = _attainment(
            role=role, rate=middle, trace=trace, profile=profile, slo=slo, sample_seconds=sample_seconds, seed=seed
        )
        low, high = (middle, high) if attained >= target_attainment else (low, middle)
    # ``low`` passed (or is 0 when nothing did); never report 0, which no policy could divide by.
    return max(low, estimate / 2.0**_ITERATIONS, math.ulp(1.0))


def distserve_settings(
    *, trace: traces.Trace, profile: Profile, slo: SLO, seed: int = 0, sample_seconds: float = 120.0
) -> DistServeSettings:
    """DistServe's goodputs for ``trace`` on ``profile``, with its default re-planning interval and rate window."""
    return DistServeSettings(
        prefill_goodput_requests_per_second=instance_goodput(
            role=Role.PREFILL, trace=trace, profile=profile, slo=slo, seed=seed, sample_seconds=sample_seconds
        ),
        decode_goodput_requests_per_second=instance_goodput(
            role=Role.DECODE, trace=trace, profile=profile, slo=slo, seed=seed, sample_seconds=sample_seconds
        ),
    )
