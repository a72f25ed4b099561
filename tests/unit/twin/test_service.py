"""A service's twin follows the pods of its targets: instances, readiness, role labels, withdrawal, removal and
listeners; the twin process binds and drops services as they come and go."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

from tokenscale.api import profiles, v1alpha1
from tokenscale.core.types import EngineSample
from tokenscale.kube import pods as kube_pods
from tokenscale.kube.scale import ScaleRef
from tokenscale.sim.instances import InstanceState
from tokenscale.sim.traces import Trace
from tokenscale.twin.runner import Twin
from tokenscale.twin.service import ServiceTwin

PROFILE = profiles.load_profile("llama-3.1-8b-h100")
ROLE_KEY = "tokenscale.io/role"
SPEC: dict[str, Any] = {
    "prefill": {"scaleTargetRef": {"name": "p"}},
    "decode": {"scaleTargetRef": {"name": "d"}},
    "metrics": {"port": 9400},
}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class FakeListener:
    address: str
    port: int
    sample_of: Callable[[], EngineSample | None]
    closed: bool = False

    def close(self) -> None:
        self.closed = True


class Listeners:
    """Records listeners; addresses in ``busy`` refuse once (a recycled IP still closing)."""

    def __init__(self) -> None:
        self.started: list[FakeListener] = []
        self.busy: set[str] = set()

    def __call__(
        self, *, address: str, port: int, sample_of: Callable[[], EngineSample | None], model_name: str
    ) -> FakeListener:
        del model_name
        if address in self.busy:
            self.busy.discard(address)
            raise OSError("address in use")
        listener = FakeListener(address, port, sample_of)
        self.started.append(listener)
        return listener

    def open(self) -> dict[str, FakeListener]:
        return {listener.address: listener for listener in self.started if not listener.closed}


def pod(
    name: str,
    ip: str | None = None,
    *,
    ready: bool = False,
    role: str | None = None,
    deleting: bool = False,
    annotations: Mapping[str, str] | None = None,
) -> kube_pods.PodInfo:
    return kube_pods.PodInfo(
        name=name,
        pod_ip=ip,
        ready=ready,
        ready_since_seconds=None,
        deleting=deleting,
        labels={ROLE_KEY: role} if role else {},
        annotations=dict(annotations or {}),
    )


def load(*, count: int = 10, every_seconds: float = 0.1, input_tokens: int = 1000) -> Trace:
    return Trace(
        "test",
        np.arange(count) * every_seconds,
        np.full(count, input_tokens, dtype=np.int64),
        np.full(count, 20, dtype=np.int64),
        count * every_seconds,
    )


class Harness:
    def __init__(self, *, speedup: float = 1.0, warm_up_seconds: float = 0.0, trace: Trace | None = None) -> None:
        self.clock = Clock()
        self.listeners = Listeners()
        self.spec = v1alpha1.parse_spec(SPEC)
        self.twin = ServiceTwin(
            namespace="ns",
            name="svc",
            spec=self.spec,
            profile=PROFILE,
            load=trace or load(),
            speedup=speedup,
            clock=self.clock,
            warm_up_seconds=warm_up_seconds,
            listen=self.listeners,
        )

    def sync(self, prefill: list[kube_pods.PodInfo], decode: list[kube_pods.PodInfo], *, at: float) -> None:
        self.clock.now = at
        self.twin.sync(spec=self.spec, prefill_pods=prefill, decode_pods=decode)

    def state(self, name: str) -> str:
        for instance in (*self.twin.cluster.prefillers, *self.twin.cluster.decoders, *self.twin.cluster.removed):
            if instance.name == name:
                return instance.state
        return "absent"

    def kinds(self) -> list[tuple[str, str]]:
        return [(event.pod, event.kind) for event in self.twin.events]


def test_pods_are_instances_that_take_work_once_ready_and_the_load_starts_with_both_roles() -> None:
    h = Harness()
    h.sync([pod("p1", "127.1.0.1")], [pod("d1", "127.1.0.2")], at=100.0)
    assert (h.state("p1"), h.state("d1")) == (InstanceState.STARTING, InstanceState.STARTING)
    assert set(h.listeners.open()) == {"127.1.0.1", "127.1.0.2"}
    assert not h.twin.snapshot().load_started
    h.sync([pod("p1", "127.1.0.1", ready=True)], [pod("d1", "127.1.0.2")], at=101.0)
    assert h.state("p1") == InstanceState.READY
    assert not h.twin.snapshot().load_started  # no Ready decoder yet
    h.sync([pod("p1", "127.1.0.1", ready=True)], [pod("d1", "127.1.0.2", ready=True)], at=102.0)
    snapshot = h.twin.snapshot()
    assert snapshot.load_started
    assert h.kinds() == [("p1", "added"), ("d1", "added"), ("p1", "ready"), ("d1", "ready")]


def test_the_load_arrives_speedup_times_faster_and_its_rate_reads_in_simulated_units() -> None:
    # 10 requests of 1000 prompt tokens over 1 simulated second; at 4x they arrive within 0.25 wall seconds.
    h = Harness(speedup=4.0)
    ready = ([pod("p1", "127.1.0.1", ready=True)], [pod("d1", "127.1.0.2", ready=True)])
    h.sync(*ready, at=100.0)
    h.clock.now = 100.25
    snapshot = h.twin.snapshot()
    assert snapshot.requests_arrived == 10
    assert snapshot.simulated_seconds == pytest.approx(1.0)
    assert snapshot.arriving_prompt_tokens_per_second == pytest.approx(10 * 1000 / 10.0)  # over a 10 s window


def test_a_new_pod_serves_only_after_ready_and_the_warm_up() -> None:
    h = Harness(warm_up_seconds=5.0)
    h.sync([pod("p1", "127.1.0.1", ready=True)], [], at=100.0)
    h.sync([pod("p1", "127.1.0.1", ready=True)], [], at=104.9)
    assert h.state("p1") == InstanceState.STARTING
    h.sync([pod("p1", "127.1.0.1", ready=True)], [], at=105.0)
    assert h.state("p1") == InstanceState.READY


def test_role_label_flips_convert_and_restore_a_decoder() -> None:
    h = Harness()
    decode = pod("d1", "127.1.0.2", ready=True, role="decode")
    prefill = [pod("p1", "127.1.0.1", ready=True)]
    h.sync(prefill, [decode], at=100.0)
    h.sync(prefill, [dataclasses.replace(decode, labels={ROLE_KEY: "converted"})], at=101.0)
    assert h.twin.cluster.decoders[0].converted
    assert h.twin.snapshot().converted == 1
    h.sync(prefill, [decode], at=102.0)
    assert not h.twin.cluster.decoders[0].converted
    assert [kind for name, kind in h.kinds() if name == "d1"] == ["added", "ready", "converted", "restored"]


def test_a_withdrawn_pod_leaves_routing_until_the_annotation_goes() -> None:
    h = Harness()
    marked = pod("p2", "127.1.0.3", ready=True, annotations={kube_pods.WITHDRAWN_AT_ANNOTATION: "2026-01-01T00:00:00Z"})
    h.sync([pod("p1", "127.1.0.1", ready=True), marked], [], at=100.0)
    assert h.twin.cluster.prefillers[1].withdrawn
    h.sync([pod("p1", "127.1.0.1", ready=True), dataclasses.replace(marked, annotations={})], [], at=101.0)
    assert not h.twin.cluster.prefillers[1].withdrawn
    assert [kind for name, kind in h.kinds() if name == "p2"] == ["added", "ready", "withdrawn", "rejoined"]


@pytest.mark.parametrize(
    "leave",
    [
        pytest.param(lambda p: [dataclasses.replace(p, deleting=True)], id="terminating"),
        pytest.param(lambda p: [], id="gone"),
    ],
)
def test_a_pod_that_goes_drains_and_its_listener_closes(leave: Callable[[kube_pods.PodInfo], list[Any]]) -> None:
    h = Harness()
    prefill = pod("p1", "127.1.0.1", ready=True)
    h.sync([prefill], [pod("d1", "127.1.0.2", ready=True)], at=100.0)
    served = h.listeners.open()["127.1.0.1"]
    h.sync(leave(prefill), [pod("d1", "127.1.0.2", ready=True)], at=100.05)  # mid-load: work in flight
    assert served.closed
    assert h.state("p1") in (InstanceState.DRAINING, InstanceState.REMOVED)
    assert served.sample_of() is None  # a scrape racing the close finds no pod
    assert h.kinds()[-1] == ("p1", "removed")


def test_a_busy_address_is_retried_and_a_new_ip_gets_a_new_listener() -> None:
    h = Harness()
    h.listeners.busy.add("127.1.0.1")
    h.sync([pod("p1", "127.1.0.1")], [], at=100.0)
    assert h.listeners.open() == {}
    h.sync([pod("p1", "127.1.0.1")], [], at=100.2)
    first = h.listeners.open()["127.1.0.1"]
    h.sync([pod("p1", "127.1.0.9")], [], at=100.4)
    assert first.closed
    assert set(h.listeners.open()) == {"127.1.0.9"}


def test_a_scrape_advances_the_model_to_its_own_instant() -> None:
    h = Harness()
    h.sync([pod("p1", "127.1.0.1", ready=True)], [pod("d1", "127.1.0.2", ready=True)], at=100.0)
    listener = h.listeners.open()["127.1.0.1"]
    h.clock.now = 103.0  # no poll in between: the scrape itself must move the model on
    sample = listener.sample_of()
    assert sample is not None
    assert sample.prompt_tokens_total == 10 * 1000
    assert h.twin.cluster.now_seconds == 103.0


class Source:
    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[kube_pods.PodInfo]] = {}

    def list_services(self, *, namespace: str) -> list[dict[str, Any]]:
        del namespace
        return [{"metadata": {"name": name}, "spec": spec} for name, spec in self.services.items()]

    def target_pods(self, *, namespace: str, ref: ScaleRef) -> list[kube_pods.PodInfo]:
        del namespace
        return self.pods.get(ref.name, [])


def make_twin(source: Source, listeners: Listeners) -> Twin:
    return Twin(source=source, namespaces=["ns"], load=load(), clock=Clock(), listen=listeners)


def test_the_twin_binds_services_as_they_come_and_closes_them_as_they_go() -> None:
    source, listeners = Source(), Listeners()
    source.services["a"] = SPEC
    source.pods = {"p": [pod("p1", "127.1.0.1", ready=True)], "d": [pod("d1", "127.1.0.2", ready=True)]}
    twin = make_twin(source, listeners)
    twin.poll_once()
    assert [(s.name, s.prefill.ready, s.decode.ready) for s in twin.snapshots()] == [("a", 1, 1)]
    del source.services["a"]
    twin.poll_once()
    assert twin.snapshots() == []
    assert listeners.open() == {}


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        pytest.param({**SPEC, "engine": "sglang"}, "the twin serves vLLM metrics only", id="not-vllm"),
        pytest.param({**SPEC, "profile": {"name": "no-such-profile"}}, "profile", id="unknown-profile"),
        pytest.param({"prefill": {}}, "invalid spec", id="invalid-spec"),
        pytest.param(
            {**SPEC, "decode": {"variants": [{"name": "a100", "scaleTargetRef": {"name": "d"}}]}},
            "one GPU type per role",
            id="variants",
        ),
    ],
)
def test_services_the_twin_cannot_serve_are_skipped_with_one_warning(
    spec: dict[str, Any], why: str, caplog: pytest.LogCaptureFixture
) -> None:
    source, listeners = Source(), Listeners()
    source.services["b"] = spec
    twin = make_twin(source, listeners)
    with caplog.at_level(logging.WARNING, logger="tokenscale.twin.runner"):
        twin.poll_once()
        twin.poll_once()
    assert twin.snapshots() == []
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert why in warnings[0]
