"""Each adapter against a partner API on 127.0.0.1, through the sink runner on the real broker."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.support.fake_partners import FakePartner
from tests.support.sink_records import outbound_value
from tests.support.sinks import (
    FAST,
    check_order,
    configure,
    dead_letters,
    running_sinks,
    wait_processed,
)

SECRET = "tok-9f8e7d6c5b4a-do-not-log"
ENV = {"PARTNER_TOKEN": SECRET}
HASHED = re.compile(r"[0-9a-f]{64}")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def output(output_id: str, partner: str, settings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"output_id": output_id, "partner": partner, "settings": {**FAST, **settings}, **extra}


async def scrape(port: int, path: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return await response.text()


def assert_secret_absent(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


async def test_webhook_delivers_through_429_500_timeouts_and_refusals(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    partner = FakePartner(
        "webhook", SECRET, reject={"m3-43"}, faults=["429", "500", "slow", "ok", "400"]
    )
    await partner.start()
    settings = {
        "url": partner.base_url + "/hook",
        "token_env": "PARTNER_TOKEN",
        "batch_max_records": 10,
    }
    out = output("hook", "webhook", settings, accepted_identities=["email"])
    # Eight profiles, each added, removed and added again, interleaved.
    values = [
        outbound_value(f"m{i % 8}", ("add", "remove")[(i // 8) % 2], seq=i, output_id="hook")
        for i in range(48)
    ]
    await configure(prefix, [out], {"hook": values})

    async with running_sinks(prefix, ["hook"], ENV) as runner:
        await wait_processed(prefix, "hook")
        metrics = await scrape(runner.sink_settings.web_port, "/metrics")
        health = orjson.loads(await scrape(runner.sink_settings.web_port, "/healthz"))
    await partner.stop()

    delivered = {applied.key for applied in partner.applied}
    letters = await dead_letters(prefix, 1)
    refused = {orjson.loads(letter["value"])["record_id"]: letter for letter in letters}
    assert partner.problems == []
    assert delivered | set(refused) == {v["record_id"] for v in values}  # none lost
    assert refused["m3-43"]["error"] == {
        "kind": "partner_rejected_record",
        "message": "unknown user",
    }
    batch_refused = [letter for letter in letters if letter["error"]["kind"] == "partner_rejected"]
    assert batch_refused and all(
        letter["error"]["message"] == 'HTTP 400: {"message": "Invalid request"}'
        for letter in batch_refused
    )
    assert letters[0]["source"]["topic"] == f"{prefix}forward-hook"
    check_order(
        [(v["mpid"], v["record_id"], v["action"]) for v in values],
        [(applied.key, applied.action) for applied in partner.applied],
    )
    assert 'sink_records_retried_total{output_id="hook"}' in metrics
    assert "sink_seconds_since_last_delivery" in metrics
    assert health["ready"] and health["outputs"]["hook"]["partitions"] == 2
    assert "retrying in" in caplog.text and "timed out" in caplog.text
    assert_secret_absent(caplog.text, metrics, orjson.dumps(letters).decode())


async def test_ad_audiences_hashes_splits_adds_and_removes_and_reads_row_errors(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    partner = FakePartner(
        "ad-audiences", SECRET, reject={sha("m2@example.com")}, faults=["throttle", "500"]
    )
    await partner.start()
    settings = {
        "base_url": partner.base_url + "/v21.0",
        "audience_id": "6000123",
        "token_env": "PARTNER_TOKEN",
    }
    out = output("ads", "ad-audiences", settings)
    values = [
        outbound_value(
            f"m{i}",
            identities={"email": f" M{i}@Example.com", "ios_idfa": f"AB-{i}"},
            seq=i,
            output_id="ads",
            partner="ad-audiences",
        )
        for i in range(10)
    ]
    values += [
        outbound_value(f"m{i}", "remove", seq=10 + i, output_id="ads", partner="ad-audiences")
        for i in range(0, 10, 2)
    ]
    values.append(
        outbound_value("bad", identities={"email": "not-an-email"}, seq=99, output_id="ads")
    )
    await configure(prefix, [out], {"ads": values})

    async with running_sinks(prefix, ["ads"], ENV):
        await wait_processed(prefix, "ads")
    await partner.stop()

    letters = await dead_letters(prefix, 3)
    kinds = sorted((letter["key"], letter["error"]["kind"]) for letter in letters)
    assert kinds == [
        ("bad", "invalid_identity"),
        ("m2", "partner_rejected_record"),
        ("m2", "partner_rejected_record"),
    ]
    assert partner.problems == []
    applied = [(a.key, a.action) for a in partner.applied]
    for i in range(10):
        expected = {"add"} if i % 2 else {"add", "remove"}
        if i != 2:
            assert {action for key, action in applied if key == sha(f"m{i}@example.com")} == (
                expected
            )
    sent = [(v["mpid"], sha(f"{v['mpid']}@example.com"), v["action"]) for v in values[:-1]]
    check_order(sent, [(key, action) for key, action in applied if HASHED.fullmatch(key)])
    assert "code 17" in caplog.text
    assert_secret_absent(caplog.text, orjson.dumps(letters).decode())


async def test_email_crm_sends_at_most_75_objects_and_reads_per_object_errors(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    partner = FakePartner("email-crm", SECRET, reject={"cust-5"}, faults=["429"])
    await partner.start()
    out = output(
        "crm",
        "email-crm",
        {"base_url": partner.base_url, "api_key_env": "PARTNER_TOKEN"},
        supports_attributes=True,
    )
    values = [
        outbound_value(
            f"m{i}",
            identities={"customer_id": f"cust-{i}"},
            attributes={"tier": "gold"},
            seq=i,
            output_id="crm",
            partner="email-crm",
        )
        for i in range(160)
    ]
    values += [
        outbound_value(
            f"m{i}", "remove", {"customer_id": f"cust-{i}"}, seq=200 + i, output_id="crm"
        )
        for i in range(0, 160, 10)
    ]
    await configure(prefix, [out], {"crm": values})

    async with running_sinks(prefix, ["crm"], ENV):
        await wait_processed(prefix, "crm")
    await partner.stop()

    letters = await dead_letters(prefix, 1)
    assert [(x["key"], x["error"]["message"]) for x in letters] == [("m5", "Invalid user")]
    assert partner.problems == []  # includes "at most 75 objects a request"
    assert partner.requests >= 4
    applied = [(a.key, a.action) for a in partner.applied]
    assert {key for key, _ in applied} == {f"cust-{i}" for i in range(160)} - {"cust-5"}
    check_order([(v["mpid"], v["identities"][0]["value"], v["action"]) for v in values], applied)
    assert_secret_absent(caplog.text, orjson.dumps(letters).decode())


async def test_jsonl_outputs_in_one_process_rotate_files(prefix: str, tmp_path: Path) -> None:
    outputs, records = [], {}
    for name in ("lake-a", "lake-b"):
        directory = tmp_path / name
        outputs.append(
            output(
                name,
                "jsonl",
                {"directory": str(directory), "max_file_bytes": 4096},
                accepted_identities=["email"],
            )
        )
        records[name] = [outbound_value(f"m{i % 7}", seq=i, output_id=name) for i in range(60)]
    await configure(prefix, outputs, records)

    async with running_sinks(prefix, ["lake-a", "lake-b"], {}):
        for name in records:
            await wait_processed(prefix, name)

    for name, values in records.items():
        files = sorted((tmp_path / name).iterdir())
        assert len(files) > 2 and all(f.suffix == ".jsonl" for f in files)  # rotated, finished
        lines = [orjson.loads(line) for f in files for line in f.read_bytes().splitlines()]
        assert sorted(line["record_id"] for line in lines) == sorted(v["record_id"] for v in values)
