"""The oracle: the cheapest provisioning that serves a trace within the SLO, knowing the future and starting
instances instantly. Its GPU-hours are the denominator of every policy's ``cost_vs_oracle``.

Method (per bin of ``bin_seconds``, default 10 s, the control window):

- **prefill**: the prompt tokens arriving in the bin must be prefilled within it, and one prefiller prefills at
  most ``min(V_P(L̄), V_N)`` tokens/s, where ``V_P(L̄)`` is `tokenscale.core.velocity.prefill_tokens_per_second`
  at the bin's mean prompt length (full steps of the engine's token budget: its highest throughput). So
  ``N_P = ceil(prompt tokens / (min(V_P, V_N) · bin))``;
- **decode**: request r occupies ``(I_r + O_r) / V_D(I_r, O_r)`` decoder-seconds, where ``V_D`` is
  `tokenscale.core.velocity.decode_tokens_per_second` for its own lengths: the largest concurrency the KV cache
  holds whose step time still meets the TPOT objective, so no decoder can do the request's work faster while
  meeting TPOT. ``N_D = ceil(Σ decoder-seconds of the bin's arrivals / bin)``;
- both at least the roles' minimum replicas (a policy may not go below them either).

Why it is a lower bound: within a bin no provisioning that meets the objectives can process more tokens per
instance than these peak rates, and an oracle that starts instantly pays for no cold start, no draining and no
headroom for queueing. Two approximations make it a bound up to a small error rather than a strict one: work may
spill into the next bin by up to the TTFT objective (≤ 2 s of a 10 s bin), and a request's decoding is charged to
its arrival bin. ``replay_schedule`` runs the oracle's counts through the simulator so that its own SLO attainment
shows how close to feasible the bound is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenscale.core import velocity
from tokenscale.core.profile import Profile
from tokenscale.sim.traces import Trace

__all__ = ["DEFAULT_BIN_SECONDS", "OracleSchedule", "oracle_schedule"]

DEFAULT_BIN_SECONDS = 10.0


@dataclass(frozen=True, eq=False)
class OracleSchedule:
    """Instances per role per bin: bin ``k`` covers ``[k·bin_seconds, (k+1)·bin_seconds)``."""

    bin_seconds: float
    prefill_instances: npt.NDArray[np.int64]
    decode_instances: npt.NDArray[np.int64]
    gpus_per_instance: int
    horizon_seconds: float

    @property
    def gpu_hours(self) -> float:
        """GPU-hours of the schedule over [0, horizon] (the last bin may be partial)."""
        widths = np.full(len(self.prefill_instances), self.bin_seconds)
        if len(widths):
            widths[-1] = self.horizon_seconds - self.bin_seconds * (len(widths) - 1)
        instances = self.prefill_instances + self.decode_instances
        return float(np.sum(instances * widths)) * self.gpus_per_instance / 3600.0

    def at(self, t_seconds: float) -> tuple[int, int]:
        """(prefill, decode) instances the schedule holds at ``t_seconds`` (the last bin's after the horizon)."""
        k = min(int(t_seconds // self.bin_seconds), len(self.prefill_instances) - 1)
        return int(self.prefill_instances[max(k, 0)]), int(self.decode_instances[max(k, 0)])

    def peak(self) -> tuple[int, int]:
        return int(self.prefill_instances.max()), int(self.decode_instances.max())


def _decoder_seconds(*, profile: Profile, trace: Trace, tpot_slo_seconds: float) -> npt.NDArray[np.float64]:
    """Decoder-seconds of each request: (I + O) / V_D(I, O), computed once per distinct (I, O) pair."""
    pairs = np.stack([trace.input_tokens, trace.output_tokens], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    per_pair = np.array(
        [
            (i + o)
            / velocity.decode_tokens_per_second(
                perf=profile.perf, input_tokens=float(i), output_tokens=float(o), tpot_slo_seconds=tpot_slo_seconds
            )
            for i, o in unique
        ],
        dtype=np.float64,
    )
    return per_pair[inverse.reshape(-1)]


def oracle_schedule(
    *,
    trace: Trace,
    profile: Profile,
    tpot_slo_seconds: float,
    horizon_seconds: float,
    bin_seconds: float = DEFAULT_BIN_SECONDS,
    min_prefill: int = 1,
    min_decode: int = 1,
) -> OracleSchedule:
    """The oracle's instances per bin over [0, horizon] (see the module docstring for the method)."""
    bins = max(1, math.ceil(horizon_seconds / bin_seconds))
    index = np.minimum((trace.arrival_seconds // bin_seconds).astype(np.int64), bins - 1)
    prompt_tokens = np.bincount(index, weights=trace.input_tokens.astype(np.float64), minlength=bins)
    requests = np.bincount(index, minlength=bins)
    network = velocity.network_tokens_per_second(perf=profile.perf)
    prefill = np.zeros(bins, dtype=np.int64)
    for k in np.nonzero(requests)[0]:
        mean_prompt = prompt_tokens[k] / requests[k]
        rate = min(velocity.prefill_tokens_per_second(perf=profile.perf, prompt_tokens=mean_prompt), network)
        prefill[k] = math.ceil(prompt_tokens[k] / (rate * bin_seconds) - 1e-9)
    decoder_seconds = np.bincount(
        index,
        weights=_decoder_seconds(profile=profile, trace=trace, tpot_slo_seconds=tpot_slo_seconds),
        minlength=bins,
    )
    decode = np.ceil(decoder_seconds / bin_seconds - 1e-9).astype(np.int64)
    return OracleSchedule(
        bin_seconds=bin_seconds,
        prefill_instances=np.maximum(prefill, min_prefill),
        decode_instances=np.maximum(decode, min_decode),
        gpus_per_instance=profile.perf.gpus_per_instance,
        horizon_seconds=horizon_seconds,
    )
