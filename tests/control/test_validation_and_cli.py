"""The control plane's pure parts: validation, views, stats, the OpenAPI document, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from control.api import ROUTES
from control.bodies import ConnectionUpdate, OutputUpdate
from control.commands import problems, setting, table
from control.openapi import openapi_document
from control.stats import connection_stats
from control.validation import (
    InvalidBodyError,
    connection_problems,
    merged,
    output_view,
    parse_body,
    partner_view,
    validated_output,
)
from core.routing import Routing
from devtools.local import REPO
from forwarder.cli import build_parser
from partners.catalog import CATALOG, resolve_output
from schemas.records import ConnectionConfig, OutputConfig


def output(**fields: object) -> OutputConfig:
    return OutputConfig.model_validate_json(json.dumps({"output_id": "o-1", **fields}))


def problems_of(config: OutputConfig) -> dict[str, str]:
    with pytest.raises(InvalidBodyError) as refused:
        validated_output(config)
    return {problem.field: problem.reason for problem in refused.value.problems}


def test_settings_are_checked_against_the_partners_adapter() -> None:
    hook = {"partner": "webhook", "accepted_identities": ["email"]}
    url = "https://hooks.example.com/x"
    assert problems_of(output(**hook, settings={"url": url})) == {
        "settings.token_env": "Field required"
    }
    unknown = problems_of(output(**hook, settings={"url": url, "token_env": "T", "x": 1}))
    assert list(unknown) == ["settings.x"]
    inline = problems_of(output(**hook, settings={"url": url, "api_key": "sk-123"}))
    assert "api_key_env" in inline["settings"] and "sk-123" not in inline["settings"]
    bad_env = problems_of(output(**hook, settings={"url": url, "token_env": "not a name"}))
    assert list(bad_env) == ["settings.token_env"]
    assert validated_output(output(**hook, settings={"url": url, "token_env": "T"})).partner == (
        "webhook"
    )


def test_partners_without_a_sink_take_no_settings() -> None:
    refused = problems_of(
        output(partner="custom", accepted_identities=["email"], settings={"a": 1})
    )
    assert "takes no settings" in refused["settings.a"]


def test_identities_must_be_a_subset_of_the_partners() -> None:
    refused = problems_of(output(partner="push", accepted_identities=["email"]))
    assert refused == {"accepted_identities": "partner 'push' does not accept email"}
    unknown = problems_of(output(partner="s3cr3t-name"))
    assert list(unknown) == ["partner"] and "s3cr3t-name" not in unknown["partner"]


@pytest.mark.parametrize("number", [b"1e400", b"-1e400", b"NaN"])
def test_numbers_must_be_finite_in_bodies(number: bytes) -> None:
    settings = b'{"url": "https://h.example/x", "token_env": "T", "rate_per_second": ' + number
    body = b'{"output_id": "o", "partner": "webhook", "settings": ' + settings + b"}}"
    for model, raw in ((OutputConfig, body), (OutputUpdate, b'{"settings": ' + settings + b"}}")):
        with pytest.raises(InvalidBodyError) as refused:
            parse_body(model, raw)
        assert [(p.field, p.reason) for p in refused.value.problems] == [
            ("settings.rate_per_second", "Input should be a finite number")
        ]


def test_a_view_withholds_settings_that_fail_the_check() -> None:
    # Written to the topic by hand, past the API: the worker accepts it, the API hides it.
    config = output(partner="custom", accepted_identities=["email"], settings={"token": "s"})
    view = output_view(resolve_output(config))
    assert view.settings is None


def test_connections_need_an_output_that_takes_their_attributes() -> None:
    routing = Routing()
    routing.put_output(validated_output(output(partner="push")))
    connection = ConnectionConfig(
        connection_id="c", audience_id="a", output_id="o-1", status="active",
        forwarded_attributes=["ltv"],
    )  # fmt: skip
    assert [p.field for p in connection_problems(connection, routing)] == ["forwarded_attributes"]
    elsewhere = connection.model_copy(update={"output_id": "other"})
    assert [p.field for p in connection_problems(elsewhere, routing)] == ["output_id"]


def test_an_update_replaces_only_the_fields_it_sets() -> None:
    connection = ConnectionConfig(
        connection_id="c", audience_id="a", output_id="o", status="inactive",
        forwarded_attributes=["ltv"],
    )  # fmt: skip
    update = parse_body(ConnectionUpdate, b'{"status": "active"}')
    changed = merged(ConnectionConfig, connection, update)
    assert (changed.status, changed.forwarded_attributes) == ("active", ["ltv"])
    with pytest.raises(InvalidBodyError) as refused:
        parse_body(ConnectionUpdate, b'{"colour": "red"}')
    assert refused.value.problems[0].field == "colour"
    with pytest.raises(InvalidBodyError):
        parse_body(ConnectionUpdate, b"{not json")


def test_the_directory_lists_required_settings() -> None:
    hook = partner_view(CATALOG["webhook"])
    assert hook.required_settings == ["url", "token_env"] and hook.sink == "webhook"
    assert partner_view(CATALOG["push"]).required_settings == []


def test_stats_sum_the_workers_counts() -> None:
    def exposition(added: int) -> str:
        registry = CollectorRegistry()
        forwarded = Counter(
            "forwarder_records_forwarded", "", ["output_id", "connection_id", "action"],
            registry=registry,
        )  # fmt: skip
        dropped = Counter(
            "forwarder_records_dropped", "", ["output_id", "connection_id", "reason"],
            registry=registry,
        )  # fmt: skip
        last = Gauge(
            "forwarder_last_record_timestamp_seconds", "", ["output_id", "connection_id"],
            registry=registry,
        )  # fmt: skip
        forwarded.labels("o", "c", "add").inc(added)
        forwarded.labels("o", "c", "remove").inc(1)
        forwarded.labels("o", "other", "add").inc(1000)
        dropped.labels("o", "c", "inactive").inc(2)
        last.labels("o", "c").set(1_700_000_000 + added)
        return generate_latest(registry).decode()

    connection = ConnectionConfig(
        connection_id="c", audience_id="a", output_id="o", status="active"
    )
    stats = connection_stats(connection, [exposition(60), exposition(40)], unreachable=1)
    assert (stats.added, stats.removed, stats.dropped) == (100, 2, {"inactive": 4})
    assert stats.last_record_timestamp == 1_700_000_060
    assert (stats.workers_scraped, stats.workers_unreachable) == (2, 1)


def test_the_openapi_document_covers_every_route() -> None:
    document = openapi_document()
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert documented == {(method, path) for method, path, _ in ROUTES if path != "/openapi.json"}
    create = document["paths"]["/outputs"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OutputConfig"
    }
    assert {"401", "422"} <= set(create["responses"]) and create["security"]
    for ref in _refs(document):
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_cli_helpers() -> None:
    assert table(["a", "bb"], [["x", None], ["long", ["p", "q"]]]).splitlines() == [
        "a     bb",
        "x     -",
        "long  p,q",
    ]
    assert setting("rate_per_second=2") == ("rate_per_second", 2)
    assert setting("url=https://h.example/x") == ("url", "https://h.example/x")
    detail = {"detail": [{"field": "settings.url", "reason": "Field required"}]}
    assert "settings.url: Field required" in problems(422, detail)
    args = build_parser().parse_args(
        ["outputs", "create", "--id", "o", "--partner", "webhook", "--setting", "token_env=T"]
    )
    assert args.settings == [("token_env", "T")]


def test_cli_output_delete_calls_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) is closed on 127.0.0.1: the command gets as far as the HTTP call.
    args = build_parser().parse_args(
        ["outputs", "delete", "o-1", "--api-url", "http://127.0.0.1:9"]
    )
    assert args.run(args) == 1
    assert "cannot reach the API at http://127.0.0.1:9" in capsys.readouterr().err


def test_the_api_refuses_to_start_with_writes_and_no_token() -> None:
    env = {"PATH": "/usr/bin:/bin", "FORWARDER_API_WRITES_ENABLED": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "api"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "forwarder: invalid setting FORWARDER_API_TOKEN: needed while "
        "FORWARDER_API_WRITES_ENABLED is true (or set that to false for a read-only API)"
    ]


def test_an_update_keeps_integers_past_64_bits() -> None:
    """A PATCH merges through JSON: a large integer in settings is carried, not a 500."""
    record = output(partner="custom", accepted_identities=["email"])
    update = parse_body(OutputUpdate, b'{"settings": {"n": 1208925819614629174706176}}')
    assert merged(OutputConfig, record, update).settings == {"n": 2**80}
