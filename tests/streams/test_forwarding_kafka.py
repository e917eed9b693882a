"""Core forwarding on the real broker, through a real `forwarder worker` process."""

from __future__ import annotations

import base64
import time
import urllib.request
import uuid
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from devtools.local import Worker, consume, produce


def unique_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def configure(
    worker: Worker, outputs: list[dict[str, Any]], connections: list[dict[str, Any]]
) -> None:
    """Publish config records and wait until the worker has applied them."""
    before = worker.health() or {"outputs": 0, "connections": 0}
    produce(worker.topic("forwarder-outputs"), [(o["output_id"], o) for o in outputs])
    produce(worker.topic("forwarder-connections"), [(c["connection_id"], c) for c in connections])
    worker.wait_ready(
        30,
        outputs=before["outputs"] + len(outputs),
        connections=before["connections"] + len(connections),
    )


def custom_output(output_id: str, accepted: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "output_id": output_id,
        "partner": "custom",
        "name": output_id,
        "accepted_identities": accepted,
        "supports_attributes": False,
        "settings": {},
        **extra,
    }


def connect(connection_id: str, audience: str, output_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "audience_id": audience,
        "output_id": output_id,
        "status": "active",
        "forwarded_attributes": [],
        **extra,
    }


def profile(mpid: Any, identities: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "profile_update",
        "mpid": mpid,
        "timestamp_ms": 1764400000000,
        "identities": identities,
        "attributes": {},
        **extra,
    }


def member(
    mpid: str, audience: str, action: str = "add", ts: int = 1764400000000
) -> dict[str, Any]:
    return {
        "mpid": mpid,
        "audience_id": audience,
        "audience_name": "High LTV",
        "action": action,
        "timestamp_ms": ts,
    }


def test_seed_example_100_idfas_to_a_and_65_emails_to_b(worker: Worker) -> None:
    audience, a, b = unique_id("aud"), unique_id("partner-a"), unique_id("partner-b")
    configure(
        worker,
        [custom_output(a, ["ios_idfa", "android_aaid"]), custom_output(b, ["email"])],
        [connect(unique_id("c"), audience, a), connect(unique_id("c"), audience, b)],
    )
    mpids = [f"{audience}-{n}" for n in range(100)]
    # Half of the memberships arrive before their profile, half after.
    produce(worker.topic("audience-memberships"), [(m, member(m, audience)) for m in mpids[:50]])
    profiles = []
    for n, mpid in enumerate(mpids):
        identities: dict[str, Any] = {"ios_idfa": f"IDFA-{n}"}
        if n < 65:
            identities["email"] = f"user{n}@example.com"
        if n % 4 == 0:
            identities["android_aaid"] = f"GAID-{n}"
        profiles.append((mpid, profile(mpid, identities)))
    produce(worker.topic("profile-updates"), profiles)
    produce(worker.topic("audience-memberships"), [(m, member(m, audience)) for m in mpids[50:]])

    to_a = consume(worker.topic(f"forward-{a}"), expected=100)
    to_b = consume(worker.topic(f"forward-{b}"), expected=65)
    assert len(to_a) == 100, worker.log_tail()
    assert len(to_b) == 65
    assert {v["mpid"] for _, v, _ in to_a} == set(mpids)
    assert all(k == v["mpid"] for k, v, _ in to_a + to_b), "outbound records are keyed by mpid"
    # Partitioned as a keyed record of any Kafka producer, on every output.
    partitions = list(range(worker.partitions))
    assert all(
        p == DefaultPartitioner()(str(k).encode(), partitions, partitions)
        for k, _, p in to_a + to_b
    )
    idfa = [i for _, v, _ in to_a for i in v["identities"] if i["type"] == "ios_idfa"]
    gaid = [i for _, v, _ in to_a for i in v["identities"] if i["type"] == "android_aaid"]
    assert len(idfa) == 100 and len(gaid) == 25
    assert {i["type"] for _, v, _ in to_b for i in v["identities"]} == {"email"}
    assert {v["mpid"] for _, v, _ in to_b} == set(mpids[:65])
    first = to_a[0][1]
    assert first["action"] == "add" and first["audience_id"] == audience
    assert first["audience_name"] == "High LTV" and first["partner"] == "custom"
    assert first["source"]["topic"] in {
        worker.topic("profile-updates"),
        worker.topic("audience-memberships"),
    }
    assert len({v["record_id"] for _, v, _ in to_a}) == 100
    # What ops dashboards read: the counts this run produced, and latency observations.
    assert worker.metric("forwarder_records_forwarded_total", output_id=a, action="add") == 100
    assert worker.metric("forwarder_records_forwarded_total", output_id=b, action="add") == 65
    assert worker.metric("forwarder_processing_latency_seconds_count") >= 1


def test_attributes_only_listed_and_only_where_supported(worker: Worker) -> None:
    audience, crm, ads = unique_id("aud"), unique_id("crm"), unique_id("ads")
    configure(
        worker,
        [
            {"output_id": crm, "partner": "email-crm", "name": "CRM", "settings": {}},
            {"output_id": ads, "partner": "ad-audiences", "name": "Ads", "settings": {}},
        ],
        [
            connect(unique_id("c"), audience, crm, forwarded_attributes=["ltv"]),
            connect(unique_id("c"), audience, ads, forwarded_attributes=["ltv"]),
        ],
    )
    mpid = unique_id("p")
    produce(
        worker.topic("profile-updates"),
        [
            (
                mpid,
                profile(
                    mpid,
                    {"email": "a@example.com", "ios_idfa": "IDFA"},
                    attributes={"ltv": 120.5, "tier": "gold"},
                ),
            )
        ],
    )
    produce(worker.topic("audience-memberships"), [(mpid, member(mpid, audience))])
    [(_, to_crm, _)] = consume(worker.topic(f"forward-{crm}"), expected=1)
    [(_, to_ads, _)] = consume(worker.topic(f"forward-{ads}"), expected=1)
    assert to_crm["attributes"] == {"ltv": 120.5}
    assert [i["type"] for i in to_crm["identities"]] == ["email"]
    assert to_ads["attributes"] == {}
    assert sorted(i["type"] for i in to_ads["identities"]) == ["email", "ios_idfa"]
    dropped = worker.metric(
        "forwarder_records_dropped_total", output_id=ads, reason="attributes_unsupported"
    )
    assert dropped >= 1


def test_inactive_connection_forwards_nothing(worker: Worker) -> None:
    audience, out = unique_id("aud"), unique_id("out")
    configure(
        worker,
        [custom_output(out, ["email"])],
        [connect(unique_id("c"), audience, out, status="inactive")],
    )
    mpid = unique_id("p")
    produce(worker.topic("profile-updates"), [(mpid, profile(mpid, {"email": "a@x.com"}))])
    produce(worker.topic("audience-memberships"), [(mpid, member(mpid, audience))])
    assert consume(worker.topic(f"forward-{out}"), expected=1, timeout=6) == []


def test_integer_mpid_becomes_a_string_and_adds_go_once(worker: Worker) -> None:
    audience, out = unique_id("aud"), unique_id("out")
    configure(worker, [custom_output(out, ["email"])], [connect(unique_id("c"), audience, out)])
    number = uuid.uuid4().int % 10**12
    mpid = str(number)
    produce(worker.topic("audience-memberships"), [(mpid, member(mpid, audience))])
    produce(
        worker.topic("profile-updates"),
        [
            (mpid, profile(number, {"email": "a@x.com"})),
            (mpid, profile(number, {"email": "a@x.com"}, attributes={"x": 1})),
        ],
    )
    produce(worker.topic("audience-memberships"), [(mpid, member(mpid, audience))])
    records = consume(worker.topic(f"forward-{out}"), expected=1, settle=3)
    assert [(k, v["mpid"], v["action"]) for k, v, _ in records] == [(mpid, mpid, "add")]


def test_bad_input_goes_to_dead_letters_and_good_records_around_it_still_flow(
    worker: Worker,
) -> None:
    audience, out = unique_id("aud"), unique_id("out")
    configure(worker, [custom_output(out, ["email"])], [connect(unique_id("c"), audience, out)])
    good = [unique_id("good") for _ in range(3)]
    bad_profiles: list[tuple[Any, Any]] = [
        ("m1", b"{not json"),
        ("m2", {"type": "profile_update", "timestamp_ms": 1}),  # missing mpid
        ("m3", profile("m3", {}, timestamp_ms="yesterday")),  # wrong type
        ("m4", profile("m4", {"fax": "123"})),  # unknown identity type
        ("m5", b"\xff\xfe\x00binary"),  # not UTF-8
        ("other", profile("m6", {"email": "x@y.z"})),  # key is not the mpid
    ]
    bad_memberships: list[tuple[Any, Any]] = [
        ("m7", {**member("m7", audience), "action": "upsert"}),  # unknown action
    ]
    produce(
        worker.topic("profile-updates"),
        [(good[0], profile(good[0], {"email": "0@x.com"}))]
        + bad_profiles
        + [(g, profile(g, {"email": f"{g}@x.com"})) for g in good[1:]],
    )
    produce(
        worker.topic("audience-memberships"),
        bad_memberships + [(g, member(g, audience)) for g in good],
    )
    bad_output = custom_output(unique_id("bad"), ["email"], partner="no-such-partner")
    bad_output["settings"] = {"api_key": "s3cr3t-value"}
    produce(
        worker.topic("forwarder-outputs"),
        [
            (bad_output["output_id"], bad_output),
            ("Bad_Id", custom_output("Bad_Id", ["email"])),
        ],
    )
    produce(
        worker.topic("forwarder-connections"),
        [("c-x", {"connection_id": "c-x", "audience_id": audience, "output_id": out})],
    )

    delivered = consume(worker.topic(f"forward-{out}"), expected=3)
    assert sorted(v["mpid"] for _, v, _ in delivered) == sorted(good)

    letters = [v for _, v, _ in consume(worker.topic("forwarder-dead-letters"), expected=10)]
    by_key = {letter["key"]: letter for letter in letters}
    assert by_key["m1"]["error"]["kind"] == "invalid_json"
    assert by_key["m2"]["error"]["kind"] == "missing_field"
    assert "mpid" in by_key["m2"]["error"]["message"]
    assert by_key["m3"]["error"]["kind"] == "wrong_type"
    assert by_key["m4"]["error"]["kind"] == "unknown_value"
    assert by_key["m5"]["error"]["kind"] == "invalid_json"
    assert base64.b64decode(by_key["m5"]["value"]) == b"\xff\xfe\x00binary"
    assert by_key["m5"]["value_encoding"] == "base64"
    assert by_key["other"]["error"]["kind"] == "key_mismatch"
    assert by_key["m7"]["error"]["kind"] == "unknown_value"
    assert by_key[bad_output["output_id"]]["error"]["kind"] == "invalid_config"
    assert by_key["Bad_Id"]["error"]["kind"] in {"invalid_value", "key_mismatch"}
    assert by_key["c-x"]["error"]["kind"] == "missing_field"
    assert "s3cr3t-value" not in str(letters)
    source = by_key["m1"]["source"]
    assert source["topic"] == worker.topic("profile-updates")
    assert isinstance(source["partition"], int) and isinstance(source["offset"], int)
    assert by_key["m1"]["value"] == "{not json"


def test_readiness_and_gauges_are_served(worker: Worker) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}/readyz", timeout=5) as ready:
        assert ready.status == 200
    deadline = time.monotonic() + 15
    while "forwarder_consumer_lag{" not in worker.metrics() and time.monotonic() < deadline:
        time.sleep(0.5)
    exposition = worker.metrics()
    assert 'forwarder_consumer_lag{partition="0",topic="' + worker.topic("profile-updates") in (
        exposition
    )
    assert "forwarder_table_profiles " in exposition
