"""The discrete-event model of a PD-disaggregated cluster: router, prefillers, KV transfer, decoders.

Path of a request (times in simulated seconds):

1. it arrives at the router, after a fixed disaggregation overhead (perfmodel.md §2: proxy, scheduling, transfer
   handshake), and joins the shared prefill queue (FIFO);
2. Ready prefillers pull from that queue at every step (`tokenscale.sim.instances.PrefillInstance`), as workers
   pull from Dynamo's prefill queue, so a prefiller that becomes Ready takes on a backlog at once; a converted
   decoder pulls as much as one restricted chunk per step allows;
3. prefilled, it joins the shared decode queue; the head is admitted by the Ready decoder with the least reserved
   KV among those where it fits; its KV is shipped in ``PerfModel.kv_transfer_ms(input)`` and its first token is
   out (TTFT);
4. it joins the decoder's batch at the next step boundary and finishes ``output − 1`` steps later.

A request prefilled on a converted decoder skips 3: it decodes where its KV already is.

Each waiting request is counted in the ``requests_waiting`` gauge of one *home* pod, chosen when it queues as
the Ready pod of its stage with the fewest such requests; so the pods' gauges add up to the queue, and a request
moves to another home only if its home stops taking work (drained, restored).

Instances cold-start for ``cold_start_seconds`` and drain on scale-in (no new work; they finish what they hold,
then leave). Cost is GPU-seconds provisioned: every instance costs ``gpus_per_instance`` from its creation (the
scale-out decision) to its removal, starting and draining time included.

The model has no clock of its own: `Cluster.advance_to` processes every event up to a time, so a simulated-time
loop and a real-time twin drive the same model.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenscale.core.profile import PerfModel
from tokenscale.core.types import Role
from tokenscale.sim.instances import DecodeInstance, InstanceState, PrefillInstance, Request

__all__ = ["Cluster", "ClusterConfig", "RequestOutcomes"]

# Event kinds; the heap holds (time, sequence, kind, instance or request, version).
_PREFILL_STEP_END = 0
_DECODE_SEGMENT_END = 1
_TRANSFER_END = 2
_READY = 3
_PREFILL_STEP_START = 4

DEFAULT_DISAGGREGATION_OVERHEAD_SECONDS = 0.045
"""perfmodel.md §2/§3.4: ≈45 ms fixed TTFT cost of the disaggregated path (proxy, scheduling, handshake)."""


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Knobs of the cluster model that are not properties of the model/GPU pair (those are in `PerfModel`)."""

    cold_start_seconds: float | None = None
    """Seconds from a scale-out decision to a Ready instance; None uses the profile's (perfmodel.md §6)."""
    disaggregation_overhead_seconds: float = DEFAULT_DISAGGREGATION_OVERHEAD_SECONDS
    """Fixed latency added before prefill (proxy, scheduling, KV handshake); counts in TTFT."""
    converted_chunk_tokens: int | None = None
    """Most prefill tokens a converted decoder adds to one decode step (TokenScale's restricted chunked prefill);
    None: as many as the TPOT headroom allows, up to the engine's token budget."""
    converted_step_tpot_fraction: float = 0.8
    """A converted decoder's mixed step stays within this fraction of the TPOT objective (algorithms.md §1.5, τ)."""
    converted_kv_reserve_ratio: float = 0.15
    """Share of a converted decoder's KV held for burst prefills: decode work from prefillers may fill only the
    rest while the decoder is converted (algorithms.md §1.5, f_res)."""
    tpot_slo_seconds: float = 0.1
    """The TPOT objective that restricted chunked prefill protects."""
    kv_bandwidth_ratio: float = 1.0
    """Share of the link bandwidth a KV transfer gets: 1 inside a network domain; below 1 when prefill and decode
    sit in different domains (HeteroScale reports ≈20% KV bandwidth lost to flat placement: 0.8)."""


@dataclass(frozen=True, eq=False)
class RequestOutcomes:
    """Per-request results, aligned with the trace: absolute first-token and finish times (``nan``: never)."""

    arrival_seconds: npt.NDArray[np.float64]
    input_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]
    first_token_seconds: npt.NDArray[np.float64]
    finish_seconds: npt.NDArray[np.float64]

    @property
    def ttft_seconds(self) -> npt.NDArray[np.float64]:
        return self.first_token_seconds - self.arrival_seconds

    @property
    def tpot_seconds(self) -> npt.NDArray[np.float64]:
        """Mean time per output token after the first; 0 for one-token requests (nothing to pace)."""
        steps = np.maximum(self.output_tokens - 1, 1).astype(np.float64)
        tpot = (self.finish_seconds - self.first_token_seconds) / steps
        return np.where(self.output_tokens > 1, tpot, np.where(np.isnan(self.finish_seconds), np.nan, 0.0))


class Cluster:
    """The PD cluster. Create it, `submit` requests, `start_instances`, then `advance_to` times in order."""

    def __init__(
        self,
        *,
        perf: PerfModel,
        config: ClusterConfig | None = None,
        now_seconds: float = 0.0,
        prefill_perf: PerfModel | None = None,
    ) -> None:
        """``perf`` is the decoders' model (and the prefillers' unless ``prefill_perf`` gives theirs: prefill and
        decode pools on different GPU types). A KV transfer runs at the slower end's link."""
        self.perf = perf
        self.prefill_perf = prefill_perf or perf
        self.config = config or ClusterConfig()
        self._kv_link_bytes_per_second = (
            min(perf.link_bytes_per_second, self.prefill_perf.link_bytes_per_second) * self.config.kv_bandwidth_ratio
        )
        self.now_seconds = now_seconds
        self.cold_start_seconds = (
            self.config.cold_start_seconds if self.config.cold_start_seconds is not None else perf.cold_start_seconds
        )
        self._heap: list[tuple[float, int, int, object, int]] = []
        self._sequence = 0
        self._arrivals: deque[Request] = deque()
        self._requests: list[Request] = []
        self.prefillers: list[PrefillInstance] = []
        self.decoders: list[DecodeInstance] = []
        self.removed: list[PrefillInstance | DecodeInstance] = []
        self.prefill_queue: deque[Request] = deque()  # shared, FIFO: Ready prefillers and converted decoders pull
        self.decode_queue: deque[Request] = deque()  # shared, FIFO: prefilled, waiting for KV on a decoder
        self._names = {Role.PREFILL: 0, Role.DECODE: 0}
        self._order = 0
        self._step_budget_ms = 1000.0 * self.config.converted_step_tpot_fraction * self.config.tpot_slo_seconds
        self._chunk_cap_tokens = (
            self.config.converted_chunk_tokens
            if self.config.converted_chunk_tokens is not None
            else perf.max_num_batched_tokens
        )
        self.completed = 0
        self.conversions = 0

    # -- input --------------------------------------------------------------------------------------------------

    def submit(self, *, arrival_seconds: float, input_tokens: int, output_tokens: int) -> int:
        """Queue a request arriving at ``arrival_seconds`` (not before earlier submissions); returns its index."""
        if self._arrivals and arrival_seconds < self._arrivals[-1].arrival_seconds:
            raise ValueError("requests must be submitted in arrival order")
        request = Request(
            len(self._requests), arrival_seconds, input_tokens, output_tokens, self.perf.kv_capacity_tokens
        )
        self._requests.append(request)
        self._arrivals.append(request)
        return request.index

    def submit_all(
        self, *, arrival_seconds: Sequence[float], input_tokens: Sequence[int], output_tokens: Sequence[int]
    ) -> None:
        for t, i, o in zip(arrival_seconds, input_tokens, output_tokens, strict=True):
            self.submit(arrival_seconds=float(t), input_tokens=int(i), output_tokens=int(o))

    # -- provisioning -------------------------------------------------------------------------------------------

    def _push(self, time: float, kind: int, subject: object, version: int = 0) -> None:
        self._sequence += 1
        heapq.heappush(self._heap, (time, self._sequence, kind, subject, version))

    def start_instances(
        self, role: Role, count: int, *, ready_now: bool = False
    ) -> list[PrefillInstance | DecodeInstance]:
        """Create ``count`` instances of ``role``; they become Ready after the cold start (or now)."""
        created: list[PrefillInstance | DecodeInstance] = []
        for _ in range(count):
            index = self._names[role]
            self._names[role] = index + 1
            self._order += 1
            name = f"{role.value}-{index}"
            instance: PrefillInstance | DecodeInstance
            if role == Role.PREFILL:
                instance = PrefillInstance(
                    name=name, order=self._order, perf=self.prefill_perf, created_seconds=self.now_seconds
                )
                self.prefillers.append(instance)
            else:
                instance = DecodeInstance(
                    name=name, order=self._order, perf=self.perf, created_seconds=self.now_seconds
                )
                self.decoders.append(instance)
            created.append(instance)
            if ready_now or self.cold_start_seconds <= 0:
                self._become_ready(instance)
            else:
                self._push(self.now_seconds + self.cold_start_seconds, _READY, instance)
        return created

    def instances(self, role: Role) -> Sequence[PrefillInstance | DecodeInstance]:
        return self.prefillers if role == Role.PREFILL else self.decoders

    # -- instances named from outside (the twin: one per pod of a live cluster) --------------------------------

    def add_instance(self, role: Role, name: str) -> PrefillInstance | DecodeInstance:
        """Create a starting instance of ``role`` called ``name`` (a pod's name); it costs from now and takes no
        work until `mark_ready`. Unlike `start_instances` it schedules no Ready event: the caller says when.

        Raises `ValueError` if an instance of that name is still in the cluster (starting, Ready or draining).
        """
        if self._instance(name) is not None:
            raise ValueError(f"an instance named {name!r} is already in the cluster")
        self._order += 1
        instance: PrefillInstance | DecodeInstance
        if role == Role.PREFILL:
            instance = PrefillInstance(
                name=name, order=self._order, perf=self.prefill_perf, created_seconds=self.now_seconds
            )
            self.prefillers.append(instance)
        else:
            instance = DecodeInstance(name=name, order=self._order, perf=self.perf, created_seconds=self.now_seconds)
            self.decoders.append(instance)
        return instance

    def mark_ready(self, name: str) -> bool:
        """Make the starting instance ``name`` Ready now; returns whether it was starting."""
        instance = self._instance(name)
        if instance is None or instance.state != InstanceState.STARTING:
            return False
        self._become_ready(instance)
        return True

    def remove_instance(self, name: str) -> bool:
        """Take ``name`` away as a scale-in does: a starting instance goes at once, a Ready one drains (restored
        first if converted; it finishes what it holds, then leaves). Returns whether it was starting or Ready."""
        instance = self._instance(name)
        if instance is None or instance.state not in (InstanceState.STARTING, InstanceState.READY):
            return False
        self._drain(instance)
        return True

    def set_replicas(self, role: Role, desired: int) -> None:
        """Scale ``role`` to ``desired`` active instances: start new ones, or drain the cheapest to lose
        (starting ones first, newest first; then Ready ones: withdrawn, unconverted and least loaded first)."""
        active = [i for i in self.instances(role) if i.state in (InstanceState.STARTING, InstanceState.READY)]
        if desired > len(active):
            self.start_instances(role, desired - len(active))
            return
        surplus = len(active) - desired
        if surplus <= 0:
            return
        starting = sorted((i for i in active if i.state == InstanceState.STARTING), key=lambda i: -i.order)
        ready = [i for i in active if i.state == InstanceState.READY]
        ready.sort(
            key=lambda i: (not i.withdrawn, isinstance(i, DecodeInstance) and i.converted, self._load(i), -i.order)
        )
        for instance in (starting + ready)[:surplus]:
            self._drain(instance)

    @staticmethod
    def _load(instance: PrefillInstance | DecodeInstance) -> float:
        if isinstance(instance, PrefillInstance):
            return float(len(instance.inflight))
        return float(instance.reserved_kv_tokens)

    def _drain(self, instance: PrefillInstance | DecodeInstance) -> None:
        if isinstance(instance, DecodeInstance) and instance.converted:
            self.restore(instance.name)
        if instance.state == InstanceState.STARTING:
            self._remove(instance)  # never served: nothing to drain; its pending ready event is ignored
            return
        instance.state = InstanceState.DRAINING
        self._rehome(instance)
        self._remove_if_drained(instance)

    def _remove_if_drained(self, instance: PrefillInstance | DecodeInstance) -> None:
        if instance.state == InstanceState.DRAINING and instance.idle:
            self._remove(instance)

    def _remove(self, instance: PrefillInstance | DecodeInstance) -> None:
        instance.state = InstanceState.REMOVED
        instance.removed_seconds = self.now_seconds
        if isinstance(instance, PrefillInstance):
            self.prefillers.remove(instance)
        else:
            self.decoders.remove(instance)
        self.removed.append(instance)

    def _become_ready(self, instance: PrefillInstance | DecodeInstance) -> None:
        if instance.state != InstanceState.STARTING:
            return
        instance.state = InstanceState.READY
        instance.ready_seconds = self.now_seconds
        if isinstance(instance, PrefillInstance):
            self._adopt_homeless(self.prefill_queue)
            self._wake_prefill()
        else:
            self._adopt_homeless(self.decode_queue)
            self._dispatch_decode()

    def _decoder(self, name: str) -> DecodeInstance | None:
        for decoder in self.decoders:
            if decoder.name == name:
                return decoder
        return None

    def convert(self, name: str) -> bool:
        """Let the Ready decoder ``name`` take prefill work; returns whether it was converted now."""
        decoder = self._decoder(name)
        if decoder is None or not decoder.serving or decoder.converted:
            return False
        decoder.converted = True
        decoder.converted_since_seconds = self.now_seconds
        self.conversions += 1
        self._adopt_homeless(self.prefill_queue)
        self._wake_prefill()
        return True

    def restore(self, name: str) -> bool:
        """Stop ``name`` pulling new prefill work; the prompts it holds still finish there."""
        decoder = self._decoder(name)
        if decoder is None or not decoder.converted:
            return False
        decoder.converted = False
        decoder.converted_since_seconds = math.nan
        self._rehome(decoder)
        self._dispatch_decode()  # its KV reserve is open to decode work again
        return True

    def withdraw(self, name: str) -> bool:
        """Take ``name`` out of routing (soft scale-in): it keeps running and costing, and finishes what it holds."""
        instance = self._instance(name)
        if instance is None or instance.state != InstanceState.READY or instance.withdrawn:
            return False
        if isinstance(instance, DecodeInstance) and instance.converted:
            self.restore(name)
        instance.withdrawn = True
        self._rehome(instance)
        return True

    def rejoin(self, name: str) -> bool:
        """Put a withdrawn ``name`` back into routing."""
        instance = self._instance(name)
        if instance is None or not instance.withdrawn:
            return False
        instance.withdrawn = False
        if instance.state == InstanceState.READY:
            self._adopt_homeless(self.prefill_queue if isinstance(instance, PrefillInstance) else self.decode_queue)
            self._wake_prefill()
            self._dispatch_decode()
        return True

    def _instance(self, name: str) -> PrefillInstance | DecodeInstance | None:
        for prefiller in self.prefillers:
            if prefiller.name == name:
                return prefiller
        return self._decoder(name)

    # -- homes of waiting requests (the requests_waiting gauges) ------------------------------------------------

    def _prefill_home(self) -> PrefillInstance | DecodeInstance | None:
        best: PrefillInstance | DecodeInstance | None = None
        for prefiller in self.prefillers:
            if prefiller.serving and (best is None or prefiller.waiting_home < best.waiting_home):
                best = prefiller
        for decoder in self.decoders:
            if decoder.converted and decoder.serving and (best is None or decoder.waiting_home < best.waiting_home):
                best = decoder
        return best

    def _decode_home(self) -> DecodeInstance | None:
        best: DecodeInstance | None = None
        for decoder in self.decoders:
            if decoder.serving and (
                best is None
                or (decoder.waiting_home, decoder.reserved_kv_tokens) < (best.waiting_home, best.reserved_kv_tokens)
            ):
                best = decoder
        return best

    def _set_home(self, request: Request, home: PrefillInstance | DecodeInstance | None) -> None:
        if request.home is not None:
            request.home.waiting_home -= 1
        request.home = home
        if home is not None:
            home.waiting_home += 1

    def _adopt_homeless(self, queue: deque[Request]) -> None:
        for request in queue:
            if request.home is None:
                home = self._prefill_home() if queue is self.prefill_queue else self._decode_home()
                self._set_home(request, home)

    def _rehome(self, instance: PrefillInstance | DecodeInstance) -> None:
        """Move the waiting requests counted by ``instance`` (which stops taking work) to other homes."""
        if not instance.waiting_home:
            return
        for queue in (self.prefill_queue, self.decode_queue):
            for request in queue:
                if request.home is instance:
                    home = self._prefill_home() if queue is self.prefill_queue else self._decode_home()
                    self._set_home(request, home)

    # -- prefill ------------------------------------------------------------------------------------------------

    def _enqueue_prefill(self, request: Request) -> None:
        self.prefill_queue.append(request)
        self._set_home(request, self._prefill_home())
        self._wake_prefill()

    def _wake_prefill(self) -> None:
        """Get the queue's head moving: start an idle Ready prefiller, else let converted decoders pull at their
        next step boundary."""
        if not self.prefill_queue:
            return
        for prefiller in self.prefillers:
            if prefiller.serving and not prefiller.busy:
                # Start by an event at this instant: arrivals at the same instant come first (the loop takes
                # arrivals before events at equal times), so they share the step.
                prefiller.start_pending = True
                self._push(self.now_seconds, _PREFILL_STEP_START, prefiller)
                return
        for decoder in self.decoders:
            if decoder.converted and decoder.serving and decoder.prefilling_tokens < self._pull_limit(decoder):
                if not decoder.running:
                    self._plan(decoder, self.now_seconds)
                else:
                    end = decoder.cut_segment(self.now_seconds)
                    if end is not None:
                        self._push(end, _DECODE_SEGMENT_END, decoder, decoder.segment_version)

    def _start_prefill_step(self, prefiller: PrefillInstance, now: float) -> None:
        waiting = self.prefill_queue if prefiller.serving else None
        end, pulled = prefiller.start_step(now, waiting=waiting)
        for request in pulled:
            self._set_home(request, None)
        if end is not None:
            self._push(end, _PREFILL_STEP_END, prefiller)
        else:
            self._remove_if_drained(prefiller)

    def _pull_limit(self, decoder: DecodeInstance) -> int:
        """Prompt tokens a converted decoder may hold for prefill: one step's budget at its current decode load."""
        return decoder.prefill_budget_tokens(step_budget_ms=self._step_budget_ms, cap_tokens=self._chunk_cap_tokens)

    def _pull_for_conversion(self, decoder: DecodeInstance) -> None:
        """A converted decoder takes prompts from the queue's head while it has less than one step's chunk to
        prefill and KV room for them (its whole cache: the burst reserve is for exactly this)."""
        queue = self.prefill_queue
        capacity = self.perf.kv_capacity_tokens
        limit = self._pull_limit(decoder)
        while queue and decoder.prefilling_tokens < limit and decoder.fits(queue[0], kv_capacity_tokens=capacity):
            request = queue.popleft()
            self._set_home(request, None)
            decoder.admit(request)
            decoder.take_prefill(request)

    def _on_prefill_step_end(self, prefiller: PrefillInstance, now: float) -> None:
        done = prefiller.finish_step()
        for request in done:
            prefiller.observe_ttft(now - request.arrival_seconds)
            prefiller.observe_finished(request, generation_tokens=0)
            self.decode_queue.append(request)
            self._set_home(request, self._decode_home())
        self._start_prefill_step(prefiller, now)
        if done:
            self._dispatch_decode()

    # -- decode -------------------------------------------------------------------------------------------------

    def _decode_capacity(self, decoder: DecodeInstance) -> float:
        """KV tokens decode work from prefillers may fill: less the burst reserve while converted."""
        capacity = float(self.perf.kv_capacity_tokens)
        return capacity * (1.0 - self.config.converted_kv_reserve_ratio) if decoder.converted else capacity

    def _dispatch_decode(self) -> None:
        """Admit from the head of the decode queue while some Ready decoder has room (least reserved KV first)."""
        queue = self.decode_queue
        while queue:
            head = queue[0]
            best: DecodeInstance | None = None
            for decoder in self.decoders:
                if (
                    decoder.serving
                    and (best is None or decoder.reserved_kv_tokens < best.reserved_kv_tokens)
                    and decoder.fits(head, kv_capacity_tokens=self._decode_capacity(decoder))
                ):
                    best = decoder
            if best is None:
                return
            queue.popleft()
            self._set_home(head, None)
            best.admit(head)
            transfer_seconds = self.kv_transfer_seconds(tokens=head.input_tokens)
            self._push(self.now_seconds + transfer_seconds, _TRANSFER_END, head)

    def kv_transfer_seconds(self, *, tokens: float) -> float:
        """Time to ship the KV cache of ``tokens`` prompt tokens to a decoder: the decoders' fixed cost plus the bytes
        over the slower end's link, times ``kv_bandwidth_ratio`` of its bandwidth (perfmodel.md §7)."""
        return (
            self.perf.kv_transfer_fixed_ms / 1000.0
            + tokens * self.perf.kv_bytes_per_token / self._kv_link_bytes_per_second
        )

    def _plan(self, decoder: DecodeInstance, now: float) -> None:
        if not decoder.running:
            decoder.base_seconds = now
        if decoder.converted and decoder.serving:
            self._pull_for_conversion(decoder)
        end = decoder.plan_segment(cap_tokens=self._chunk_cap_tokens, step_budget_ms=self._step_budget_ms)
        if end is not None:
            self._push(end, _DECODE_SEGMENT_END, decoder, decoder.segment_version)

    def _first_token(self, decoder: DecodeInstance, request: Request, now: float) -> None:
        """The first token is out: TTFT ends; the request joins the batch (or finishes if it has one token)."""
        request.first_token_seconds = now
        decoder.observe_ttft(now - request.arrival_seconds)
        decoder.generation_tokens_total += 1
        if request.output_tokens <= 1:
            self._finish(decoder, request, now)
            self._dispatch_decode()
            self._remove_if_drained(decoder)
            return
        if not decoder.running:
            decoder.base_seconds = now
            decoder.join(request)
            self._plan(decoder, now)
            return
        decoder.settle(now)
        if decoder.base_seconds == now and not decoder.segment_prefill:
            # A step starts this very instant (simultaneous arrivals): the request makes it into that step.
            decoder.join(request)
            self._plan(decoder, now)
            return
        decoder.pending.append(request)
        end = decoder.cut_segment(now)
        if end is not None:
            self._push(end, _DECODE_SEGMENT_END, decoder, decoder.segment_version)

    def _finish(self, decoder: DecodeInstance, request: Request, now: float) -> None:
        request.finish_seconds = now
        decoder.release(request)
        decoder.observe_finished(request, generation_tokens=request.output_tokens)
        self.completed += 1

    def _on_segment_end(self, decoder: DecodeInstance, now: float) -> None:
        for request in decoder.end_segment(now):
            request.first_token_seconds = now
            decoder.observe_ttft(now - request.arrival_seconds)
            decoder.generation_tokens_total += 1
            if request.output_tokens <= 1:
                self._finish(decoder, request, now)
            else:
                decoder.join(request)
        for request in decoder.pending:
            decoder.join(request)
        decoder.pending.clear()
        finished = decoder.pop_finished()
        for request in finished:
            self._finish(decoder, request, now)
        self._plan(decoder, now)
        if finished:
            self._dispatch_decode()
        self._remove_if_drained(decoder)

    # -- events -------------------------------------------------------------------------------------------------

    def advance_to(self, t_seconds: float) -> None:
        """Process every arrival and event up to ``t_seconds`` in time order, then stand at ``t_seconds``."""
        heap = self._heap
        arrivals = self._arrivals
        overhead = self.config.disaggregation_overhead_seconds
        pop = heapq.heappop
        while True:
            next_arrival = arrivals[0].arrival_seconds + overhead if arrivals else math.inf
            next_event = heap[0][0] if heap else math.inf
            if next_arrival <= next_event:
                if next_arrival > t_seconds:
                    break
                self.now_seconds = next_arrival
                self._enqueue_prefill(arrivals.popleft())
                continue
            if next_event > t_seconds:
                break
            now, _, kind, subject, version = pop(heap)
            self.now_seconds = now
            if kind == _DECODE_SEGMENT_END:
                decoder: DecodeInstance = subject  # type: ignore[assignment]
                if version == decoder.segment_version:
                    self._on_segment_end(decoder, now)
            elif kind == _TRANSFER_END:
                request: Request = subject  # type: ignore[assignment]
                assert request.decoder is not None
                self._first_token(request.decoder, request, now)
            elif kind == _PREFILL_STEP_END:
                self._on_prefill_step_end(subject, now)  # type: ignore[arg-type]
            elif kind == _PREFILL_STEP_START:
                self._start_prefill_step(subject, now)  # type: ignore[arg-type]
            else:
                self._become_ready(subject)  # type: ignore[arg-type]
        self.now_seconds = max(self.now_seconds, t_seconds)

    # -- results ------------------------------------------------------------------------------------------------

    @property
    def all_done(self) -> bool:
        return self.completed == len(self._requests)

    def outcomes(self) -> RequestOutcomes:
        requests = self._requests
        return RequestOutcomes(
            arrival_seconds=np.fromiter((r.arrival_seconds for r in requests), np.float64, len(requests)),
            input_tokens=np.fromiter((r.input_tokens for r in requests), np.int64, len(requests)),
            output_tokens=np.fromiter((r.output_tokens for r in requests), np.int64, len(requests)),
            first_token_seconds=np.fromiter((r.first_token_seconds for r in requests), np.float64, len(requests)),
            finish_seconds=np.fromiter((r.finish_seconds for r in requests), np.float64, len(requests)),
        )

    def gpu_seconds(self, *, until_seconds: float) -> float:
        """GPU-seconds provisioned in [0, until_seconds] by every instance ever created."""
        alive: Iterable[PrefillInstance | DecodeInstance] = [*self.prefillers, *self.decoders, *self.removed]
        return sum(i.gpu_seconds(until_seconds=until_seconds) for i in alive)

    def gpu_seconds_by_role(self, *, until_seconds: float) -> dict[Role, float]:
        """`gpu_seconds` of the prefill and of the decode instances (their GPUs may be priced differently)."""
        alive: Iterable[PrefillInstance | DecodeInstance] = [*self.prefillers, *self.decoders, *self.removed]
        found = {Role.PREFILL: 0.0, Role.DECODE: 0.0}
        for instance in alive:
            role = Role.PREFILL if isinstance(instance, PrefillInstance) else Role.DECODE
            found[role] += instance.gpu_seconds(until_seconds=until_seconds)
        return found
