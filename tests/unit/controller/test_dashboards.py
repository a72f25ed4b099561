"""The dashboards: every query names a metric someone exposes, every variable it uses exists, the layout fits
Grafana's grid, and docs/dashboards.md lists every query."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from prometheus_client.metrics_core import Metric

from tokenscale.controller import dashboards, telemetry
from tokenscale.metrics.engines import vllm

_METRIC_NAME = re.compile(r"\b(?:tokenscale_[a-z_]+|vllm:[a-z_:]+)")
_VARIABLE = re.compile(r"\$(\w+)")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
_ALL_PANELS = [
    pytest.param(dashboard, panel, id=f"{dashboard.uid}:{panel.title}")
    for dashboard in dashboards.dashboards()
    for panel in dashboard.panels
]


def _operator_exposition_names() -> set[str]:
    families: list[Metric] = list(telemetry.OperatorMetrics().registry.collect())
    return {family.name + suffix for family in families for suffix in _SUFFIXES[family.type]}


@pytest.mark.parametrize(("dashboard", "panel"), _ALL_PANELS)
def test_every_query_names_only_metrics_the_operator_or_vllm_expose(
    dashboard: dashboards.Dashboard, panel: dashboards.Panel
) -> None:
    known = _operator_exposition_names() | set(vllm.PRESET.exposition_names)
    for query in panel.queries:
        names = set(_METRIC_NAME.findall(query.expr))
        assert names, f"no metric in {query.expr!r}"
        assert names <= known, f"unknown metrics {sorted(names - known)} in {query.expr!r}"


@pytest.mark.parametrize(("dashboard", "panel"), _ALL_PANELS)
def test_every_variable_a_query_uses_is_defined(dashboard: dashboards.Dashboard, panel: dashboards.Panel) -> None:
    defined = {variable.name for variable in dashboard.variables} | {"__rate_interval"}
    for query in panel.queries:
        used = set(_VARIABLE.findall(query.expr))
        assert used <= defined, f"undefined variables {sorted(used - defined)} in {query.expr!r}"


@pytest.mark.parametrize("dashboard", [pytest.param(d, id=d.uid) for d in dashboards.dashboards()])
def test_panels_fit_the_grid_without_overlapping(dashboard: dashboards.Dashboard) -> None:
    model = json.loads(dashboards.grafana_json(dashboard))
    cells: dict[tuple[int, int], str] = {}
    for panel in model["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for cell in itertools.product(range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])):
            assert cell not in cells, f"{panel['title']} overlaps {cells[cell]}"
            cells[cell] = panel["title"]
    assert len({panel["id"] for panel in model["panels"]}) == len(model["panels"])


@pytest.mark.parametrize("dashboard", [pytest.param(d, id=d.uid) for d in dashboards.dashboards()])
def test_grafana_model_uses_the_datasource_variable_everywhere(dashboard: dashboards.Dashboard) -> None:
    model = json.loads(dashboards.grafana_json(dashboard))
    assert model["uid"] == dashboard.uid
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in model["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert [target["expr"] for target in panel["targets"]] == [
            q.expr for p in dashboard.panels if p.title == panel["title"] for q in p.queries
        ]
        assert all(target["datasource"]["uid"] == "${datasource}" for target in panel["targets"])


def test_objective_variables_offer_only_vllm_bucket_bounds() -> None:
    # SLO attainment reads the bucket whose `le` is the objective: any other value would select nothing.
    from tests.integration.fake_engine import ITL_BUCKETS, TTFT_BUCKETS

    bounds = {"ttft_objective": TTFT_BUCKETS, "itl_objective": ITL_BUCKETS}
    (scaling,) = [d for d in dashboards.dashboards() if d.uid == "tokenscale-scaling"]
    for variable in scaling.variables:
        if variable.name in bounds:
            assert variable.default in variable.options
            assert {float(option) for option in variable.options} <= set(bounds[variable.name])
            assert all(option == str(float(option)) for option in variable.options)  # as vLLM writes `le`


def test_docs_list_every_query_of_every_panel() -> None:
    text = dashboards.dashboards_markdown()
    for dashboard in dashboards.dashboards():
        assert f"## {dashboard.title}" in text
        for panel in dashboard.panels:
            assert f"### {panel.title}" in text
            for query in panel.queries:
                assert f"```promql\n{query.expr}\n```" in text
