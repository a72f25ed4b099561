"""The serving instances of the simulated PD cluster: requests, prefillers and decoders, with their engine counters.

Service times come only from `tokenscale.core.profile.PerfModel` (reference/perfmodel.md §2), so the simulator and
the operator's sizing share one model:

- a **prefiller** runs vLLM-style chunked prefill: each step continues the prompts it holds and pulls new ones
  from the head of the cluster's shared prefill queue, up to ``max_num_batched_tokens`` tokens and
  ``max_num_seqs`` requests; a step lasts ``batch_prefill_ms(chunks) + c · Σ 2·p·l`` ms, where a chunk of ``l``
  tokens after ``p`` already-prefilled tokens of its request also attends to those ``p`` tokens (so a prompt
  split in chunks costs what it costs whole);
- a **decoder** runs continuous batching: one step over ``B`` sequences holding ``K`` KV tokens lasts
  ``decode_step_ms(K, B)``, every sequence gains one token (so ``K`` grows by ``B`` per step), a request whose
  first token arrives mid-step joins at the next step boundary. Between two changes of the batch the step times
  form an arithmetic series, so the decoder jumps over whole segments in closed form instead of simulating each
  step: ``T(n) = n·s₀ + q·n(n−1)/2`` with ``s₀ = a + b·K + c·B`` and ``q = b·B`` (ms);
- a **converted** decoder (a convertible decoder taking prefill work) pulls prompts from the shared prefill queue
  and adds a restricted prefill chunk to each decode step: no more than keeps the step within ``τ · TPOT``
  (`tokenscale.core.conversion.chunk_budget_tokens`, the planner's own function; decode has priority), at most a
  configured cap; the chunk costs its linear and attention terms (the step's fixed cost is the decode step's);
  a request prefilled there stays there to decode (its KV is local, no transfer).

KV admission: a decoder takes a request when its reserved KV (input + output tokens of every admitted request)
plus the newcomer's fits ``kv_capacity_tokens`` and fewer than ``max_num_seqs`` are admitted. Reserving the whole
output up front means the model never preempts.

Each instance keeps the counters, gauges and histograms a vLLM pod exports (`tokenscale.sim.exposition` turns
them into an `EngineSample`).
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from typing import Final

from tokenscale.core import conversion
from tokenscale.core.profile import PerfModel
from tokenscale.core.types import Histogram, Role

__all__ = [
    "GENERATION_TOKENS_BUCKETS",
    "INTER_TOKEN_LATENCY_BUCKETS_SECONDS",
    "PROMPT_TOKENS_BUCKETS",
    "TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS",
    "DecodeInstance",
    "Instance",
    "InstanceState",
    "PrefillInstance",
    "Request",
]

# vLLM V1 (vllm/v1/metrics/loggers.py) histogram bucket upper bounds; +Inf is implicit and added on exposition.
TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
    160.0, 640.0, 2560.0,
)  # fmt: skip
INTER_TOKEN_LATENCY_BUCKETS_SECONDS: Final = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
# vLLM's build_1_2_5_buckets(max_model_len) for a 128k-context model (Llama-3.1, Qwen2.5 with YaRN).
PROMPT_TOKENS_BUCKETS: Final = (
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0, 50000.0,
    100000.0,
)  # fmt: skip
GENERATION_TOKENS_BUCKETS: Final = PROMPT_TOKENS_BUCKETS


class Request:
    """One request on its way through the cluster; times are absolute simulated seconds (``nan`` = not yet)."""

    __slots__ = (
        "arrival_seconds",
        "decoder",
        "finish_seconds",
        "first_token_seconds",
        "home",
        "index",
        "input_tokens",
        "join_step",
        "kv_tokens",
        "output_tokens",
        "prefilled_tokens",
    )

    def __init__(self, index: int, arrival_seconds: float, input_tokens: int, output_tokens: int, kv_cap: int) -> None:
        self.index = index
        self.arrival_seconds = arrival_seconds
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        # KV reserved on the decoder; a request larger than a whole decoder is capped so it can still run alone.
        self.kv_tokens = min(input_tokens + output_tokens, kv_cap)
        self.prefilled_tokens = 0
        self.first_token_seconds = math.nan
        self.finish_seconds = math.nan
        self.join_step = 0
        self.decoder: DecodeInstance | None = None
        # The pod whose requests_waiting gauge counts this request while it waits in a shared queue.
        self.home: PrefillInstance | DecodeInstance | None = None


class InstanceState:
    """Lifecycle of an instance. Cost accrues in every state until the instance is removed."""

    STARTING: Final = "starting"
    READY: Final = "ready"
    DRAINING: Final = "draining"
    REMOVED: Final = "removed"


def _observe(counts: list[float], bounds: tuple[float, ...], value: float, weight: float = 1.0) -> None:
    """Add ``weight`` observations of ``value`` to per-bucket (non-cumulative) counts; the last slot is +Inf."""
    counts[bisect.bisect_left(bounds, value)] += weight


class Instance:
    """What prefillers and decoders share: identity, lifecycle and the engine counters of their pod."""

    __slots__ = (
        "created_seconds",
        "exposed",
        "finished_requests",
        "generation_tokens_hist",
        "generation_tokens_total",
        "itl_hist",
        "itl_sum_seconds",
        "name",
        "order",
        "perf",
        "prompt_tokens_hist",
        "prompt_tokens_total",
        "ready_seconds",
        "removed_seconds",
        "request_tokens_sums",
        "role",
        "state",
        "ttft_hist",
        "ttft_sum_seconds",
        "waiting_home",
        "withdrawn",
    )

    def __init__(self, *, name: str, order: int, role: Role, perf: PerfModel, created_seconds: float) -> None:
        self.name = name
        self.order = order
        self.role = role
        self.perf = perf
        self.state = InstanceState.STARTING
        self.created_seconds = created_seconds
        self.ready_seconds = math.nan
        self.removed_seconds = math.nan
        self.prompt_tokens_total = 0.0
        self.generation_tokens_total = 0.0
        self.finished_requests = 0.0
        self.ttft_hist = [0.0] * (len(TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS) + 1)
        self.ttft_sum_seconds = 0.0
        self.itl_hist = [0.0] * (len(INTER_TOKEN_LATENCY_BUCKETS_SECONDS) + 1)
        self.itl_sum_seconds = 0.0
        self.prompt_tokens_hist = [0.0] * (len(PROMPT_TOKENS_BUCKETS) + 1)
        self.generation_tokens_hist = [0.0] * (len(GENERATION_TOKENS_BUCKETS) + 1)
        self.request_tokens_sums = [0.0, 0.0]  # sums of the prompt and generation histograms
        self.waiting_home = 0  # requests in a shared queue that this pod's waiting gauge counts
        self.withdrawn = False  # out of routing (soft scale-in) while still Ready
        self.exposed: dict[int, Histogram] = {}  # the last histograms `tokenscale.sim.exposition` built

    @property
    def serving(self) -> bool:
        """Ready and in routing: takes new work."""
        return self.state == InstanceState.READY and not self.withdrawn

    def gpu_seconds(self, *, until_seconds: float) -> float:
        """GPU-seconds provisioned from creation to removal (or ``until_seconds``), clipped to ``until_seconds``."""
        end = self.removed_seconds if not math.isnan(self.removed_seconds) else until_seconds
        return max(0.0, min(end, until_seconds) - self.created_seconds) * self.perf.gpus_per_instance

    def observe_finished(self, request: Request, *, generation_tokens: int) -> None:
        self.finished_requests += 1
        _observe(self.prompt_tokens_hist, PROMPT_TOKENS_BUCKETS, request.input_tokens)
        self.request_tokens_sums[0] += request.input_tokens
        if generation_tokens:
            _observe(self.generation_tokens_hist, GENERATION_TOKENS_BUCKETS, generation_tokens)
            self.request_tokens_sums[1] += generation_tokens

    def observe_ttft(self, seconds: float) -> None:
        _observe(self.ttft_hist, TIME_TO_FIRST_TOKEN_BUCKETS_SECONDS, seconds)
        self.ttft_sum_seconds += seconds


class PrefillInstance(Instance):
    """A prefiller: chunked prefill steps under the token budget, pulling new requests from the shared queue."""

    __slots__ = ("inflight", "start_pending", "step", "step_end_seconds")

    def __init__(self, *, name: str, order: int, perf: PerfModel, created_seconds: float) -> None:
        super().__init__(name=name, order=order, role=Role.PREFILL, perf=perf, created_seconds=created_seconds)
        self.inflight: deque[Request] = deque()  # pulled and not yet fully prefilled, in pull order
        self.step: list[tuple[Request, int]] = []
        self.step_end_seconds = math.nan
        self.start_pending = False  # a step starts at the current instant, after simultaneous arrivals

    @property
    def busy(self) -> bool:
        return bool(self.step) or self.start_pending

    @property
    def idle(self) -> bool:
        return not self.step and not self.inflight and not self.start_pending

    def start_step(self, now_seconds: float, *, waiting: deque[Request] | None) -> tuple[float | None, list[Request]]:
        """Form the next step: chunks of the requests it holds first (a long prompt continues), then new requests
        pulled from the head of ``waiting`` (None: pull nothing, e.g. draining). Returns the step's end time
        (None when there is nothing to do) and the requests pulled."""
        self.start_pending = False
        perf = self.perf
        budget = perf.max_num_batched_tokens
        slots = perf.max_num_seqs
        chunks: list[int] = []
        extra_ms = 0.0
        step = self.step
        pulled: list[Request] = []
        for request in self.inflight:
            if budget <= 0 or len(step) >= slots:
                break
            remaining = request.input_tokens - request.prefilled_tokens
            chunk = remaining if remaining <= budget else budget
            step.append((request, chunk))
            chunks.append(chunk)
            extra_ms += 2.0 * request.prefilled_tokens * chunk
            budget -= chunk
        while waiting and budget > 0 and len(step) < slots:
            request = waiting.popleft()
            pulled.append(request)
            self.inflight.append(request)
            chunk = request.input_tokens if request.input_tokens <= budget else budget
            step.append((request, chunk))
            chunks.append(chunk)
            budget -= chunk
        if not step:
            return None, pulled
        duration_ms = perf.batch_prefill_ms(chunk_tokens=tuple(chunks)) + perf.prefill_ms_per_token_squared * extra_ms
        self.step_end_seconds = now_seconds + duration_ms / 1000.0
        return self.step_end_seconds, pulled

    def finish_step(self) -> list[Request]:
        """Apply the step's chunks; returns the requests whose prefill completed."""
        done: list[Request] = []
        tokens = 0
        for request, chunk in self.step:
            request.prefilled_tokens += chunk
            tokens += chunk
            if request.prefilled_tokens >= request.input_tokens:
                done.append(request)
        self.step = []
        self.prompt_tokens_total += tokens
        inflight = self.inflight
        while inflight and inflight[0].prefilled_tokens >= inflight[0].input_tokens:
            inflight.popleft()
        return done

    @property
    def requests_running(self) -> int:
        return len(self.step)

    @property
    def requests_waiting(self) -> int:
        return self.waiting_home + len(self.inflight) - len(self.step)


class DecodeInstance(Instance):
    """A decoder: KV admission (the cluster admits from the shared decode queue), continuous batching in
    closed-form segments, and restricted chunked prefill of requests it pulls while converted."""

    __slots__ = (
        "admitted",
        "base_seconds",
        "batch_size",
        "converted",
        "converted_since_seconds",
        "finishing",
        "pending",
        "prefilling",
        "prefilling_tokens",
        "reserved_kv_tokens",
        "segment_end_seconds",
        "segment_end_step",
        "segment_prefill",
        "segment_version",
        "steps",
        "sum_input_tokens",
        "sum_join_step",
    )

    def __init__(self, *, name: str, order: int, perf: PerfModel, created_seconds: float) -> None:
        super().__init__(name=name, order=order, role=Role.DECODE, perf=perf, created_seconds=created_seconds)
        self.reserved_kv_tokens = 0  # KV of every admitted request (transferring, pending, decoding, prefilling)
        self.admitted = 0  # requests admitted and not finished
        self.pending: list[Request] = []  # first token out, joining the batch at the next step boundary
        self.finishing: list[tuple[int, int, Request]] = []  # heap of (finish step, index, request)
        self.batch_size = 0
        self.sum_input_tokens = 0
        self.sum_join_step = 0
        self.steps = 0  # steps completed up to base_seconds
        self.base_seconds = math.nan  # the step boundary the state refers to; nan when idle
        self.segment_end_step = 0
        self.segment_end_seconds = math.nan
        self.segment_version = 0
        self.segment_prefill: list[tuple[Request, int]] = []
        self.converted = False
        self.converted_since_seconds = math.nan
        self.prefilling: deque[Request] = deque()  # pulled while converted, prefilled here in chunks
        self.prefilling_tokens = 0  # prompt tokens of ``prefilling`` not yet prefilled

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """A segment is scheduled (decoding or prefilling)."""
        return not math.isnan(self.segment_end_seconds)

    @property
    def idle(self) -> bool:
        return self.admitted == 0

    def kv_tokens_in_batch(self) -> int:
        """KV tokens held by the decoding batch at the base boundary: inputs plus tokens generated since joining."""
        return self.sum_input_tokens + self.batch_size * self.steps - self.sum_join_step

    def kv_tokens_used(self) -> float:
        """KV tokens held now: the batch, plus the prompts of requests transferred, pending or being prefilled."""
        return float(self.kv_tokens_in_batch() + self._kv_outside_batch())

    def _kv_outside_batch(self) -> int:
        pending = sum(r.input_tokens for r in self.pending)
        prefilling = sum(r.prefilled_tokens for r in self.prefilling)
        return pending + prefilling

    def fits(self, request: Request, *, kv_capacity_tokens: float) -> bool:
        """Whether KV room (within ``kv_capacity_tokens``) and a sequence slot are free for ``request`` now.
        An empty decoder takes any request, so that one larger than the limit still runs."""
        if self.admitted == 0:
            return True
        return (
            self.reserved_kv_tokens + request.kv_tokens <= kv_capacity_tokens and self.admitted < self.perf.max_num_seqs
        )

    def admit(self, request: Request) -> None:
        self.reserved_kv_tokens += request.kv_tokens
        self.admitted += 1
        request.decoder = self

    def release(self, request: Request) -> None:
        self.reserved_kv_tokens -= request.kv_tokens
        self.admitted -= 1

    # -- closed-form segments ----------------------------------------------------------------------------------

    def _step_ms(self) -> tuple[float, float]:
        """(s₀, q): the next step's decode time and its growth per step, ms, at the base boundary."""
        perf = self.perf
        b = self.batch_size
        s0 = (
            perf.decode_fixed_ms
            + perf.decode_ms_per_kv_token * self.kv_tokens_in_batch()
            + perf.decode_ms_per_sequence * b
        )
        return s0, perf.decode_ms_per_kv_token * b

    def _steps_by(self, elapsed_ms: float, s0: float, q: float) -> int:
        """Largest n with T(n) = n·s₀ + q·n(n−1)/2 ≤ elapsed_ms."""
        if elapsed_ms < s0:
            return 0
        if q <= 0.0:
            n = int(elapsed_ms // s0)
        else:
            half = s0 - 0.5 * q
            n = int((-half + math.sqrt(half * half + 2.0 * q * elapsed_ms)) / q)
        while (n + 1) * s0 + q * (n + 1) * n * 0.5 <= elapsed_ms:
            n += 1
        while n > 0 and n * s0 + q * n * (n - 1) * 0.5 > elapsed_ms:
            n -= 1
        return n

    def _advance_steps(self, n: int, s0: float, q: float) -> float:
        """Move the base ``n`` pure decode steps on; record tokens and inter-token latencies; returns the ms elapsed."""
        b = self.batch_size
        elapsed_ms = n * s0 + q * n * (n - 1) * 0.5
        if n <= 0 or b == 0:
            return elapsed_ms
        self.steps += n
        self.generation_tokens_total += b * n
        self.itl_sum_seconds += b * elapsed_ms / 1000.0
        # Step i lasts (s₀ + q·i) ms; count the steps per ITL bucket (usually all fall in one bucket).
        bounds = INTER_TOKEN_LATENCY_BUCKETS_SECONDS
        first = bisect.bisect_left(bounds, s0 / 1000.0)
        last = bisect.bisect_left(bounds, (s0 + q * (n - 1)) / 1000.0)
        hist = self.itl_hist
        if first == last:
            hist[first] += b * n
        else:
            counted = 0
            for k in range(first, last):
                # steps with (s₀ + q·i)/1000 ≤ bounds[k]: i ≤ (1000·bound − s₀)/q
                upto = min(n, int((1000.0 * bounds[k] - s0) // q) + 1)
                hist[k] += b * (upto - counted)
                counted = upto
            hist[last] += b * (n - counted)
        return elapsed_ms

    def settle(self, now_seconds: float) -> None:
        """Bring the base to the last step boundary at or before ``now`` inside the current decode segment (for a
        scrape or a join). Never crosses the segment's end: that boundary is the segment-end event's to apply."""
        if not self.running or self.segment_prefill or self.batch_size == 0:
            return
        s0, q = self._step_ms()
        n = self._steps_by((now_seconds - self.base_seconds) * 1000.0, s0, q)
        n = min(n, self.segment_end_step - self.steps - 1)
        if n > 0:
            self.base_seconds += self._advance_steps(n, s0, q) / 1000.0

    def cut_segment(self, now_seconds: float) -> float | None:
        """Make the current segment end at the next step boundary after ``now`` (a request joins there).
        Returns the new end time when the segment changed, else None."""
        self.settle(now_seconds)
        if self.segment_end_step <= self.steps + 1:
            return None
        s0, _ = self._step_ms()
        self.segment_end_step = self.steps + 1
        self.segment_end_seconds = self.base_seconds + s0 / 1000.0
        self.segment_version += 1
        return self.segment_end_seconds

    def end_segment(self, now_seconds: float) -> list[Request]:
        """Apply the segment that ends now: its steps, its prefill chunks; returns the requests whose prefill
        completed on this decoder (they join the batch now). Finished requests are popped by `pop_finished`."""
        prefilled: list[Request] = []
        if self.segment_prefill:
            tokens = 0
            for request, chunk in self.segment_prefill:
                request.prefilled_tokens += chunk
                tokens += chunk
            self.prompt_tokens_total += tokens
            self.prefilling_tokens -= tokens
            if self.batch_size:
                step_ms = (now_seconds - self.base_seconds) * 1000.0
                self._advance_steps(1, step_ms, 0.0)
            self.segment_prefill = []
            queue = self.prefilling
            while queue and queue[0].prefilled_tokens >= queue[0].input_tokens:
                prefilled.append(queue.popleft())
        elif self.batch_size:
            s0, q = self._step_ms()
            self._advance_steps(self.segment_end_step - self.steps, s0, q)
        self.base_seconds = now_seconds
        self.segment_end_seconds = math.nan
        return prefilled

    def pop_finished(self) -> list[Request]:
        """Requests that generated their last token by the base boundary; they leave the batch."""
        done: list[Request] = []
        heap = self.finishing
        while heap and heap[0][0] <= self.steps:
            _, _, request = heapq.heappop(heap)
            self.batch_size -= 1
            self.sum_input_tokens -= request.input_tokens
            self.sum_join_step -= request.join_step
            done.append(request)
        return done

    def join(self, request: Request) -> None:
        """Put a request whose first token is out into the batch at the base boundary; it decodes its other
        ``output − 1`` tokens in the following steps."""
        request.join_step = self.steps
        self.batch_size += 1
        self.sum_input_tokens += request.input_tokens
        self.sum_join_step += self.steps
        heapq.heappush(self.finishing, (self.steps + request.output_tokens - 1, request.index, request))

    def prefill_budget_tokens(self, *, step_budget_ms: float, cap_tokens: int) -> int:
        """Prefill tokens the next step may take: with decodes in the batch, the largest chunk keeping the mixed step
        within ``step_budget_ms`` (`tokenscale.core.conversion.chunk_budget_tokens`, at most ``cap_tokens``, at
        least `MIN_CHUNK_TOKENS`); without, a whole engine step."""
        if not self.batch_size:
            return self.perf.max_num_batched_tokens
        s0, _ = self._step_ms()
        budget = conversion.chunk_budget_tokens(perf=self.perf, room_ms=step_budget_ms - s0, cap_tokens=cap_tokens)
        return max(budget, conversion.MIN_CHUNK_TOKENS)

    def plan_segment(self, *, cap_tokens: int, step_budget_ms: float) -> float | None:
        """Schedule the next segment from the base boundary; returns its end time, or None when idle.

        With prefill work (converted), the segment is one mixed step. With decodes in the batch, its chunks (at most
        ``cap_tokens`` in all) keep the step within ``step_budget_ms``, each chunk priced with its attention over
        the prompt already prefilled; decode has priority, but the first chunk gets at least `MIN_CHUNK_TOKENS` so
        the prefill progresses. Without decodes it is a whole prefill step (engine budget, the prefill fixed cost).
        Otherwise it runs pure decode steps until the first request finishes.
        """
        self.segment_version += 1
        perf = self.perf
        if self.prefilling:
            s0, _ = self._step_ms()
            decoding = self.batch_size > 0
            budget = min(cap_tokens, perf.max_num_batched_tokens) if decoding else perf.max_num_batched_tokens
            room_ms = step_budget_ms - s0
            base_ms = s0 if decoding else perf.prefill_fixed_ms
            chunk_ms = 0.0
            plan = self.segment_prefill
            for request in self.prefilling:
                if budget <= 0:
                    break
                remaining = request.input_tokens - request.prefilled_tokens
                chunk = remaining if remaining <= budget else budget
                if decoding:
                    fits = conversion.chunk_budget_tokens(
                        perf=perf, room_ms=room_ms - chunk_ms, cap_tokens=chunk, prior_tokens=request.prefilled_tokens
                    )
                    chunk = fits if plan else max(fits, min(chunk, conversion.MIN_CHUNK_TOKENS))
                    if chunk <= 0:
                        break
                plan.append((request, chunk))
                chunk_ms += perf.prefill_chunk_ms(tokens=chunk, prior_tokens=request.prefilled_tokens)
                budget -= chunk
            self.segment_end_step = self.steps + (1 if decoding else 0)
            self.segment_end_seconds = self.base_seconds + (base_ms + chunk_ms) / 1000.0
            return self.segment_end_seconds
        if self.batch_size == 0:
            self.segment_end_seconds = math.nan
            return None
        s0, q = self._step_ms()
        n = self.finishing[0][0] - self.steps
        self.segment_end_step = self.steps + n
        self.segment_end_seconds = self.base_seconds + (n * s0 + q * n * (n - 1) * 0.5) / 1000.0
        return self.segment_end_seconds

    def take_prefill(self, request: Request) -> None:
        """Hold ``request`` (already admitted here) for prefill in the following mixed steps."""
        self.prefilling.append(request)
        self.prefilling_tokens += request.input_tokens

    @property
    def requests_running(self) -> int:
        """Admitted requests (transferring, joining, decoding) and those in the current prefill chunk."""
        return self.admitted - len(self.prefilling) + len(self.segment_prefill)

    @property
    def requests_waiting(self) -> int:
        return self.waiting_home + len(self.prefilling) - len(self.segment_prefill)
