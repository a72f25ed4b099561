"""Reporting one tick: the status subresource, Kubernetes Events and the operator's metrics.

Conditions (each with its reasons):

- ``Ready``: the spec is valid and both scale targets resolve (False: InvalidSpec, TargetNotFound,
  TargetNotScalable, NoSelector, ApiError);
- ``MetricsAvailable``: the tick had every load input its policy needs (False: MetricsUnavailable, with the
  unknown inputs in the message; the policy then holds and never scales in);
- ``ScalingActive``: the operator actuates its decisions (False: DryRun, ScalingConflict, MetricsUnavailable,
  ActuationFailed, or the Ready reason);
- ``ScalingLimited``: the decision differs from the policy's recommendation because of bounds, step limits
  or stabilisation (DesiredReplicasLimited), or conversions were refused (RoleLabelInSelector);
- ``ScalingConflict``: another autoscaler (HPA, KEDA) targets a workload (OtherAutoscaler): no actuation.

Events: one per scale, convert and restore done; one per hold and per would-be action under dryRun or a
conflict, where an identical one is not repeated within ``event_repeat_seconds``.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from tokenscale.api import v1alpha1
from tokenscale.controller import telemetry
from tokenscale.core.types import Action as DecisionAction
from tokenscale.core.types import Decision, Observation, Role, ServingRole
from tokenscale.kube.scale import Scale

if TYPE_CHECKING:
    from tokenscale.controller.pools import PoolReport
    from tokenscale.controller.reconcile import TickPorts
    from tokenscale.controller.service import ServiceConfig, ServiceMemory

__all__ = ["LIVE_STATUS_FIELDS", "Action", "Failure", "StatusBuilder", "invalid_spec_status", "status_write_due"]

logger = logging.getLogger(__name__)

READY = "Ready"
METRICS_AVAILABLE = "MetricsAvailable"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"
SCALING_CONFLICT = "ScalingConflict"
_CONDITION_TYPES = (READY, METRICS_AVAILABLE, SCALING_ACTIVE, SCALING_LIMITED, SCALING_CONFLICT)
_MAX_MESSAGE = 1000


@dataclass(frozen=True, slots=True)
class Action:
    """A write the tick made: a /scale change or one pod's conversion or restore."""

    kind: Literal["scale", "convert", "restore", "withdraw", "rejoin"]
    role: Role
    pod: str | None = None
    from_replicas: int | None = None
    to_replicas: int | None = None
    target: str | None = None
    """What was scaled when a role has several workloads (a pool, a deployment group); None: the role's one."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A write that failed: a CamelCase code, what it wrote to, and the error."""

    code: str
    target: str
    message: str


def _rfc3339(unix_seconds: float, *, timespec: str = "seconds") -> str:
    """``unix_seconds`` as RFC 3339 in UTC, to whole seconds (Kubernetes' ``metav1.Time``, for conditions) or
    finer (``timespec="milliseconds"``, for decisions: ticks can be under a second apart)."""
    moment = datetime.datetime.fromtimestamp(unix_seconds, tz=datetime.UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


def _reason_code(decision: Decision) -> str:
    return decision.reasons[0].code if decision.reasons else decision.action.value.title()


def _reason_text(decision: Decision) -> str:
    return "; ".join(f"{r.code}: {r.message}" for r in decision.reasons) or decision.action.value


def _conditions(
    *,
    previous_status: Mapping[str, Any],
    wanted: Mapping[str, tuple[Literal["True", "False", "Unknown"], str, str]],
    now_seconds: float,
    generation: int | None,
) -> list[v1alpha1.Condition]:
    """Conditions in a fixed order; a condition keeps its lastTransitionTime while its status is unchanged."""
    before = {c.get("type"): c for c in previous_status.get("conditions") or () if isinstance(c, Mapping)}
    conditions = []
    for kind in _CONDITION_TYPES:
        status_, reason, message = wanted[kind]
        old = before.get(kind)
        same = old is not None and old.get("status") == status_ and old.get("lastTransitionTime")
        conditions.append(
            v1alpha1.Condition(
                type=kind,
                status=status_,
                reason=reason,
                message=message[:_MAX_MESSAGE],
                last_transition_time=str(old["lastTransitionTime"]) if same and old else _rfc3339(now_seconds),
                observed_generation=generation,
            )
        )
    return conditions


LIVE_STATUS_FIELDS = frozenset({"velocities"})
"""Status fields that move every tick with the load: written with the rest, or refreshed every so often."""


def _what_readers_act_on(status_: Mapping[str, Any]) -> dict[str, Any]:
    """``status_`` without its live numbers and without condition messages (a message may quote live rates;
    a condition's type, status, reason and transition time are what a reader acts on)."""
    kept = {k: v for k, v in status_.items() if k not in LIVE_STATUS_FIELDS}
    kept["conditions"] = [
        {k: v for k, v in c.items() if k != "message"} if isinstance(c, Mapping) else c
        for c in status_.get("conditions") or ()
    ]
    return kept


def status_write_due(
    *,
    status_: Mapping[str, Any],
    previous_status: Mapping[str, Any],
    written_seconds: float | None,
    now_seconds: float,
    refresh_seconds: float,
) -> bool:
    """Whether a tick writes ``status_`` over ``previous_status`` (the resource's status as last read).

    At once when anything a reader acts on changed: a condition's status or reason, replicas (current, ready,
    desired), converted pods, a new decision or placement in the history, the observed generation. When only
    live numbers changed (velocities, arrival rates, condition messages), only once ``refresh_seconds`` have
    passed since this operator last wrote it (``written_seconds``; None: not yet, so it writes). Never when
    nothing changed.
    """
    if status_ == previous_status:
        return False
    if _what_readers_act_on(status_) != _what_readers_act_on(previous_status):
        return True
    return written_seconds is None or now_seconds - written_seconds >= refresh_seconds


def invalid_spec_status(
    *, previous_status: Mapping[str, Any], message: str, now_seconds: float, generation: int | None
) -> dict[str, Any]:
    """The status of a resource whose spec cannot be reconciled: Ready False, nothing else known."""
    unknown: tuple[Literal["Unknown"], str, str] = ("Unknown", "InvalidSpec", "the spec is invalid")
    conditions = _conditions(
        previous_status=previous_status,
        wanted={
            READY: ("False", "InvalidSpec", message),
            METRICS_AVAILABLE: unknown,
            SCALING_ACTIVE: ("False", "InvalidSpec", "the spec is invalid; nothing is actuated"),
            SCALING_LIMITED: unknown,
            SCALING_CONFLICT: unknown,
        },
        now_seconds=now_seconds,
        generation=generation,
    )
    return {
        "observedGeneration": generation,
        "conditions": [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in conditions],
    }


class StatusBuilder:
    """Collects what a tick found and did, posts Events and metrics, and builds the status to write."""

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        config: ServiceConfig,
        memory: ServiceMemory,
        ports: TickPorts,
        now_seconds: float,
        previous_status: Mapping[str, Any],
    ) -> None:
        self._namespace = namespace
        self._name = name
        self._config = config
        self._memory = memory
        self._ports = ports
        self._now = now_seconds
        self._previous = previous_status
        self._problem: tuple[str, str] | None = None
        self._observation: Observation | None = None
        self._decision: Decision | None = None
        self._blocked: str | None = None
        self._owners: Sequence[str] = ()
        self._actions: Sequence[Action] = ()
        self._failures: Sequence[Failure] = ()
        self._conversion_refused = False
        self._pools: PoolReport | None = None
        if not memory.decisions:
            # After a restart the history continues from the status the previous process wrote.
            for record in previous_status.get("lastDecisions") or ():
                try:
                    memory.decisions.append(v1alpha1.DecisionRecord.model_validate(record))
                except ValueError:
                    continue

    # -- findings -------------------------------------------------------------------------------------------

    def target_problem(self, *, reason: str, message: str) -> None:
        """A scale target could not be read: nothing observed, nothing decided, so nothing blocked."""
        self._problem = (reason, message)
        self._post("Warning", reason, message, dedup=message)
        self._set_blocked(frozenset())

    def decided(
        self,
        *,
        observation: Observation,
        decision: Decision,
        blocked: str | None,
        owners: Sequence[str],
        actions: Sequence[Action],
        failures: Sequence[Failure],
        conversion_refused: bool,
        decode_selector: str,
    ) -> None:
        """The tick decided (and acted unless ``blocked``): record, post Events, update metrics."""
        self._observation, self._decision, self._blocked = observation, decision, blocked
        self._owners, self._actions, self._failures = owners, actions, failures
        self._conversion_refused = conversion_refused
        self._record_decision(decision)
        self._post_events(decode_selector=decode_selector)
        self._update_metrics()

    def pools(self, pool_report: PoolReport) -> None:
        """A service with pools: record its placements, post their Events, and put pools and groups in status."""
        self._pools = pool_report
        if not self._memory.placements:
            for record in self._previous.get("lastPlacements") or ():
                try:
                    self._memory.placements.append(v1alpha1.PlacementRecord.model_validate(record))
                except ValueError:
                    continue
        for record in pool_report.placements:
            # A change that could not be made (delta 0) is retried every tick: recorded once, not every tick.
            repeated = record.delta == 0 and any(
                (r.role, r.variant, r.domain, r.delta, r.reason)
                == (
                    record.role,
                    record.variant,
                    record.domain,
                    record.delta,
                    record.reason,
                )
                for r in self._memory.placements
            )
            if not repeated:
                self._memory.placements.append(record)
        for event in pool_report.events:
            self._post(event.type_, event.reason, event.message, dedup=event.dedup)

    # -- events ---------------------------------------------------------------------------------------------

    def _post(
        self, type_: Literal["Normal", "Warning"], reason: str, message: str, *, dedup: str | None = None
    ) -> None:
        """Post an Event; with ``dedup``, not again within ``event_repeat_seconds`` for the same (reason, dedup)."""
        message = message[:_MAX_MESSAGE]
        if dedup is not None:
            key = (reason, dedup)
            last = self._memory.posted_events.get(key)
            if last is not None and self._now - last < self._ports.event_repeat_seconds:
                return
            self._memory.posted_events = {
                k: t for k, t in self._memory.posted_events.items() if self._now - t < self._ports.event_repeat_seconds
            }
            self._memory.posted_events[key] = self._now
        self._ports.events.post(type_=type_, reason=reason, message=message)
        log = logger.warning if type_ == "Warning" else logger.info
        log("%s/%s %s: %s", self._namespace, self._name, reason, message)

    def _post_events(self, *, decode_selector: str) -> None:
        decision = self._decision
        assert decision is not None
        why = _reason_text(decision)
        for action in self._actions:
            if action.kind == "scale":
                what = action.target or action.role.value
                text = f"{what} {action.from_replicas} -> {action.to_replicas} replicas ({why})"
                self._post("Normal", "Scale", text)
            else:
                verb = {
                    "convert": "converted to take prefill work",
                    "restore": "restored to decode only",
                    "withdraw": "withdrawn (soft scale-in): removed first when its workload shrinks",
                    "rejoin": "rejoined (soft scale-in aborted)",
                }[action.kind]
                self._post("Normal", action.kind.title(), f"pod {action.pod} {verb} ({why})")
        for failure in self._failures:
            self._post("Warning", failure.code, failure.message, dedup=failure.target)
        if self._conversion_refused:
            key = self._config.role_label.key
            self._post(
                "Warning",
                "RoleLabelInSelector",
                f"not converting or restoring pods: the decode workload's selector {decode_selector!r} includes the "
                f"role label {key}, so flipping it would orphan the pod; select the workload without {key}",
                dedup=decode_selector,
            )
        if self._blocked is not None:
            wanted = self._would_do(decision)
            if self._blocked == "ScalingConflict":
                self._post(
                    "Warning",
                    "ScalingConflict",
                    f"not actuating: {'; '.join(self._owners)}; remove the other autoscaler"
                    + (f" (would {wanted})" if wanted else ""),
                    dedup="; ".join(self._owners),
                )
            elif wanted:
                self._post("Normal", "DryRun", f"dry run, not actuated: would {wanted} ({why})", dedup=wanted)
        if decision.action is DecisionAction.HOLD:
            self._post("Normal", "Hold", why, dedup=" ".join(r.code for r in decision.reasons))

    def _would_do(self, decision: Decision) -> str:
        parts = []
        observation = self._observation
        assert observation is not None
        for role, view, replicas in (
            (Role.PREFILL, observation.prefill, decision.prefill_replicas),
            (Role.DECODE, observation.decode, decision.decode_replicas),
        ):
            if replicas != view.spec_replicas:
                parts.append(f"scale {role.value} {view.spec_replicas} -> {replicas}")
        if decision.convert_pods:
            parts.append(f"convert {', '.join(decision.convert_pods)}")
        if decision.restore_pods:
            parts.append(f"restore {', '.join(decision.restore_pods)}")
        return "; ".join(parts)

    # -- records and metrics --------------------------------------------------------------------------------

    def _record_decision(self, decision: Decision) -> None:
        if decision.action is DecisionAction.NONE:
            return
        record = v1alpha1.DecisionRecord(
            time=_rfc3339(self._now, timespec="milliseconds"),
            action=decision.action.value,
            prefill_replicas=decision.prefill_replicas,
            decode_replicas=decision.decode_replicas,
            reason=_reason_code(decision),
            message=_reason_text(decision)[:_MAX_MESSAGE],
        )
        decisions = self._memory.decisions
        if decisions:
            last = decisions[-1]
            # A decision repeated tick after tick (a hold, a clamped scale) is one entry, not ten.
            if (last.action, last.prefill_replicas, last.decode_replicas, last.reason) == (
                record.action,
                record.prefill_replicas,
                record.decode_replicas,
                record.reason,
            ):
                return
        decisions.append(record)

    def _update_metrics(self) -> None:
        observation, decision = self._observation, self._decision
        assert observation is not None
        assert decision is not None
        metrics = self._ports.metrics
        service = (self._namespace, self._name)
        policy = self._config.spec.policy.name.value
        reason = _reason_code(decision)
        metrics.desired_replicas.labels(*service, Role.PREFILL.value).set(decision.prefill_replicas)
        metrics.desired_replicas.labels(*service, Role.DECODE.value).set(decision.decode_replicas)
        metrics.ready_replicas.labels(*service, Role.PREFILL.value).set(observation.prefill.ready_replicas)
        metrics.ready_replicas.labels(*service, Role.DECODE.value).set(observation.decode.ready_replicas)
        metrics.converted_decoders.labels(*service).set(len(self._converted_pods()))
        metrics.metrics_available.labels(*service).set(0 if observation.load is None else 1)
        for stage, value in self._velocities().items():
            if stage.startswith("arriving_"):
                metrics.arrival_rate.labels(*service, stage.removeprefix("arriving_")).set(value)
            else:
                metrics.token_velocity.labels(*service, stage).set(value)
        counted = False
        for role, view, replicas in (
            (Role.PREFILL, observation.prefill, decision.prefill_replicas),
            (Role.DECODE, observation.decode, decision.decode_replicas),
        ):
            if replicas != view.spec_replicas:
                metrics.decisions.labels(*service, policy, role.value, DecisionAction.SCALE.value, reason).inc()
                counted = True
        for action, pods in (
            (DecisionAction.CONVERT, decision.convert_pods),
            (DecisionAction.RESTORE, decision.restore_pods),
        ):
            if pods:
                metrics.decisions.labels(*service, policy, Role.DECODE.value, action.value, reason).inc()
                counted = True
        if not counted:
            metrics.decisions.labels(*service, policy, telemetry.SERVICE_ROLE, decision.action.value, reason).inc()
        self._set_blocked(self._blocked_reasons())

    def _blocked_reasons(self) -> frozenset[str]:
        """Why this tick's decision was not (fully) actuated: another autoscaler while the decision would change
        something, a conversion or restore refused, a write that failed. dryRun is not blocked."""
        assert self._decision is not None
        found = set()
        if self._blocked == "ScalingConflict" and self._would_do(self._decision):
            found.add("ScalingConflict")
        if self._conversion_refused:
            found.add("RoleLabelInSelector")
        if self._failures:
            found.add("ActuationFailed")
        return frozenset(found)

    def _set_blocked(self, reasons: frozenset[str]) -> None:
        for reason in telemetry.BLOCKED_REASONS:
            self._ports.metrics.scaling_blocked.labels(self._namespace, self._name, reason).set(
                1 if reason in reasons else 0
            )

    def _converted_pods(self) -> list[str]:
        """Decode pods converted after this tick's actions."""
        observation = self._observation
        if observation is None:
            return []
        converted = {p.name for p in observation.decode.pods if p.serving_role is ServingRole.CONVERTED}
        for action in self._actions:
            if action.kind == "convert" and action.pod:
                converted.add(action.pod)
            elif action.kind == "restore" and action.pod:
                converted.discard(action.pod)
        return sorted(converted)

    def _velocities(self) -> dict[str, float]:
        """Ready capacity per stage (velocity times Ready pods) and arriving token rates, tokens/s.

        Decode capacity per pod is the harmonic mean of the per-bucket decode velocities weighted by each
        bucket's share of arriving tokens (the rate at which a decoder serving that mix releases KV), or their
        plain mean when no bucket rates are known.
        """
        observation = self._observation
        assert observation is not None
        velocities = self._config.settings.profile.velocities
        ready_prefill = observation.prefill.ready_replicas
        ready_decode = observation.decode.ready_replicas
        load = observation.load
        bucket_rates = load.bucket_tokens_per_second if load is not None else ()
        total = sum(bucket_rates)
        if total > 0:
            per_decoder = total / sum(
                rate / v for rate, v in zip(bucket_rates, velocities.decode_tokens_per_second, strict=True)
            )
        else:
            per_decoder = sum(velocities.decode_tokens_per_second) / len(velocities.decode_tokens_per_second)
        return {
            "prefill": velocities.prefill_tokens_per_second * ready_prefill,
            "network": velocities.network_tokens_per_second * ready_prefill,
            "decode": per_decoder * ready_decode,
            "arriving_prefill": load.arriving_prompt_tokens_per_second if load else 0.0,
            "arriving_network": load.arriving_prompt_tokens_per_second if load else 0.0,
            "arriving_decode": (total or load.generation_tokens_per_second) if load else 0.0,
        }

    # -- status ---------------------------------------------------------------------------------------------

    def _wanted_conditions(self) -> dict[str, tuple[Literal["True", "False", "Unknown"], str, str]]:
        if self._problem is not None:
            reason, message = self._problem
            unknown: tuple[Literal["Unknown"], str, str] = ("Unknown", reason, "the scale targets could not be read")
            return {
                READY: ("False", reason, message),
                METRICS_AVAILABLE: unknown,
                SCALING_ACTIVE: ("False", reason, f"nothing is actuated: {message}"),
                SCALING_LIMITED: unknown,
                SCALING_CONFLICT: unknown,
            }
        observation, decision = self._observation, self._decision
        assert observation is not None
        assert decision is not None
        metrics: tuple[Literal["True", "False", "Unknown"], str, str]
        if observation.load is None:
            metrics = ("False", "MetricsUnavailable", "; ".join(observation.unknown_reasons) or "load unknown")
        else:
            metrics = ("True", "MetricsAvailable", "every load input is known")
        active: tuple[Literal["True", "False", "Unknown"], str, str]
        if self._blocked == "DryRun":
            active = ("False", "DryRun", "spec.dryRun is set: decisions are reported, never actuated")
        elif self._blocked == "ScalingConflict":
            active = ("False", "ScalingConflict", "another autoscaler targets a workload; nothing is actuated")
        elif self._failures:
            active = ("False", "ActuationFailed", "; ".join(f.message for f in self._failures))
        elif observation.load is None:
            active = ("False", "MetricsUnavailable", "holding: no scale-in while load is unknown")
        else:
            active = ("True", "Actuating", "decisions are actuated every tick")
        limited: tuple[Literal["True", "False", "Unknown"], str, str]
        if self._conversion_refused:
            limited = ("True", "RoleLabelInSelector", "conversions refused: the role label is in the selector")
        elif (decision.recommended_prefill_replicas, decision.recommended_decode_replicas) != (
            decision.prefill_replicas,
            decision.decode_replicas,
        ):
            limited = (
                "True",
                "DesiredReplicasLimited",
                f"recommended prefill {decision.recommended_prefill_replicas}, decode "
                f"{decision.recommended_decode_replicas}; decided prefill {decision.prefill_replicas}, decode "
                f"{decision.decode_replicas} ({_reason_text(decision)})",
            )
        else:
            limited = ("False", "WithinLimits", "the decision is the policy's recommendation")
        conflict: tuple[Literal["True", "False", "Unknown"], str, str] = (
            ("True", "OtherAutoscaler", "; ".join(self._owners))
            if self._owners
            else ("False", "NoConflict", "no other autoscaler targets the workloads")
        )
        return {
            READY: ("True", "Reconciling", "both scale targets resolve"),
            METRICS_AVAILABLE: metrics,
            SCALING_ACTIVE: active,
            SCALING_LIMITED: limited,
            SCALING_CONFLICT: conflict,
        }

    def build(self, *, scales: Mapping[Role, Scale]) -> dict[str, Any]:
        """The status to write (wire form); also sets the current-replicas metric from ``scales``."""
        for role, scale in scales.items():
            self._ports.metrics.current_replicas.labels(self._namespace, self._name, role.value).set(
                scale.status_replicas
            )
        generation = self._config.generation
        conditions = _conditions(
            previous_status=self._previous,
            wanted=self._wanted_conditions(),
            now_seconds=self._now,
            generation=generation,
        )
        observation, decision = self._observation, self._decision
        previous = v1alpha1.DisaggregatedInferenceServiceStatus.model_validate(
            {k: v for k, v in self._previous.items() if k in ("prefill", "decode", "velocities")}
        )

        def role_status(role: Role, previous_role: v1alpha1.RoleStatus) -> v1alpha1.RoleStatus:
            scale = scales.get(role)
            if scale is None or observation is None or decision is None:
                return previous_role
            view = observation.prefill if role is Role.PREFILL else observation.decode
            desired = decision.prefill_replicas if role is Role.PREFILL else decision.decode_replicas
            return v1alpha1.RoleStatus(
                replicas=scale.status_replicas, ready_replicas=view.ready_replicas, desired_replicas=desired
            )

        velocities = previous.velocities
        if observation is not None:
            v = self._velocities()
            velocities = v1alpha1.VelocityStatus(
                prefill_tokens_per_second=round(v["prefill"], 3),
                network_tokens_per_second=round(v["network"], 3),
                decode_tokens_per_second=round(v["decode"], 3),
                arriving_prompt_tokens_per_second=round(v["arriving_prefill"], 3),
                arriving_decode_tokens_per_second=round(v["arriving_decode"], 3),
            )
        converted = (
            self._converted_pods() if observation is not None else list(self._previous.get("convertedPods") or [])
        )
        status_ = v1alpha1.DisaggregatedInferenceServiceStatus(
            observed_generation=generation,
            conditions=conditions,
            prefill=role_status(Role.PREFILL, previous.prefill),
            decode=role_status(Role.DECODE, previous.decode),
            converted_pods=converted[: v1alpha1.MAX_CONVERTED_PODS],
            converted_replicas=len(converted),
            velocities=velocities,
            last_decisions=list(self._memory.decisions),
        )
        if self._pools is not None:
            status_.variants = self._pools.variants
            status_.groups = self._pools.groups if self._config.spec.placement is not None else None
            status_.last_placements = list(self._memory.placements) if self._config.spec.placement else None
        elif self._config.pools is not None:
            # The pools could not be read this tick: keep what the last tick reported.
            kept = v1alpha1.DisaggregatedInferenceServiceStatus.model_validate(
                {k: v for k, v in self._previous.items() if k in ("variants", "groups", "lastPlacements")}
            )
            status_.variants, status_.groups, status_.last_placements = kept.variants, kept.groups, kept.last_placements
        return status_.model_dump(by_alias=True, mode="json", exclude_none=True)
