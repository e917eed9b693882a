"""The control plane end to end: the seed's workflow through the HTTP API only and through the
CLI only, with a real `forwarder api`, a real worker and the real broker; the 4xx answers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.local import REPO, ControlApi, Worker, consume, metric_value, produce
from tests.support.seed import seed_records

TOKEN = "test-token-" + uuid.uuid4().hex


def unique_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def api(worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlApi]:
    running = ControlApi(
        prefix=worker.prefix,
        data_dir=Path(tmp_path_factory.mktemp("api")),
        token=TOKEN,
        worker_metrics_urls=[worker.metrics_url],
    )
    running.start()
    yield running
    running.stop()


def call(
    api: ControlApi, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any]:
    request = urllib.request.Request(
        api.url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


def cli(api: ControlApi, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder.cli", *args, "--api-url", api.url],
        env={**os.environ, "FORWARDER_API_TOKEN": token},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def publish_seed_audience(worker: Worker, audience: str) -> list[str]:
    """The upstream producers' part: the seed's 100 profiles."""
    profiles, memberships = seed_records(audience)
    produce(worker.topic("profile-updates"), profiles)
    produce(worker.topic("audience-memberships"), memberships)
    return [mpid for mpid, _ in profiles]


def check_seed_outcome(worker: Worker, a: str, b: str) -> None:
    to_a = consume(worker.topic(f"forward-{a}"), expected=100)
    to_b = consume(worker.topic(f"forward-{b}"), expected=65)
    assert len(to_a) == 100, worker.log_tail()
    assert len(to_b) == 65
    assert {i["type"] for _, v, _ in to_a for i in v["identities"]} == {"ios_idfa"}
    assert {i["type"] for _, v, _ in to_b for i in v["identities"]} == {"email"}
    assert all(set(v["attributes"]) == {"ltv"} for _, v, _ in to_b), "B forwards ltv"
    assert all(v["attributes"] == {} for _, v, _ in to_a), "A takes no attributes"


def wait_for_stats(api: ControlApi, connection_id: str, added: int) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        status, stats = call(api, "GET", f"/connections/{connection_id}/stats")
        assert status == 200, stats
        if stats["added"] >= added or time.monotonic() > deadline:
            return dict(stats)
        time.sleep(0.3)


def test_seed_workflow_through_the_http_api_only(worker: Worker, api: ControlApi) -> None:
    audience, a, b = unique_id("aud"), unique_id("partner-a"), unique_id("partner-b")
    ca, cb = unique_id("c"), unique_id("c")
    status, partners = call(api, "GET", "/partners")
    assert status == 200
    custom = next(p for p in partners if p["name"] == "custom")
    assert custom["configurable"] and custom["supports_attributes"]

    for output_id, accepted, attributes in (
        (a, ["ios_idfa", "android_aaid"], False),
        (b, ["email"], True),
    ):
        status, created = call(
            api,
            "POST",
            "/outputs",
            {
                "output_id": output_id,
                "partner": "custom",
                "name": output_id.upper(),
                "accepted_identities": accepted,
                "supports_attributes": attributes,
                "settings": {},
            },
        )
        assert status == 201, created
        assert created["accepted_identities"] == sorted(accepted)
    for connection_id, output_id in ((ca, a), (cb, b)):
        status, connection = call(
            api,
            "POST",
            "/connections",
            {
                "connection_id": connection_id,
                "audience_id": audience,
                "output_id": output_id,
                "status": "inactive",
            },
        )
        assert status == 201, connection
    status, changed = call(api, "PATCH", f"/connections/{cb}", {"forwarded_attributes": ["ltv"]})
    assert (status, changed["forwarded_attributes"]) == (200, ["ltv"])
    for connection_id in (ca, cb):
        status, changed = call(api, "PATCH", f"/connections/{connection_id}", {"status": "active"})
        assert (status, changed["status"]) == (200, "active")
    # Read-your-writes: the API answers from its config view, which holds the records.
    status, listed = call(api, "GET", f"/connections?audience_id={audience}")
    assert status == 200
    assert {(c["connection_id"], c["status"]) for c in listed} == {(ca, "active"), (cb, "active")}
    assert call(api, "GET", f"/outputs/{b}")[1]["supports_attributes"] is True

    # Every worker sees the change through Kafka.
    worker.wait_ready(30, outputs=2, connections=2)
    publish_seed_audience(worker, audience)
    check_seed_outcome(worker, a, b)

    stats_a = wait_for_stats(api, ca, added=100)
    stats_b = wait_for_stats(api, cb, added=65)
    assert (stats_a["added"], stats_a["removed"]) == (100, 0)
    assert (stats_b["added"], stats_b["removed"]) == (65, 0)
    assert stats_b["dropped"].get("no_accepted_identity", 0) >= 35
    assert stats_a["last_record_timestamp"] is not None and stats_a["workers_scraped"] == 1
    # The worker's own /metrics holds the counts this run produced.
    exposition = worker.metrics()
    assert metric_value(exposition, "forwarder_records_forwarded_total", output_id=a) == 100
    assert metric_value(exposition, "forwarder_records_forwarded_total", output_id=b) == 65
    assert metric_value(exposition, "forwarder_processing_latency_seconds_count") >= 100
    with urllib.request.urlopen(api.url + "/metrics", timeout=5) as response:
        api_metrics = response.read().decode()
    assert metric_value(api_metrics, "forwarder_api_requests_total", method="POST") >= 4


def test_seed_workflow_through_the_cli_only(worker: Worker, api: ControlApi) -> None:
    audience, a, b = unique_id("aud"), unique_id("partner-a"), unique_id("partner-b")
    ca, cb = unique_id("c"), unique_id("c")
    partners = cli(api, "partners")
    assert partners.returncode == 0, partners.stderr
    assert "email-crm" in partners.stdout and "required settings" in partners.stdout
    commands = [
        ["outputs", "create", "--id", a, "--partner", "custom", "--name", "Partner A",
         "--identity", "ios_idfa", "--identity", "android_aaid", "--no-attributes"],
        ["outputs", "create", "--id", b, "--partner", "custom", "--name", "Partner B",
         "--identity", "email", "--attributes"],
        ["connections", "create", "--id", ca, "--audience", audience, "--output", a],
        ["connections", "create", "--id", cb, "--audience", audience, "--output", b],
        ["connections", "update", cb, "--attribute", "ltv"],
        ["connections", "update", ca, "--status", "active"],
        ["connections", "update", cb, "--status", "active"],
    ]  # fmt: skip
    for command in commands:
        done = cli(api, *command)
        assert done.returncode == 0, (command, done.stderr)
    listed = cli(api, "connections", "list", "--audience", audience, "--json")
    assert {(c["connection_id"], c["status"]) for c in json.loads(listed.stdout)} == {
        (ca, "active"),
        (cb, "active"),
    }
    table = cli(api, "outputs", "list").stdout
    assert a in table and "Partner B" in table

    worker.wait_ready(30, outputs=2, connections=2)
    publish_seed_audience(worker, audience)
    check_seed_outcome(worker, a, b)

    wait_for_stats(api, cb, added=65)
    stats = json.loads(cli(api, "connections", "stats", ca, "--json").stdout)
    assert stats["added"] == 100
    assert "added" in cli(api, "connections", "stats", cb).stdout


def test_each_refusal_names_the_field_and_the_reason(worker: Worker, api: ControlApi) -> None:
    def refused(path: str, body: dict[str, Any], method: str = "POST") -> dict[str, str]:
        status, answer = call(api, method, path, body)
        assert status == 422, answer
        return {problem["field"]: problem["reason"] for problem in answer["detail"]}

    hook = {"output_id": unique_id("hook"), "partner": "webhook", "accepted_identities": ["email"]}
    url = "https://hooks.example.com/audiences"
    missing = refused("/outputs", {**hook, "settings": {"url": url}})
    assert missing == {"settings.token_env": "Field required"}
    unknown = refused("/outputs", {**hook, "settings": {"url": url, "token_env": "T", "colour": 1}})
    assert "settings.colour" in unknown and "Extra inputs" in unknown["settings.colour"]
    not_subset = refused(
        "/outputs",
        {
            "output_id": unique_id("ads"),
            "partner": "ad-audiences",
            "accepted_identities": ["push_token"],
        },
    )
    assert "does not accept push_token" in not_subset["accepted_identities"]
    secret = "sk-" + uuid.uuid4().hex
    status, answer = call(
        api, "POST", "/outputs", {**hook, "settings": {"url": url, "token": secret}}
    )
    assert status == 422 and secret not in json.dumps(answer)
    assert (
        "token_env" in answer["detail"][0]["reason"] and answer["detail"][0]["field"] == "settings"
    )
    assert refused("/outputs", {"output_id": "Not An Id", "partner": "custom"}).keys() == {
        "output_id"
    }

    # A valid webhook output: its settings hold the name of the variable, never the token.
    status, created = call(
        api, "POST", "/outputs", {**hook, "settings": {"url": url, "token_env": "HOOK_TOKEN"}}
    )
    assert status == 201 and created["settings"]["token_env"] == "HOOK_TOKEN"
    assert (
        call(api, "POST", "/outputs", {**hook, "settings": {"url": url, "token_env": "T"}})[0]
        == 409
    )
    assert refused(f"/outputs/{hook['output_id']}", {"settings": {"url": url}}, "PATCH") == {
        "settings.token_env": "Field required"
    }

    ads = unique_id("ads")
    settings = {"base_url": "https://graph.example.com/v21.0", "audience_id": "1", "token_env": "A"}
    status, _ = call(
        api, "POST", "/outputs", {"output_id": ads, "partner": "ad-audiences", "settings": settings}
    )
    assert status == 201
    connection = {"connection_id": unique_id("c"), "audience_id": "aud", "output_id": ads,
                  "status": "active", "forwarded_attributes": ["ltv"]}  # fmt: skip
    assert "does not take attributes" in refused("/connections", connection)["forwarded_attributes"]
    unknown_output = refused("/connections", {**connection, "output_id": unique_id("none")})
    assert unknown_output == {"output_id": "no such output"}
    status, created = call(api, "POST", "/connections", {**connection, "forwarded_attributes": []})
    assert status == 201
    cid = connection["connection_id"]
    assert "forwarded_attributes" in refused(
        f"/connections/{cid}", {"forwarded_attributes": ["ltv"]}, "PATCH"
    )
    assert refused(f"/connections/{cid}", {"status": "paused"}, "PATCH").keys() == {"status"}
    assert call(api, "POST", "/connections", {**connection, "connection_id": unique_id("c"),
                                              "forwarded_attributes": []})[0] == 409  # fmt: skip
    assert call(api, "DELETE", f"/outputs/{ads}")[0] == 409, "it has a connection"
    assert call(api, "GET", f"/connections/{unique_id('none')}")[0] == 404
    assert call(api, "GET", f"/outputs/{unique_id('none')}")[0] == 404
    assert call(api, "DELETE", f"/connections/{cid}")[0] == 204
    assert call(api, "DELETE", f"/outputs/{ads}")[0] == 204
    assert call(api, "GET", f"/outputs/{ads}")[0] == 404

    # Nothing refused reached Kafka: the inline secret is on no config record.
    records = consume(worker.topic("forwarder-outputs"), expected=10**6, timeout=3)
    assert secret not in json.dumps([value for _, value, _ in records])


def test_writes_need_the_bearer_token(api: ControlApi) -> None:
    body = {"output_id": unique_id("x"), "partner": "custom", "accepted_identities": ["email"]}
    for token in (None, "wrong-token"):
        for method, path, payload in (
            ("POST", "/outputs", body),
            ("PATCH", "/outputs/anything", {"name": "n"}),
            ("DELETE", "/outputs/anything", None),
            ("POST", "/connections", {}),
            ("PATCH", "/connections/anything", {"status": "active"}),
            ("DELETE", "/connections/anything", None),
        ):
            status, answer = call(api, method, path, payload, token=token)
            assert status == 401, (method, path, answer)
            assert TOKEN not in json.dumps(answer)
    assert call(api, "GET", f"/outputs/{body['output_id']}")[0] == 404, "nothing was written"
    assert call(api, "GET", "/outputs", token=None)[0] == 200, "reads need no token"
    refused = cli(api, "outputs", "create", "--id", body["output_id"], "--partner", "custom",
                  "--identity", "email", token="wrong-token")  # fmt: skip
    assert refused.returncode == 1 and "HTTP 401" in refused.stderr


def raw_status(api: ControlApi, request: bytes) -> int:
    """Send bytes as they are (urllib would refuse a header that is not text)."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=15) as conn:
        conn.sendall(request)
        status_line = conn.makefile("rb").readline()
    return int(status_line.split()[1])


def test_api_edge_cases(api: ControlApi) -> None:
    # A token that is not UTF-8 is a wrong token, whatever bytes follow.
    for token in (b"\xff\xfe", TOKEN.encode() + b"\xff", b"\xc3\x28"):
        request = (
            b"DELETE /outputs/anything HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer "
            + token
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        assert raw_status(api, request) == 401

    # Numbers in the contract are finite: 1e400 would be stored as null.
    output_id = unique_id("finite")
    body = {"output_id": output_id, "partner": "webhook", "accepted_identities": ["email"],
            "settings": {"url": "https://hooks.example.com/x", "token_env": "T"}}  # fmt: skip
    raw = json.dumps(body).replace('"token_env"', '"rate_per_second": 1e400, "token_env"')
    request = urllib.request.Request(
        api.url + "/outputs", method="POST", data=raw.encode(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=15)
    assert refused.value.code == 422
    assert json.loads(refused.value.read())["detail"] == [
        {"field": "settings.rate_per_second", "reason": "Input should be a finite number"}
    ]
    assert call(api, "POST", "/outputs", body)[0] == 201

    # One id pattern for outputs and connections.
    for bad_id in ('c"1', "c 1", "c/1"):
        connection = {"connection_id": bad_id, "audience_id": "aud", "output_id": output_id,
                      "status": "inactive"}  # fmt: skip
        status, answer = call(api, "POST", "/connections", connection)
        assert (status, [p["field"] for p in answer["detail"]]) == (422, ["connection_id"])
        assert bad_id not in json.dumps(answer)

    # The CLI deletes an output.
    deleted = cli(api, "outputs", "delete", output_id)
    assert (deleted.returncode, deleted.stdout.strip()) == (0, f"deleted output {output_id}")
    assert call(api, "GET", f"/outputs/{output_id}")[0] == 404
