"""The Grafana dashboard and the Prometheus config shipped in deploy/ (no Docker here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser
import yaml
from prometheus_client import REGISTRY

import control.metrics
import sinks.metrics
import streams.metrics
from devtools.local import REPO

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana/dashboards/audience-forwarder.json"
# What a dashboard says for the range Grafana picks; a plain duration for the parser.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def exported_names() -> set[str]:
    """Every series name the service's metric modules export."""
    assert streams.metrics and sinks.metrics and control.metrics  # registered them
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, [""]))
    return names


def dashboard_exprs() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel["targets"]]


def metric_names(node: Any) -> set[str]:
    """Names of the vector selectors anywhere in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        return {node.name} if node.name else set()
    if isinstance(node, list):
        return {name for item in node for name in metric_names(item)}
    if not isinstance(node, promql_parser.Expr):
        return set()
    children = (
        getattr(node, attribute)
        for attribute in dir(node)
        if not attribute.startswith("_") and attribute not in ("parse", "prettify")
    )
    return {name for child in children for name in metric_names(child)}


def test_every_dashboard_query_names_metrics_the_service_exports() -> None:
    exported = exported_names()
    seen: set[str] = set()
    for expr in dashboard_exprs():
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        names = metric_names(promql_parser.parse(expr))
        assert names, expr
        assert names <= exported, f"{expr}: {sorted(names - exported)} not exported"
        seen |= names
    # What the issue asks the dashboard to show.
    for wanted in (
        "forwarder_records_forwarded_total",
        "forwarder_records_dropped_total",
        "forwarder_dead_letters_total",
        "forwarder_consumer_lag",
        "forwarder_processing_latency_seconds_bucket",
        "sink_records_failed_total",
    ):
        assert wanted in seen, wanted


def test_the_extractor_finds_names_inside_functions_and_binary_operations() -> None:
    expr = 'time() - max by (a) (x_seconds{a="b"}) / on() sum(rate(y_total[5m]))'
    assert metric_names(promql_parser.parse(expr)) == {"x_seconds", "y_total"}


def test_prometheus_scrapes_each_forwarder_service_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    targets = {
        target for job in config["scrape_configs"] for c in job["static_configs"]
        for target in c["targets"]
    }  # fmt: skip
    expected = set()
    for name, service in compose.items():
        if service.get("command", [""])[0] != "forwarder":
            continue
        env = service["environment"]
        port = {
            "worker": env.get("FORWARDER_WEB_PORT"),
            "sink": env.get("FORWARDER_SINK_WEB_PORT"),
            "api": env.get("FORWARDER_API_PORT"),
        }[service["command"][1]]
        expected.add(f"{name}:{port}")
    assert targets == expected


def test_grafana_mounts_provisioning_that_exists() -> None:
    grafana = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    for volume in grafana["volumes"]:
        assert (REPO / volume.split(":")[0]).exists(), volume
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/forwarder.yml").read_text()
    )["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert Path(DASHBOARD).exists()
