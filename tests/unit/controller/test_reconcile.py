"""One tick against in-memory adapters: what the operator writes, reports and refuses, for each situation."""

from __future__ import annotations

import copy
import datetime
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from tests.unit.controller.fakes import EngineModel, EventList, FakeCluster, FakeScraper

from tokenscale.controller import reconcile, report, telemetry
from tokenscale.controller.service import ServiceMemory, parse_service
from tokenscale.core.types import PodView, Role, ServingRole
from tokenscale.kube import pods as kube_pods
from tokenscale.kube.pods import PodInfo
from tokenscale.kube.scale import ScaleRef

ROLE_KEY = "tokenscale.io/role"
T0 = 1_700_000_000.0
IDLE_PREFILL = EngineModel(prompt_tokens_per_second=100.0, requests_per_second=0.1)
IDLE_DECODE = EngineModel(generation_tokens_per_second=50.0, requests_per_second=0.1, requests_running=1)


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "prefill": {"scaleTargetRef": {"name": "p"}, "minReplicas": 1, "maxReplicas": 8},
        "decode": {"scaleTargetRef": {"name": "d"}, "minReplicas": 1, "maxReplicas": 8},
        "metrics": {"windowSeconds": 4},
        "behavior": {"scaleInStabilizationSeconds": 0},
        # The fake pods serve at once, and the demand quantile looks at the current demand only, so that a scale-in
        # shows within a test's few ticks.
        "profile": {"name": "llama-3.1-8b-h100", "coldStartSeconds": 0},
        "policy": {"tokenscale": {"demandWindowSeconds": 0}},
    }
    spec.update(overrides)
    return spec


def _pod(name: str, role_value: str, *, annotations: Mapping[str, str] | None = None, ready: bool = True) -> PodInfo:
    return PodInfo(
        name=name,
        pod_ip=f"127.1.0.{sum(map(ord, name)) % 250 + 1}",
        ready=ready,
        ready_since_seconds=T0 - 600,
        deleting=False,
        labels={"app": name.split("-", maxsplit=1)[0], ROLE_KEY: role_value},
        annotations=dict(annotations or {}),
    )


@dataclass
class Service:
    """One service with prefill target ``p`` and decode target ``d``, ticking on a fake clock."""

    spec: dict[str, Any]
    prefill: int = 1
    decode: int = 2
    decode_selector: str = "app=d"
    decode_annotations: dict[str, dict[str, str]] = field(default_factory=dict)
    decode_labels: dict[str, str] = field(default_factory=dict)
    cluster: FakeCluster = field(default_factory=FakeCluster)
    scraper: FakeScraper = field(default_factory=FakeScraper)
    events: EventList = field(default_factory=EventList)
    metrics: telemetry.OperatorMetrics = field(default_factory=lambda: telemetry.OperatorMetrics(CollectorRegistry()))
    memory: ServiceMemory = field(default_factory=ServiceMemory)
    now: float = T0
    may_write: bool = True

    def __post_init__(self) -> None:
        prefill_pods = [_pod(f"p-{i}", "prefill") for i in range(self.prefill)]
        decode_pods = [
            _pod(
                f"d-{i}", self.decode_labels.get(f"d-{i}", "decode"), annotations=self.decode_annotations.get(f"d-{i}")
            )
            for i in range(self.decode)
        ]
        self.cluster.add_target("p", replicas=self.prefill, selector="app=p", pods=prefill_pods)
        self.cluster.add_target("d", replicas=self.decode, selector=self.decode_selector, pods=decode_pods)
        for pod in prefill_pods:
            self.scraper.engines[pod.name] = copy.deepcopy(IDLE_PREFILL)
        for pod in decode_pods:
            self.scraper.engines[pod.name] = copy.deepcopy(IDLE_DECODE)

    def engines(self, prefix: str) -> list[EngineModel]:
        return [model for name, model in self.scraper.engines.items() if name.startswith(prefix)]

    @property
    def status(self) -> Mapping[str, Any]:
        return self.cluster.statuses[-1] if self.cluster.statuses else {}

    def condition(self, kind: str) -> tuple[str, str]:
        found = next(c for c in self.status["conditions"] if c["type"] == kind)
        return found["status"], found["reason"]

    async def tick(self, count: int = 1) -> None:
        config = parse_service(spec=self.spec, generation=1)
        ports = reconcile.TickPorts(
            cluster=self.cluster,
            scraper=self.scraper,
            events=self.events,
            metrics=self.metrics,
            may_write=lambda: self.may_write,
        )
        for _ in range(count):
            self.now += 1.0
            self.scraper.now_seconds = self.now
            await reconcile.run_tick(
                namespace="ns",
                name="svc",
                config=config,
                memory=self.memory,
                ports=ports,
                now_seconds=self.now,
                previous_status=self.status,
            )

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"namespace": "ns", "name": "svc", **labels})


def _burst(service: Service) -> None:
    for model in service.engines("p-"):
        model.prompt_tokens_per_second = 30_000.0
        model.requests_per_second = 30.0
        model.waiting_growth_per_second = 40.0


def _calm(service: Service) -> None:
    for model in service.engines("p-"):
        model.prompt_tokens_per_second = 100.0
        model.requests_per_second = 0.1
        model.waiting_growth_per_second = 0.0
        model.requests_waiting = 0.0


STATIC = {"name": "static", "static": {"prefillReplicas": 3, "decodeReplicas": 2}}


async def test_static_policy_scales_both_targets_and_reports_it() -> None:
    service = Service(_spec(policy=STATIC), prefill=1, decode=1)
    await service.tick(3)
    assert service.cluster.scale_writes() == [("p", 3), ("d", 2)]
    assert service.events.reasons().count("Scale") == 2
    assert service.status["prefill"]["desiredReplicas"] == 3
    assert service.status["decode"]["desiredReplicas"] == 2
    assert service.condition("ScalingActive") == ("True", "Actuating")
    assert service.metric("tokenscale_desired_replicas", role="prefill") == 3
    assert (
        service.metric(
            "tokenscale_decisions_total", policy="static", role="prefill", action="scale", reason="StaticCounts"
        )
        == 1
    )
    assert service.metric("tokenscale_reconcile_duration_seconds_count") == 3


async def test_dry_run_reports_but_never_writes() -> None:
    service = Service(_spec(policy=STATIC, dryRun=True), prefill=1, decode=1)
    await service.tick(3)
    assert service.cluster.scale_writes() == []
    assert service.cluster.pod_writes() == []
    assert service.condition("ScalingActive") == ("False", "DryRun")
    assert service.status["prefill"]["desiredReplicas"] == 3
    assert "DryRun" in service.events.reasons()


async def test_a_stopping_operator_writes_nothing() -> None:
    # Its daemon is stopping (deleted resource, exit, or a peer of higher priority took over) mid-tick.
    service = Service(_spec(policy=STATIC), prefill=1, decode=1, may_write=False)
    await service.tick(3)
    assert service.cluster.writes == []
    assert service.cluster.statuses == []


async def test_another_autoscaler_blocks_actuation() -> None:
    service = Service(_spec(policy=STATIC), prefill=1, decode=1)
    service.cluster.owners[ScaleRef("apps/v1", "Deployment", "d")] = ["HorizontalPodAutoscaler/d-hpa"]
    await service.tick(3)
    assert service.cluster.scale_writes() == []
    assert service.condition("ScalingConflict") == ("True", "OtherAutoscaler")
    assert service.condition("ScalingActive") == ("False", "ScalingConflict")
    assert "HorizontalPodAutoscaler/d-hpa" in next(m for _, r, m in service.events.events if r == "ScalingConflict")


@pytest.mark.parametrize(
    ("failing", "scaled_in"),
    [
        pytest.param("", True, id="healthy-scales-in"),
        pytest.param("p-", False, id="prefill-outage-holds"),
        pytest.param("d-", False, id="decode-outage-holds"),
        pytest.param("-", False, id="full-outage-holds"),
    ],
)
async def test_metrics_outage_never_scales_in(failing: str, scaled_in: bool) -> None:
    # Four prefillers busy enough to need all four; decode held at 4 by its bounds.
    service = Service(_spec(decode={"scaleTargetRef": {"name": "d"}, "minReplicas": 4}), prefill=4, decode=4)
    for model in service.engines("p-"):
        model.prompt_tokens_per_second, model.requests_per_second = 28_000.0, 28.0
    await service.tick(3)
    for name, model in service.scraper.engines.items():
        model.healthy = not (failing and failing in name)
    await service.tick(4)  # past the staleness limit: the last samples no longer count
    assert service.cluster.scale_writes() == []
    # The load falls, and (but for the healthy case) the operator cannot see it.
    _calm(service)
    await service.tick(6)
    writes = service.cluster.scale_writes()
    assert bool(writes) is scaled_in
    assert all(target == "p" and replicas < 4 for target, replicas in writes)
    if not scaled_in:
        assert service.condition("MetricsAvailable") == ("False", "MetricsUnavailable")
        assert service.events.reasons().count("Hold") == 1  # repeated holds are one Event within the window
        assert service.metric("tokenscale_metrics_available") == 0


DECODE_MIN_3 = {"scaleTargetRef": {"name": "d"}, "minReplicas": 3}


async def test_burst_converts_a_decoder_and_raises_prefill_in_one_tick() -> None:
    service = Service(_spec(decode=DECODE_MIN_3), prefill=1, decode=3)
    await service.tick(4)
    assert service.cluster.writes == []
    _burst(service)
    await service.tick(1)
    converts = [w for w in service.cluster.pod_writes() if w[1].get(ROLE_KEY) == "converted"]
    assert len(converts) >= 1
    name, _labels, annotations = converts[0]
    assert kube_pods.parse_time(annotations[kube_pods.CONVERTED_AT_ANNOTATION]) == pytest.approx(service.now)
    assert annotations[kube_pods.DELETION_COST_ANNOTATION] == str(reconcile.CONVERTED_DELETION_COST)
    assert next(replicas for target, replicas in service.cluster.scale_writes() if target == "p") > 1
    assert name in service.status["convertedPods"]
    assert "Convert" in service.events.reasons()


async def test_conversions_restore_and_prefill_scales_in_when_load_falls() -> None:
    service = Service(
        _spec(
            decode=DECODE_MIN_3,
            behavior={"scaleInStabilizationSeconds": 3},
            policy={"tokenscale": {"demandWindowSeconds": 0, "restoreStabilizationSeconds": 5}},
        ),
        prefill=1,
        decode=3,
    )
    await service.tick(4)
    _burst(service)
    await service.tick(1)
    converted = {w[0] for w in service.cluster.pod_writes() if w[1].get(ROLE_KEY) == "converted"}
    _calm(service)
    await service.tick(4)  # converted 4 s ago: within the 5 s restore stabilisation
    assert [w for w in service.cluster.pod_writes() if w[1].get(ROLE_KEY) == "decode"] == []
    await service.tick(8)
    restores = [w for w in service.cluster.pod_writes() if w[1].get(ROLE_KEY) == "decode"]
    assert {w[0] for w in restores} == converted
    assert all(w[2][kube_pods.CONVERTED_AT_ANNOTATION] is None for w in restores)
    assert service.cluster.scales["p"].spec_replicas == 1
    assert service.status["convertedPods"] == []


async def test_role_label_in_selector_refuses_conversion_but_still_scales() -> None:
    service = Service(_spec(decode=DECODE_MIN_3), prefill=1, decode=3, decode_selector=f"app=d,{ROLE_KEY}=decode")
    await service.tick(4)
    _burst(service)
    await service.tick(1)
    assert service.cluster.pod_writes() == []
    assert service.condition("ScalingLimited") == ("True", "RoleLabelInSelector")
    assert "RoleLabelInSelector" in service.events.reasons()
    assert any(target == "p" for target, _ in service.cluster.scale_writes())


async def test_restarted_operator_restores_conversions_older_than_the_maximum() -> None:
    old = kube_pods.format_time(T0 - 10)
    recent = kube_pods.format_time(T0)
    service = Service(
        _spec(policy={"tokenscale": {"maxConversionSeconds": 5, "demandWindowSeconds": 0}}),
        prefill=1,
        decode=3,
        decode_labels={"d-0": "converted", "d-1": "converted"},
        decode_annotations={
            "d-0": {kube_pods.CONVERTED_AT_ANNOTATION: old},
            "d-1": {kube_pods.CONVERTED_AT_ANNOTATION: recent},
        },
    )
    await service.tick(1)  # fresh memory, first tick: load still unknown, but the time rule needs none
    restored = [w[0] for w in service.cluster.pod_writes() if w[1].get(ROLE_KEY) == "decode"]
    assert restored == ["d-0"]
    assert service.status["convertedPods"] == ["d-1"]


async def test_missing_target_is_a_condition_not_a_crash() -> None:
    service = Service(_spec(decode={"scaleTargetRef": {"name": "gone"}}), prefill=1, decode=1)
    await service.tick(2)
    assert service.condition("Ready") == ("False", "TargetNotFound")
    assert service.cluster.writes == []
    assert service.events.reasons() == ["TargetNotFound"]


async def test_failed_scale_write_is_reported_and_retried_next_tick() -> None:
    service = Service(_spec(policy=STATIC), prefill=1, decode=2)
    await service.tick(1)  # the first tick has one sample per pod: load unknown, hold
    service.cluster.fail_scale_writes = 1
    await service.tick(1)
    assert service.condition("ScalingActive") == ("False", "ActuationFailed")
    assert service.metric("tokenscale_actuation_errors_total", operation="scale", reason="ScaleFailed") == 1
    await service.tick(1)
    assert service.cluster.scale_writes() == [("p", 3)]
    assert service.condition("ScalingActive") == ("True", "Actuating")


async def test_scale_in_marks_the_least_loaded_victims_before_writing_scale() -> None:
    service = Service(_spec(), prefill=3, decode=1)
    for index, model in enumerate(service.engines("p-")):
        model.requests_running = 10 - index  # p-2 is the least loaded, then p-1
    await service.tick(4)
    kinds = [(kind, value[0]) for kind, value in service.cluster.writes]
    first_scale = kinds.index(("scale", "p"))
    marked = [
        w[0]
        for w in service.cluster.pod_writes()
        if w[2].get(kube_pods.DELETION_COST_ANNOTATION) == str(reconcile.VICTIM_DELETION_COST)
    ]
    assert marked == ["p-1", "p-2"]
    assert all(kinds.index(("pod", name)) < first_scale for name in marked)
    assert service.cluster.scales["p"].spec_replicas == 1


def _view(name: str, *, ready: bool = True, running: float = 0.0, converted: bool = False) -> PodView:
    return PodView(
        name=name,
        role=Role.DECODE,
        serving_role=ServingRole.CONVERTED if converted else ServingRole.DECODE,
        ready=ready,
        load_known=True,
        requests_running=running,
    )


NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(
    ("pods", "count", "keep", "withdrawn", "victims"),
    [
        pytest.param([_view("a", running=5), _view("b", running=1)], 1, NONE, NONE, ["b"], id="least-loaded-first"),
        pytest.param(
            [_view("a", running=5), _view("b", running=1)], 1, NONE, frozenset({"a"}), ["a"], id="withdrawn-first"
        ),
        pytest.param(
            [_view("a", running=5), _view("b", running=1, converted=True)], 1, NONE, NONE, ["a"], id="never-converted"
        ),
        pytest.param(
            [_view("a", running=0), _view("b", running=9, ready=False)], 1, NONE, NONE, ["b"], id="not-ready-first"
        ),
        pytest.param([_view("a"), _view("b", running=1)], 1, frozenset({"a"}), NONE, ["b"], id="kept-pods-excluded"),
        pytest.param([_view("a"), _view("b")], 5, NONE, NONE, ["a", "b"], id="no-more-than-exist"),
        pytest.param([_view("a")], 0, NONE, NONE, [], id="none-asked"),
    ],
)
def test_scale_in_victims(
    pods: list[PodView], count: int, keep: frozenset[str], withdrawn: frozenset[str], victims: list[str]
) -> None:
    assert reconcile.scale_in_victims(pods=pods, count=count, keep=keep, withdrawn=withdrawn) == victims


async def test_condition_keeps_its_transition_time_until_its_status_changes() -> None:
    service = Service(_spec(policy=STATIC), prefill=1, decode=1)
    await service.tick(1)  # one sample per pod: load unknown

    def transition(kind: str) -> str:
        return str(next(c for c in service.status["conditions"] if c["type"] == kind)["lastTransitionTime"])

    unknown_since = transition("MetricsAvailable")
    assert service.condition("MetricsAvailable") == ("False", "MetricsUnavailable")
    await service.tick(2)
    assert service.condition("MetricsAvailable") == ("True", "MetricsAvailable")
    known_since = transition("MetricsAvailable")
    assert known_since != unknown_since
    ready_since = transition("Ready")
    await service.tick(2)
    assert (transition("MetricsAvailable"), transition("Ready")) == (known_since, ready_since)


async def test_decision_history_records_a_repeated_hold_once() -> None:
    service = Service(_spec(), prefill=1, decode=1)
    for model in service.scraper.engines.values():
        model.healthy = False
    await service.tick(5)  # five identical holds: one entry
    holds = [d for d in service.status["lastDecisions"] if d["action"] == "hold"]
    assert len(holds) == 1
    assert holds[0]["reason"] == "InputUnknown"


async def test_decision_times_keep_milliseconds_and_condition_times_whole_seconds() -> None:
    service = Service(_spec(), prefill=1, decode=1)
    service.now += 0.25  # ticks land a quarter second past the second
    for model in service.scraper.engines.values():
        model.healthy = False
    await service.tick(1)
    decided = service.status["lastDecisions"][-1]["time"]
    transition = service.status["conditions"][0]["lastTransitionTime"]
    assert decided.endswith(".250Z"), decided
    assert datetime.datetime.fromisoformat(decided.replace("Z", "+00:00")).timestamp() == service.now
    assert transition.endswith(":21Z"), transition  # metav1.Time: whole seconds


# -- when the status is written ------------------------------------------------------------------------------

_CONDITION = {"type": "Ready", "status": "True", "reason": "Reconciling", "message": "both scale targets resolve"}
_WRITTEN: dict[str, Any] = {
    "observedGeneration": 1,
    "conditions": [_CONDITION],
    "prefill": {"replicas": 1, "readyReplicas": 1, "desiredReplicas": 1},
    "convertedPods": [],
    "velocities": {"arrivingPromptTokensPerSecond": 100.0},
    "lastDecisions": [],
}


def _changed(**fields: Any) -> dict[str, Any]:
    return {**_WRITTEN, **fields}


@pytest.mark.parametrize(
    ("status", "since_write_seconds", "due"),
    [
        pytest.param(_WRITTEN, 60.0, False, id="unchanged-never"),
        pytest.param(_changed(velocities={"arrivingPromptTokensPerSecond": 90.0}), 9.0, False, id="live-only-9s"),
        pytest.param(_changed(velocities={"arrivingPromptTokensPerSecond": 90.0}), 10.0, True, id="live-only-10s"),
        pytest.param(
            _changed(conditions=[{**_CONDITION, "message": "90 tok/s"}]), 9.0, False, id="condition-message-9s"
        ),
        pytest.param(
            _changed(conditions=[{**_CONDITION, "status": "False", "reason": "ApiError"}]),
            0.0,
            True,
            id="condition-status-at-once",
        ),
        pytest.param(
            _changed(prefill={"replicas": 1, "readyReplicas": 1, "desiredReplicas": 3}),
            0.0,
            True,
            id="desired-replicas-at-once",
        ),
        pytest.param(
            _changed(prefill={"replicas": 1, "readyReplicas": 0, "desiredReplicas": 1}),
            0.0,
            True,
            id="ready-replicas-at-once",
        ),
        pytest.param(_changed(convertedPods=["d-0"]), 0.0, True, id="converted-pod-at-once"),
        pytest.param(
            _changed(lastDecisions=[{"time": "t", "action": "scale", "prefillReplicas": 3, "decodeReplicas": 1}]),
            0.0,
            True,
            id="new-decision-at-once",
        ),
        pytest.param(_changed(observedGeneration=2), 0.0, True, id="new-generation-at-once"),
    ],
)
def test_status_is_written_at_once_for_what_readers_act_on_and_live_numbers_every_refresh(
    status: dict[str, Any], since_write_seconds: float, due: bool
) -> None:
    assert (
        report.status_write_due(
            status_=status,
            previous_status=_WRITTEN,
            written_seconds=T0,
            now_seconds=T0 + since_write_seconds,
            refresh_seconds=10.0,
        )
        is due
    )


def test_a_restarted_operator_writes_live_numbers_at_once() -> None:
    # Nothing written by this process yet: the status on the resource may be from long ago.
    moved = _changed(velocities={"arrivingPromptTokensPerSecond": 90.0})
    assert report.status_write_due(
        status_=moved, previous_status=_WRITTEN, written_seconds=None, now_seconds=T0, refresh_seconds=10.0
    )


async def test_steady_load_refreshes_live_numbers_every_ten_seconds_and_a_burst_is_written_in_its_tick() -> None:
    service = Service(_spec(decode=DECODE_MIN_3), prefill=1, decode=3)
    written_at: list[float] = []
    for i in range(30):
        for model in service.engines("p-"):
            model.prompt_tokens_per_second = 100.0 + 10.0 * i  # the arrival rate moves every tick, nothing else
        before = len(service.cluster.statuses)
        await service.tick(1)
        if len(service.cluster.statuses) > before:
            written_at.append(service.now)
    # Written on the first tick, then when MetricsAvailable turns True (the second sample); from then on only the
    # live numbers move: a write every 10 s, not every tick.
    gaps = [later - earlier for earlier, later in itertools.pairwise(written_at[1:])]
    assert len(gaps) >= 2, written_at
    assert gaps == [10.0] * len(gaps), written_at
    assert service.status["velocities"]["arrivingPromptTokensPerSecond"] > 0

    _burst(service)
    writes = len(service.cluster.statuses)
    await service.tick(1)
    assert len(service.cluster.statuses) == writes + 1
    assert service.status["convertedPods"]
    assert service.status["lastDecisions"][-1]["action"] in {"scale", "convert"}


# -- tokenscale_scaling_blocked ------------------------------------------------------------------------------


def _with_hpa(service: Service) -> None:
    service.cluster.owners[ScaleRef("apps/v1", "Deployment", "p")] = ["HorizontalPodAutoscaler/p-hpa"]


def _failing_scale_writes(service: Service) -> None:
    service.cluster.fail_scale_writes = 100


@pytest.mark.parametrize(
    ("spec", "setup", "blocked"),
    [
        pytest.param(_spec(policy=STATIC), _with_hpa, {"ScalingConflict"}, id="hpa-and-a-change-wanted"),
        pytest.param(
            _spec(policy={"name": "static", "static": {"prefillReplicas": 1, "decodeReplicas": 1}}),
            _with_hpa,
            set(),
            id="hpa-but-nothing-to-change",
        ),
        pytest.param(_spec(policy=STATIC, dryRun=True), _with_hpa, set(), id="dry-run-is-not-blocked"),
        pytest.param(_spec(policy=STATIC), _failing_scale_writes, {"ActuationFailed"}, id="writes-fail"),
        pytest.param(_spec(policy=STATIC), lambda _: None, set(), id="actuated"),
    ],
)
async def test_scaling_blocked_says_why_a_wanted_change_was_not_made(
    spec: dict[str, Any], setup: Callable[[Service], None], blocked: set[str]
) -> None:
    service = Service(spec, prefill=1, decode=1)
    setup(service)
    await service.tick(3)
    assert {
        reason for reason in telemetry.BLOCKED_REASONS if service.metric("tokenscale_scaling_blocked", reason=reason)
    } == blocked
    # Every reason has its series (0 when not blocked), so an alert on it has data.
    assert all(service.metric("tokenscale_scaling_blocked", reason=r) is not None for r in telemetry.BLOCKED_REASONS)


async def test_refused_conversion_is_blocked_and_clears_when_the_load_falls() -> None:
    service = Service(_spec(decode=DECODE_MIN_3), prefill=1, decode=3, decode_selector=f"app=d,{ROLE_KEY}=decode")
    await service.tick(4)
    assert service.metric("tokenscale_scaling_blocked", reason="RoleLabelInSelector") == 0
    _burst(service)
    await service.tick(1)
    assert service.metric("tokenscale_scaling_blocked", reason="RoleLabelInSelector") == 1
    _calm(service)
    await service.tick(8)
    assert service.metric("tokenscale_scaling_blocked", reason="RoleLabelInSelector") == 0


async def test_an_unreadable_target_blocks_nothing() -> None:
    service = Service(_spec(policy=STATIC), prefill=1, decode=1)
    service.cluster.fail_scale_writes = 100
    await service.tick(2)
    assert service.metric("tokenscale_scaling_blocked", reason="ActuationFailed") == 1
    del service.cluster.scales["d"]
    await service.tick(1)
    assert service.condition("Ready") == ("False", "TargetNotFound")
    assert service.metric("tokenscale_scaling_blocked", reason="ActuationFailed") == 0
