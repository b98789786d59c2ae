"""The Grafana dashboard: every query reads metrics the worker serves, through the provisioned
Prometheus, and the panels the operator needs are there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.deploy_files import DATASOURCES, dashboard, load_yaml
from tests.helpers.promql import metric_names, served_names
from tests.helpers.promtool import check_expressions

_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*\w+\)$")

# What the operator must see (issue 12): throughput, latencies, lag, the LLM, dead letters,
# cost, Redis.
REQUIRED = {
    "enricher_records_consumed_total",
    "enricher_messages_total",
    "enricher_end_to_end_seconds_bucket",
    "enricher_reply_latency_seconds_bucket",
    "enricher_kafka_consumer_lag",
    "enricher_llm_calls_total",
    "enricher_llm_circuit_open",
    "enricher_llm_concurrency_limit",
    "enricher_llm_in_flight",
    "enricher_dead_letters_total",
    "enricher_llm_cost_usd_total",
    "enricher_redis_errors_total",
}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _queries() -> Iterator[tuple[str, str]]:
    """(where, expression) for every panel target and every query variable."""
    board = dashboard()
    for panel in _panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            match = _LABEL_VALUES.match(query)
            yield f"variable {variable['name']}", match.group(1) if match else query


def _provisioned_uid() -> str:
    sources = [s for f in DATASOURCES.glob("*.yml") for s in load_yaml(f)["datasources"]]
    (source,) = sources
    return str(source["uid"])


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (kind) (rate(a_total{kind="x",i=~"$instance"}[$__rate_interval])) > 0.1', {"a_total"}),
        ("histogram_quantile(0.99, sum(rate(b_bucket[5m])) by (le))", {"b_bucket"}),
        ("c / on(model) group_left d offset 15m > 1e-9 and absent(up == 1)", {"c", "d", "up"}),
        ("rec:lag:sum > 1000 and deriv(rec:lag:sum[10m]) > 0 or vector(0)", {"rec:lag:sum"}),
    ],
)
def test_metric_names_are_read_off_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_query_reads_metrics_the_worker_serves() -> None:
    served = served_names()
    queries = list(_queries())
    assert len(queries) > 20
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert names <= served, f"{where}: {sorted(names - served)} not served by the worker"


def test_promtool_parses_every_query(promtool: str, tmp_path: Path) -> None:
    check_expressions(promtool, dict(_queries()), tmp_path)


def test_the_operators_panels_are_there() -> None:
    used = set().union(*(metric_names(expr) for _, expr in _queries()))
    assert sorted(REQUIRED - used) == []


def test_every_panel_queries_the_provisioned_prometheus_by_uid() -> None:
    uid = _provisioned_uid()
    board = dashboard()
    for panel in _panels(board["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"]) == panel["datasource"], panel["title"]
    for variable in board["templating"]["list"]:
        assert variable["datasource"] == {"type": "prometheus", "uid": uid}


def test_the_dashboard_is_well_formed_for_grafana() -> None:
    board = dashboard()
    assert board["uid"] == "stream-enricher"
    assert 36 <= board["schemaVersion"] <= 41  # Grafana 10.x to 12.x migrate from here
    panels = list(_panels(board["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']} has no query"
            assert [t["refId"] for t in panel["targets"]] == sorted({t["refId"] for t in panel["targets"]})
