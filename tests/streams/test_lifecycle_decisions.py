"""Membership lifecycle decisions on plain data: disconnects, erasure, consent, sync."""

from __future__ import annotations

from typing import Any

from schemas.plain import parse_profile_record
from schemas.records import ConnectionConfig, ErasureStatus
from streams.forwarding import Source, decide, reconcile
from tests.streams.test_forwarding import (
    Replay,
    connection,
    contract_records,
    membership,
    output,
    routing_of,
    update,
)


def consent_update(mpid: str, ts: int, marketing: bool | None = None, opt_out: Any = None) -> Any:
    consent: dict[str, Any] = {}
    if marketing is not None:
        consent["gdpr"] = {"marketing": {"consented": marketing, "timestamp_ms": ts}}
    if opt_out is not None:
        consent["ccpa"] = {"data_sale_opt_out": opt_out, "timestamp_ms": ts}
    return update(mpid, ts=ts, consent=consent)


def with_connection(replay: Replay, **changes: Any) -> ConnectionConfig:
    current = replay.routing.connections["c-b"]
    changed = ConnectionConfig.model_validate({**current.model_dump(), **changes})
    replay.routing.put_connection(changed)
    return changed


def sync(replay: Replay, mpid: str) -> list[Any]:
    decision = reconcile(
        replay.states[mpid], replay.routing, Source(topic="sync", partition=0, offset=0), 5
    )
    assert decision.state is not None
    replay.states[mpid] = decision.state
    return contract_records(decision)


def email_replay() -> Replay:
    replay = Replay(routing_of([output("partner-b", ["email"])], [connection("c-b", "partner-b")]))
    replay.feed(membership("1", "add"), update("1", identities={"email": "a@x"}))
    return replay


def test_deactivating_with_keep_sends_nothing_and_reactivating_adds_again() -> None:
    replay = email_replay()
    with_connection(replay, status="inactive")
    assert sync(replay, "1") == []
    assert replay.feed(update("1", ts=2, identities={"email": "b@x"})) == []
    with_connection(replay, status="active")
    assert [(r.action, r.identities[0].value) for r in sync(replay, "1")] == [("add", "b@x")]


def test_deactivating_with_remove_sends_removes_with_what_was_sent() -> None:
    replay = email_replay()
    with_connection(replay, status="inactive", on_disconnect="remove")
    assert [(r.action, r.identities[0].value) for r in sync(replay, "1")] == [("remove", "a@x")]
    assert sync(replay, "1") == []


def test_deleting_a_connection_or_its_output_stops_it_with_its_on_disconnect() -> None:
    replay = email_replay()
    with_connection(replay, on_disconnect="remove")
    replay.routing.delete_connection("c-b")
    assert [r.action for r in sync(replay, "1")] == ["remove"]
    assert replay.feed(update("1", ts=3, identities={"email": "c@x"})) == []

    replay = email_replay()
    replay.routing.delete_output("partner-b")
    assert sync(replay, "1") == []  # on_disconnect "keep" (the default)
    assert replay.states["1"]["sent"] == {}


def test_erasure_removes_from_every_holder_reports_per_output_and_forgets() -> None:
    routing = routing_of(
        [output("partner-b", ["email"]), output("partner-c", ["push_token"])],
        [connection("c-b", "partner-b")],
    )
    replay = Replay(routing)
    replay.feed(membership("1", "add"), update("1", identities={"email": "a@x"}))
    erasure = parse_profile_record(
        b'{"type": "profile_erasure", "mpid": "1", "request_id": "r-1", "timestamp_ms": 9}'
    )
    decision = decide(
        replay.states["1"], erasure, routing, Source(topic="t", partition=0, offset=9)
    )
    assert decision.state is None
    assert [(r.output_id, r.action, r.identities[0].value) for r in contract_records(decision)] == [
        ("partner-b", "remove", "a@x")
    ]
    statuses = [ErasureStatus.model_validate_json(s.value) for s in decision.erasure_statuses]
    assert [(s.output_id, s.status, s.request_id) for s in statuses] == [
        ("partner-b", "sent", "r-1"),
        ("partner-c", "skipped", "r-1"),
    ]


def test_consent_rule_blocks_withdrawal_removes_and_grant_adds() -> None:
    replay = email_replay()
    with_connection(replay, consent={"require_gdpr": ["marketing"], "block_ccpa_opt_out": True})
    assert [r.action for r in sync(replay, "1")] == ["remove"]  # no consent given yet
    assert replay.feed(update("1", ts=2, identities={"email": "b@x"})) == []
    assert "consent" in replay.drops
    granted = replay.feed(consent_update("1", ts=2, marketing=True))
    assert [r.action for r in granted] == ["add"]
    assert [r.action for r in replay.feed(consent_update("1", ts=3, opt_out=True))] == ["remove"]
    assert replay.feed(consent_update("1", ts=4, opt_out=False)) != []
    # An older consent record does not override a newer one.
    assert replay.feed(consent_update("1", ts=1, marketing=False)) == []
    assert [r.action for r in replay.feed(consent_update("1", ts=5, marketing=False))] == ["remove"]
    assert "consent" in replay.drops


def test_attribute_change_sends_only_changed_forwarded_attributes() -> None:
    routing = routing_of(
        [output("crm", ["email"], supports_attributes=True)],
        [connection("c-crm", "crm", forwarded=["ltv", "tier"])],
    )
    replay = Replay(routing)
    replay.feed(
        membership("1", "add"),
        update("1", identities={"email": "a@x"}, attributes={"ltv": 1, "tier": "g", "x": 0}),
    )
    changed = replay.feed(update("1", ts=2, attributes={"ltv": 2, "x": 5}))
    assert [(r.action, r.attributes) for r in changed] == [("attribute_update", {"ltv": 2})]
    assert replay.feed(update("1", ts=3, attributes={"x": 6})) == []
    gone = replay.feed(update("1", ts=4, attributes={"tier": None}))
    assert [(r.action, r.attributes) for r in gone] == [("attribute_update", {"tier": None})]
