"""Grafana dashboards: the one source of every panel and its PromQL.

`tokenscale generate` writes each dashboard's JSON into the chart (``charts/tokenscale/dashboards/``, shipped
as ConfigMaps for the Grafana sidecar) and every query into ``docs/dashboards.md``. The operator's metric
names are read from `tokenscale.controller.telemetry` (its registry, not copies of the strings) and its label
names are the constants there, so a renamed metric changes the dashboards with it.

Conventions of the queries:

- operator series are selected by ``namespace`` and ``name`` of the DisaggregatedInferenceService (the
  ``$namespace`` and ``$service`` variables) and collapsed with ``max by (namespace, name)``, so the
  scrape's own target labels (``pod``, ``instance``) never split a service into several lines. The scrape
  must keep the metric's ``namespace`` label: the chart's ServiceMonitor sets ``honorLabels: true``;
- engine series (vLLM's TTFT and ITL histograms, named as `tokenscale.metrics.engines.vllm` reads them) are
  selected by ``namespace`` and ``model_name``: whatever scrapes the engines must attach the pod's namespace
  as ``namespace``, as a PodMonitor or ServiceMonitor does;
- SLO attainment is the share of requests at or under the objective: the histogram bucket whose ``le`` is
  the objective over the count. The objective variables therefore offer only vLLM bucket bounds;
- rates use Grafana's ``$__rate_interval``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from prometheus_client.metrics import MetricWrapperBase

from tokenscale.controller import telemetry
from tokenscale.core.types import Role
from tokenscale.metrics.engines import vllm

__all__ = [
    "ITL_HISTOGRAM",
    "STAGES",
    "TTFT_HISTOGRAM",
    "Dashboard",
    "Panel",
    "Query",
    "Variable",
    "dashboards",
    "dashboards_markdown",
    "grafana_json",
]

STAGES = ("prefill", "network", "decode")
"""Values of the ``stage`` label of the velocity and arrival gauges (KV transfer is ``network``)."""


def _vllm_histogram(field_name: str) -> str:
    """vLLM's current exposition name of a histogram, as the metrics layer's preset reads it (first name)."""
    return next(h.names[0] for h in vllm.PRESET.histograms if h.field == field_name)


TTFT_HISTOGRAM = _vllm_histogram("time_to_first_token_seconds")
"""vLLM V1's time-to-first-token histogram."""
ITL_HISTOGRAM = _vllm_histogram("inter_token_latency_seconds")
"""vLLM V1's inter-token latency histogram (it replaced the deprecated ``time_per_output_token_seconds``)."""

# Objectives offered for SLO attainment: bucket bounds of vLLM's histograms, written as vLLM writes ``le``.
_TTFT_OBJECTIVES_SECONDS = ("0.1", "0.25", "0.5", "0.75", "1.0", "2.5", "5.0")
_ITL_OBJECTIVES_SECONDS = ("0.025", "0.05", "0.075", "0.1", "0.15", "0.2")
_DEFAULT_TTFT_OBJECTIVE = "0.25"  # the CRD's shortest TTFT tier
_DEFAULT_ITL_OBJECTIVE = "0.1"  # the CRD's default TPOT objective

_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
_GRID_WIDTH = 24
_SCHEMA_VERSION = 39


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression of a panel and the legend of its series (Grafana's ``{{label}}`` syntax)."""

    expr: str
    legend: str


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    """Grafana unit id: ``short``, ``s``, ``percentunit``..."""
    width: int = 12
    height: int = 8
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True, slots=True)
class Variable:
    """A dashboard variable: a Prometheus label's values (``query``) or a fixed list (``custom``)."""

    name: str
    label: str
    kind: Literal["query", "custom"]
    metric: str = ""
    """For ``query``: the series selector whose ``label`` values are offered."""
    label_name: str = ""
    options: tuple[str, ...] = ()
    """For ``custom``: the values offered; the first of ``default`` or these is selected."""
    default: str = ""
    multi: bool = True


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = field(default=())

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"


@dataclass(frozen=True, slots=True)
class _Names:
    """Exposition names of the operator's metrics, read from its registry."""

    desired: str
    current: str
    ready: str
    converted: str
    velocity: str
    arrival: str
    available: str
    decisions: str
    scrape_errors: str
    actuation_errors: str
    blocked: str
    reconcile: str


def _family(collector: MetricWrapperBase) -> str:
    (metric,) = collector.describe()
    return str(metric.name)


@cache
def _names() -> _Names:
    m = telemetry.OperatorMetrics()
    return _Names(
        desired=_family(m.desired_replicas),
        current=_family(m.current_replicas),
        ready=_family(m.ready_replicas),
        converted=_family(m.converted_decoders),
        velocity=_family(m.token_velocity),
        arrival=_family(m.arrival_rate),
        available=_family(m.metrics_available),
        decisions=_family(m.decisions) + "_total",
        scrape_errors=_family(m.scrape_errors) + "_total",
        actuation_errors=_family(m.actuation_errors) + "_total",
        blocked=_family(m.scaling_blocked),
        reconcile=_family(m.reconcile_duration),
    )


_SERVICE = f'{telemetry.NAMESPACE}=~"$namespace", {telemetry.NAME}=~"$service"'
_BY_SERVICE = f"{telemetry.NAMESPACE}, {telemetry.NAME}"
_SERVICE_LEGEND = f"{{{{{telemetry.NAMESPACE}}}}}/{{{{{telemetry.NAME}}}}}"
_ENGINE = 'namespace=~"$namespace", model_name=~"$model"'
_BY_MODEL = "namespace, model_name"
_MODEL_LEGEND = "{{namespace}} {{model_name}}"


def _service_gauge(metric: str, *matchers: str) -> str:
    selector = ", ".join((_SERVICE, *matchers))
    return f"max by ({_BY_SERVICE}) ({metric}{{{selector}}})"


def _service_variables() -> tuple[Variable, ...]:
    n = _names()
    return (
        Variable("namespace", "Namespace", "query", metric=n.desired, label_name=telemetry.NAMESPACE),
        Variable(
            "service",
            "Service",
            "query",
            metric=f'{n.desired}{{{telemetry.NAMESPACE}=~"$namespace"}}',
            label_name=telemetry.NAME,
        ),
    )


def _stage_panel(stage: str) -> Panel:
    n = _names()
    matcher = f'{telemetry.STAGE}="{stage}"'
    what = {
        "prefill": "prompt tokens/s arriving against the Ready prefillers' capacity (V_P times Ready pods)",
        "network": "prompt tokens/s whose KV must move against the KV-transfer capacity (V_N times Ready prefillers)",
        "decode": "decode tokens/s arriving against the Ready decoders' capacity",
    }[stage]
    return Panel(
        title=f"Arrival vs velocity: {stage}",
        description=f"The {stage} stage: {what}. Arrival above velocity is a shortfall the policy scales for.",
        queries=(
            Query(_service_gauge(n.arrival, matcher), f"{_SERVICE_LEGEND} arriving"),
            Query(_service_gauge(n.velocity, matcher), f"{_SERVICE_LEGEND} velocity"),
        ),
        unit="short",
        width=8,
        min_value=0,
    )


def _replicas_panel(role: Role) -> Panel:
    n = _names()
    matcher = f'{telemetry.ROLE}="{role.value}"'
    return Panel(
        title=f"{role.value.title()} replicas",
        description=f"The {role.value} workload: replicas of its scale target (/scale status), its Ready pods, "
        "and the replicas the last decision asked for. Desired apart from current for long means the operator "
        "does not act (dry run, another autoscaler) or its writes fail.",
        queries=(
            Query(_service_gauge(n.current, matcher), f"{_SERVICE_LEGEND} current"),
            Query(_service_gauge(n.ready, matcher), f"{_SERVICE_LEGEND} ready"),
            Query(_service_gauge(n.desired, matcher), f"{_SERVICE_LEGEND} desired"),
        ),
        min_value=0,
    )


def _attainment(histogram: str, objective_variable: str) -> str:
    selector = f'{_ENGINE}, le="${objective_variable}"'
    bucket = f"sum by ({_BY_MODEL}) (rate({histogram}_bucket{{{selector}}}[$__rate_interval]))"
    count = f"sum by ({_BY_MODEL}) (rate({histogram}_count{{{_ENGINE}}}[$__rate_interval]))"
    return f"{bucket}\n/\n{count}"


def _quantile(histogram: str, quantile: float) -> str:
    rate = f"rate({histogram}_bucket{{{_ENGINE}}}[$__rate_interval])"
    return f"histogram_quantile({quantile}, sum by (le, {_BY_MODEL}) ({rate}))"


def _scaling_dashboard() -> Dashboard:
    n = _names()
    decisions = f"{n.decisions}{{{_SERVICE}}}"
    return Dashboard(
        uid="tokenscale-scaling",
        title="TokenScale / Scaling",
        description="What the operator sees and decides for each DisaggregatedInferenceService: token arrival "
        "against stage velocity, replicas, converted decoders, decisions, and the engines' SLO attainment.",
        variables=(
            *_service_variables(),
            Variable(
                "model",
                "Model",
                "query",
                metric=f'{TTFT_HISTOGRAM}_count{{namespace=~"$namespace"}}',
                label_name="model_name",
            ),
            Variable(
                "ttft_objective",
                "TTFT objective (s)",
                "custom",
                options=_TTFT_OBJECTIVES_SECONDS,
                default=_DEFAULT_TTFT_OBJECTIVE,
                multi=False,
            ),
            Variable(
                "itl_objective",
                "ITL objective (s)",
                "custom",
                options=_ITL_OBJECTIVES_SECONDS,
                default=_DEFAULT_ITL_OBJECTIVE,
                multi=False,
            ),
        ),
        panels=(
            *(_stage_panel(stage) for stage in STAGES),
            _replicas_panel(Role.PREFILL),
            _replicas_panel(Role.DECODE),
            Panel(
                title="Converted decoders",
                description="Decode pods taking prefill work during a burst (convertible decoders); they go back to "
                "decoding when the burst is absorbed or after maxConversionSeconds.",
                queries=(Query(_service_gauge(n.converted), _SERVICE_LEGEND),),
                min_value=0,
            ),
            Panel(
                title="Decisions by reason",
                description="Decisions per minute by their first reason code (tokenscale.core.reasons); a hold "
                "or an unchanged count is a decision too.",
                queries=(
                    Query(
                        f"sum by ({telemetry.REASON}) (rate({decisions}[$__rate_interval])) * 60",
                        f"{{{{{telemetry.REASON}}}}}",
                    ),
                ),
                unit="short",
                min_value=0,
            ),
            Panel(
                title="Decisions by action",
                description="Decisions per minute by what they do to which workload (scale, convert, restore, "
                "hold, none; role service: neither workload changes).",
                queries=(
                    Query(
                        f"sum by ({telemetry.ROLE}, {telemetry.ACTION}) (rate({decisions}[$__rate_interval])) * 60",
                        f"{{{{{telemetry.ROLE}}}}} {{{{{telemetry.ACTION}}}}}",
                    ),
                ),
                unit="short",
                min_value=0,
            ),
            Panel(
                title="TTFT SLO attainment",
                description="Share of requests whose time to first token is at or under the TTFT objective "
                "(a bucket bound of vLLM's histogram), from the engines' own histograms.",
                queries=(Query(_attainment(TTFT_HISTOGRAM, "ttft_objective"), _MODEL_LEGEND),),
                unit="percentunit",
                min_value=0,
                max_value=1,
            ),
            Panel(
                title="ITL SLO attainment",
                description="Share of inter-token gaps at or under the ITL objective, from the engines' histograms.",
                queries=(Query(_attainment(ITL_HISTOGRAM, "itl_objective"), _MODEL_LEGEND),),
                unit="percentunit",
                min_value=0,
                max_value=1,
            ),
            Panel(
                title="Engine latency p90",
                description="90th percentiles of time to first token and inter-token latency over the engines.",
                queries=(
                    Query(_quantile(TTFT_HISTOGRAM, 0.9), f"{_MODEL_LEGEND} TTFT"),
                    Query(_quantile(ITL_HISTOGRAM, 0.9), f"{_MODEL_LEGEND} ITL"),
                ),
                unit="s",
                width=24,
                min_value=0,
            ),
        ),
    )


def _operator_dashboard() -> Dashboard:
    n = _names()
    reconcile = f"{n.reconcile}_bucket{{{_SERVICE}}}"
    return Dashboard(
        uid="tokenscale-operator",
        title="TokenScale / Operator",
        description="The operator's own health: pod scrapes, ticks, writes to the cluster.",
        variables=_service_variables(),
        panels=(
            Panel(
                title="Metrics available",
                description="1 when the last tick had every load input; 0 when it held because a role had no "
                "Ready pod with fresh metrics (the operator then never scales in).",
                queries=(Query(_service_gauge(n.available), _SERVICE_LEGEND),),
                min_value=0,
                max_value=1,
            ),
            Panel(
                title="Scrape errors",
                description="Pod scrapes per second that gave no sample, by role and reason (Timeout, HttpStatus, "
                "NoPodIP, NotAllowed...). A pod without a fresh sample is unknown, never idle.",
                queries=(
                    Query(
                        f"sum by ({_BY_SERVICE}, {telemetry.ROLE}, {telemetry.REASON}) "
                        f"(rate({n.scrape_errors}{{{_SERVICE}}}[$__rate_interval]))",
                        f"{_SERVICE_LEGEND} {{{{{telemetry.ROLE}}}}} {{{{{telemetry.REASON}}}}}",
                    ),
                ),
                min_value=0,
            ),
            Panel(
                title="Reconcile latency",
                description="Duration of one tick (observe, decide, act, report); the goal is tens of "
                "milliseconds at a 1 s tick.",
                queries=tuple(
                    Query(
                        f"histogram_quantile({q}, sum by (le) (rate({reconcile}[$__rate_interval])))",
                        f"p{round(q * 100)}",
                    )
                    for q in (0.5, 0.9, 0.99)
                ),
                unit="s",
                min_value=0,
            ),
            Panel(
                title="Ticks per second",
                description="Ticks per second per service; one per spec.metrics.scrapeIntervalSeconds when healthy.",
                queries=(
                    Query(
                        f"sum by ({_BY_SERVICE}) (rate({n.reconcile}_count{{{_SERVICE}}}[$__rate_interval]))",
                        _SERVICE_LEGEND,
                    ),
                ),
                min_value=0,
            ),
            Panel(
                title="Blocked decisions",
                description="1 while the last decision wanted a change the operator could not make, by reason: "
                "ScalingConflict (an HPA or KEDA ScaledObject targets a workload), RoleLabelInSelector (conversions "
                "refused), ActuationFailed (writes fail). The TokenScaleScalingConflict alert fires on it.",
                queries=(
                    Query(
                        f"max by ({_BY_SERVICE}, {telemetry.REASON}) ({n.blocked}{{{_SERVICE}}})",
                        f"{_SERVICE_LEGEND} {{{{{telemetry.REASON}}}}}",
                    ),
                ),
                min_value=0,
                max_value=1,
            ),
            Panel(
                title="Actuation errors",
                description="Writes to the cluster per second that failed, by operation (scale, convert, restore, "
                "status...); each is retried on the next tick. Persistent errors: check the operator's RBAC.",
                queries=(
                    Query(
                        f"sum by ({_BY_SERVICE}, {telemetry.OPERATION}, {telemetry.REASON}) "
                        f"(rate({n.actuation_errors}{{{_SERVICE}}}[$__rate_interval]))",
                        f"{_SERVICE_LEGEND} {{{{{telemetry.OPERATION}}}}} {{{{{telemetry.REASON}}}}}",
                    ),
                ),
                min_value=0,
            ),
        ),
    )


def dashboards() -> tuple[Dashboard, ...]:
    """Every dashboard, in the order the docs list them."""
    return (_scaling_dashboard(), _operator_dashboard())


# -- Grafana JSON ----------------------------------------------------------------------------------------------


def _variable_json(variable: Variable) -> dict[str, Any]:
    common: dict[str, Any] = {"name": variable.name, "label": variable.label, "hide": 0}
    if variable.kind == "custom":
        selected = variable.default or variable.options[0]
        return {
            **common,
            "type": "custom",
            "query": ",".join(variable.options),
            "current": {"selected": True, "text": selected, "value": selected},
            "options": [
                {"selected": option == selected, "text": option, "value": option} for option in variable.options
            ],
            "includeAll": False,
            "multi": False,
        }
    definition = f"label_values({variable.metric}, {variable.label_name})"
    return {
        **common,
        "type": "query",
        "datasource": _DATASOURCE,
        "definition": definition,
        "query": {"query": definition, "refId": f"{variable.name}-variable"},
        "refresh": 2,  # on time range change: services come and go
        "regex": "",
        "sort": 1,
        "current": {},
        "includeAll": variable.multi,
        "multi": variable.multi,
        **({"allValue": ".*"} if variable.multi else {}),
    }


def _panel_json(panel: Panel, *, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.min_value is not None:
        defaults["min"] = panel.min_value
    if panel.max_value is not None:
        defaults["max"] = panel.max_value
    defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    options = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": _DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + index),
                "datasource": _DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend,
                "range": True,
            }
            for index, query in enumerate(panel.queries)
        ],
    }


def _layout(panels: Iterable[Panel]) -> list[dict[str, Any]]:
    """Panels left to right, wrapping at Grafana's 24 columns; a row is as tall as its tallest panel."""
    out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > _GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        out.append(_panel_json(panel, panel_id=panel_id, x=x, y=y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return out


def grafana_json(dashboard: Dashboard) -> str:
    """The dashboard as Grafana's JSON model (schema version 39, Grafana 10.3 and later), deterministic."""
    model = {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["tokenscale"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": _SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "regex": "",
                },
                *(_variable_json(v) for v in dashboard.variables),
            ]
        },
        "panels": _layout(dashboard.panels),
    }
    return json.dumps(model, indent=2) + "\n"


# -- docs ------------------------------------------------------------------------------------------------------


def dashboards_markdown() -> str:
    """``docs/dashboards.md``: every dashboard, its variables and each panel's PromQL."""
    lines = [
        "<!-- Generated by `make crds` from tokenscale.controller.dashboards; do not edit. -->",
        "# Dashboards",
        "",
        "Grafana dashboards generated from `tokenscale/controller/dashboards.py`. The chart ships them as "
        'ConfigMaps labelled for the Grafana sidecar (`dashboards.enabled`, label `grafana_dashboard: "1"` by '
        "default; see [install](install.md)); the JSON files are in `charts/tokenscale/dashboards/` for a "
        "manual import. Metric names and labels are documented in [metrics](metrics.md).",
        "",
        "Requirements on the Prometheus that feeds them:",
        "",
        "- the operator's metrics scraped with their own `namespace` label kept (`honor_labels: true`; the "
        "chart's ServiceMonitor sets `honorLabels: true`), or the service's series would be relabelled "
        "`exported_namespace`;",
        "- for the SLO panels, the engines' `/metrics` scraped with the pod's namespace as `namespace` (a PodMonitor "
        "or ServiceMonitor on the engine pods does this). The histograms are vLLM's: "
        f"`{TTFT_HISTOGRAM}` and `{ITL_HISTOGRAM}`.",
        "",
        "`$__rate_interval` is Grafana's rate window (at least four scrape intervals).",
        "",
    ]
    for dashboard in dashboards():
        lines += [f"## {dashboard.title}", "", f"uid `{dashboard.uid}`, file `{dashboard.file_name}`.", ""]
        lines += [dashboard.description, "", "| variable | offers |", "|---|---|"]
        lines.append("| `$datasource` | Prometheus data sources |")
        for variable in dashboard.variables:
            if variable.kind == "custom":
                offers = ", ".join(f"`{o}`" for o in variable.options) + f" (default `{variable.default}`)"
            else:
                offers = f"values of `{variable.label_name}` on `{variable.metric}`"
            lines.append(f"| `${variable.name}` ({variable.label}) | {offers} |")
        lines.append("")
        for panel in dashboard.panels:
            lines += [f"### {panel.title}", "", panel.description, ""]
            for query in panel.queries:
                lines += [f"Legend `{query.legend}`:", "", "```promql", query.expr, "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
