"""The Grafana dashboard (deploy/grafana/ltxserve.json) asks only for metrics the code exports,
with labels they have, in PromQL that parses; and every ltxserve metric has a panel."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.metrics import MetricWrapperBase

from ltxserve import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ltxserve.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> dict[str, set[str]]:
    """Sample name -> label names, for every metric ltxserve defines (histograms add ``le``)."""
    out: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            labels = set(value._labelnames)  # prometheus-client keeps them only here
            kind = value._type
            for suffix in SUFFIXES[kind]:
                out[value._name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for family in metrics.GpuMemoryCollector().describe():
        out[family.name] = {"kind"}
    out = {name: labels | {"instance", "job"} for name, labels in out.items()}  # added by Prometheus
    return out


def expressions() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every vector selector in ``expr``."""
    found: list[tuple[str, set[str]]] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node.name, {m.name for m in node.matchers.matchers}))

    # Grafana replaces its variables before Prometheus sees the query.
    promql_parser.walk(promql_parser.parse(expr.replace("$__rate_interval", "5m")), visit, None)
    return found


def test_every_query_names_an_exported_metric() -> None:
    known = exported()
    exprs = expressions()
    assert len(exprs) >= 10
    for expr in exprs:
        sels = selectors(expr)
        assert sels, expr
        for name, labels in sels:
            assert name in known, f"{name} is not exported by ltxserve.metrics ({expr})"
            assert labels <= known[name], f"{name} has no label {labels - known[name]} ({expr})"
        for grouped in re.findall(r"by \(([^)]*)\)", expr):
            wanted = {g.strip() for g in grouped.split(",")}
            assert any(wanted <= known[name] for name, _ in sels), f"by ({grouped}) in {expr}"


def family(sample: str) -> str:
    return re.sub(r"_(total|bucket|sum|count)$", "", sample)


def test_every_metric_has_a_panel() -> None:
    used = {family(name) for expr in expressions() for name, _ in selectors(expr)}
    missing = {family(n) for n in exported()} - used
    assert not missing, f"add a panel to {DASHBOARD.name} for: {sorted(missing)}"


def test_the_check_can_fail() -> None:
    ((name, _),) = selectors("rate(ltxserve_no_such_metric_total[5m])")
    assert name not in exported()
    with pytest.raises(ValueError, match=r"."):  # not PromQL
        promql_parser.parse("sum by (stage (rate(x[5m]))")


def test_dashboard_shape() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "ltxserve"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for p in board["panels"]:
        assert p["datasource"]["uid"] == "${datasource}"  # the template variable, not a fixed uid
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
    assert board["templating"]["list"][0]["type"] == "datasource"
