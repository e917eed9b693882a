"""Membership lifecycle on the real broker: initial sync, exits, disconnects, erasure, consent."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from devtools.local import Worker, consume, produce
from tests.streams.test_forwarding_kafka import (
    configure,
    connect,
    custom_output,
    member,
    profile,
    unique_id,
)

T0 = 1764400000000


def actions(records: list[tuple[str | None, dict[str, Any], int]]) -> list[tuple[str, str]]:
    return [(v["mpid"], v["action"]) for _, v, _ in records]


def test_initial_sync_with_two_workers_while_events_keep_arriving(tmp_path: Path) -> None:
    name = f"sync-{uuid.uuid4().hex[:8]}"
    workers = [
        Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / f"w{n}", partitions=4)
        for n in range(2)
    ]
    audience, out = "aud-s", "out-s"
    existing = [f"m{n}" for n in range(300)]
    for running in workers:
        running.start()
    try:
        workers[0].wait_ready(60)
        # Members (and non-members) are known before any connection exists.
        produce(
            workers[0].topic("profile-updates"),
            [(m, profile(m, {"email": f"{m}@x.com"})) for m in existing]
            + [("outsider", profile("outsider", {"email": "o@x.com"}))],
        )
        produce(
            workers[0].topic("audience-memberships"), [(m, member(m, audience)) for m in existing]
        )
        produce(workers[0].topic("forwarder-outputs"), [(out, custom_output(out, ["email"]))])
        workers[0].wait_ready(30, outputs=1)

        # New members keep arriving while the connection is created and synced.
        newcomers = [f"n{n}" for n in range(100)]

        def publish_newcomers() -> None:
            for start in range(0, len(newcomers), 10):
                batch = newcomers[start : start + 10]
                produce(
                    workers[1].topic("profile-updates"),
                    [(m, profile(m, {"email": f"{m}@x"})) for m in batch],
                )
                produce(
                    workers[1].topic("audience-memberships"),
                    [(m, member(m, audience)) for m in batch],
                )

        publisher = threading.Thread(target=publish_newcomers)
        publisher.start()
        produce(workers[0].topic("forwarder-connections"), [("c-s", connect("c-s", audience, out))])
        publisher.join()

        expected = set(existing) | set(newcomers)
        records = consume(workers[0].topic(f"forward-{out}"), expected=len(expected), settle=3)
        counts = Counter(actions(records))
        assert {mpid for mpid, _ in counts} == expected, "every member sent, no outsider"
        assert set(counts.values()) == {1}, "no profile added twice"
        assert {action for _, action in counts} == {"add"}
    finally:
        for running in workers:
            running.stop()


def test_exit_identity_change_and_attribute_change(worker: Worker) -> None:
    audience, out = unique_id("aud"), unique_id("crm")
    configure(
        worker,
        [custom_output(out, ["email"], supports_attributes=True)],
        [connect(unique_id("c"), audience, out, forwarded_attributes=["ltv"])],
    )
    mpid = unique_id("p")
    # Order across the two input topics is not defined, so each step waits for its records.
    steps: list[tuple[str, dict[str, Any]]] = [
        ("audience-memberships", member(mpid, audience)),
        ("profile-updates", profile(mpid, {"email": "old@x.com"}, attributes={"ltv": 1})),
        ("profile-updates", profile(mpid, {"email": "new@x.com", "push_token": "t"})),
        ("profile-updates", profile(mpid, {"push_token": "t2"}, attributes={"ltv": 2, "x": 1})),
        # an attribute the connection does not forward: nothing goes; one it does: an update
        ("profile-updates", profile(mpid, {}, attributes={"x": 2})),
        ("profile-updates", profile(mpid, {}, attributes={"ltv": 3, "x": 3})),
        ("audience-memberships", member(mpid, audience, "remove", T0 + 1)),
    ]
    expected_total = [0, 1, 3, 4, 4, 5, 6]
    records: list[tuple[str | None, dict[str, Any], int]] = []
    for (topic, value), total in zip(steps, expected_total, strict=True):
        produce(worker.topic(topic), [(mpid, value)])
        records = consume(worker.topic(f"forward-{out}"), expected=total, settle=0.5)
        assert len(records) == total
    assert [
        (v["action"], [i["value"] for i in v["identities"]], v["attributes"]) for _, v, _ in records
    ] == [
        ("add", ["old@x.com"], {"ltv": 1}),
        ("remove", ["old@x.com"], {}),
        ("add", ["new@x.com"], {"ltv": 1}),
        ("attribute_update", ["new@x.com"], {"ltv": 2}),
        ("attribute_update", ["new@x.com"], {"ltv": 3}),
        ("remove", ["new@x.com"], {}),
    ]


def test_deactivating_with_on_disconnect_remove_removes_every_profile_sent(worker: Worker) -> None:
    audience, out, cid = unique_id("aud"), unique_id("out"), unique_id("c")
    configure(
        worker,
        [custom_output(out, ["email"])],
        [connect(cid, audience, out, on_disconnect="remove")],
    )
    mpids = [unique_id("p") for _ in range(5)]
    produce(worker.topic("profile-updates"), [(m, profile(m, {"email": f"{m}@x"})) for m in mpids])
    produce(worker.topic("audience-memberships"), [(m, member(m, audience)) for m in mpids])
    assert len(consume(worker.topic(f"forward-{out}"), expected=5)) == 5
    produce(
        worker.topic("forwarder-connections"),
        [(cid, connect(cid, audience, out, status="inactive", on_disconnect="remove"))],
    )
    records = consume(worker.topic(f"forward-{out}"), expected=10, settle=2)
    assert Counter(action for _, action in actions(records)) == {"add": 5, "remove": 5}
    # Stopped at once: a new member is not sent.
    late = unique_id("p")
    produce(worker.topic("profile-updates"), [(late, profile(late, {"email": "l@x"}))])
    produce(worker.topic("audience-memberships"), [(late, member(late, audience))])
    assert len(consume(worker.topic(f"forward-{out}"), expected=11, timeout=5)) == 10


def test_erasure_removes_reports_and_forgets_the_profile(worker: Worker) -> None:
    audience, out = unique_id("aud"), unique_id("out")
    configure(worker, [custom_output(out, ["email"])], [connect(unique_id("c"), audience, out)])
    mpid, request = unique_id("p"), unique_id("req")
    produce(worker.topic("profile-updates"), [(mpid, profile(mpid, {"email": "e@x.com"}))])
    produce(worker.topic("audience-memberships"), [(mpid, member(mpid, audience))])
    erasure = {"type": "profile_erasure", "mpid": mpid, "request_id": request, "timestamp_ms": T0}
    produce(worker.topic("profile-updates"), [(mpid, erasure)])
    # A later update starts a new profile: no membership, nothing sent.
    produce(worker.topic("profile-updates"), [(mpid, profile(mpid, {"email": "e@x.com"}))])
    records = consume(worker.topic(f"forward-{out}"), expected=2, settle=2)
    assert actions(records) == [(mpid, "add"), (mpid, "remove")]
    statuses = [
        v for _, v, _ in consume(worker.topic("forwarder-erasure-status"), expected=1, settle=2)
    ]
    mine = {s["output_id"]: s["status"] for s in statuses if s["request_id"] == request}
    assert mine[out] == "sent"
    assert set(mine.values()) <= {"sent", "skipped"} and len(mine) >= 1


def test_consent_rule_blocks_then_grant_adds_and_withdrawal_removes(worker: Worker) -> None:
    audience, out = unique_id("aud"), unique_id("out")
    rule = {"require_gdpr": ["marketing"], "block_ccpa_opt_out": True}
    configure(
        worker,
        [custom_output(out, ["email"])],
        [connect(unique_id("c"), audience, out, consent=rule)],
    )
    mpid = unique_id("p")

    def consent(ts: int, marketing: bool) -> dict[str, Any]:
        return profile(
            mpid,
            {},
            timestamp_ms=ts,
            consent={"gdpr": {"marketing": {"consented": marketing, "timestamp_ms": ts}}},
        )

    produce(worker.topic("profile-updates"), [(mpid, profile(mpid, {"email": "c@x.com"}))])
    produce(worker.topic("audience-memberships"), [(mpid, member(mpid, audience))])
    produce(
        worker.topic("profile-updates"),
        [(mpid, consent(T0 + 1, True)), (mpid, consent(T0 + 2, False))],
    )
    records = consume(worker.topic(f"forward-{out}"), expected=2, settle=2)
    assert actions(records) == [(mpid, "add"), (mpid, "remove")]
    assert worker.metric("forwarder_records_dropped_total", output_id=out, reason="consent") >= 1


def test_duplicate_and_stale_membership_events_change_nothing(worker: Worker) -> None:
    audience, out = unique_id("aud"), unique_id("out")
    configure(worker, [custom_output(out, ["email"])], [connect(unique_id("c"), audience, out)])
    mpid = unique_id("p")
    produce(worker.topic("profile-updates"), [(mpid, profile(mpid, {"email": "d@x.com"}))])
    add = member(mpid, audience, "add", T0 + 10)
    stale_remove = member(mpid, audience, "remove", T0 + 5)
    produce(worker.topic("audience-memberships"), [(mpid, add), (mpid, add), (mpid, stale_remove)])
    records = consume(worker.topic(f"forward-{out}"), expected=1, settle=3)
    assert actions(records) == [(mpid, "add")]
    assert worker.metric("forwarder_records_dropped_total", reason="stale_event") >= 1
