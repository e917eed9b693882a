"""Sync marks change when states are written, never what is sent or what a state says.

Differential: the same random histories (profile updates, memberships, erasures, config
changes with their syncs, in batches) run through processors whose syncs write every state
(``sync_marks_max=0``, the behaviour before marks), mark each sync, or clear their marks after
one or two. Every record sent and every state as read must be the same. Plus the marks'
own rules: a replay sends nothing, marks survive a restart from the table, and numbers are
never reused.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.routing import Routing
from partners.catalog import resolve_output
from schemas.records import ConnectionConfig
from schemas.state import ProfileState
from streams.forwarding import Source
from streams.operator_reads import OperatorReads
from streams.partner_counts import PartnerCounts, load_counts
from streams.processor import InputRecord, counts_key, marks_key, state_key
from streams.sync_marks import SyncMarks, dump_marks, load_marks, new_mark
from tests.streams.test_forwarding import output
from tests.streams.test_processor import (
    MEMBERSHIPS,
    PROFILES,
    SYNC,
    Producer,
    Store,
    make,
    processed,
)

MPIDS = ["m1", "m2", "m3", "m4"]
AUDIENCES = ["aud-1", "aud-2"]
# connection id -> (output, audience)
CONNECTIONS = {"c-ads": ("ads", "aud-1"), "c-mail": ("mail", "aud-1"), "c-push": ("push", "aud-2")}


def base_routing() -> Routing:
    routing = Routing()
    routing.put_output(resolve_output(output("ads", ["ios_idfa", "android_aaid"])))
    routing.put_output(resolve_output(output("mail", ["email"], supports_attributes=True)))
    routing.put_output(resolve_output(output("push", ["ios_idfa"], supports_attributes=True)))
    for connection_id in ("c-ads", "c-mail"):
        routing.put_connection(config(connection_id, "active", "keep", [], None, 0))
    return routing


def config(
    connection_id: str,
    status: str,
    on_disconnect: str,
    forwarded: list[str],
    consent: dict[str, Any] | None,
    generation: int,
) -> ConnectionConfig:
    output_id, audience_id = CONNECTIONS[connection_id]
    return ConnectionConfig.model_validate(
        {
            "connection_id": connection_id,
            "audience_id": audience_id,
            "output_id": output_id,
            "status": status,
            "on_disconnect": on_disconnect,
            "forwarded_attributes": forwarded,
            "consent": consent,
            "resync": {"generation": generation, "requested_ms": 5} if generation else None,
        }
    )


mpids = st.sampled_from(MPIDS)
identities = st.fixed_dictionaries(
    {},
    optional={
        "ios_idfa": st.lists(st.sampled_from(["I1", "I2"]), max_size=2, unique=True),
        "android_aaid": st.lists(st.sampled_from(["G1"]), max_size=1),
        "email": st.lists(st.sampled_from(["a@x.io", "b@x.io"]), max_size=2, unique=True),
    },
)
attributes = st.fixed_dictionaries(
    {}, optional={"tier": st.sampled_from(["gold", "silver", None]), "age": st.integers(1, 3)}
)
consents = st.none() | st.builds(
    lambda given, ts: {"gdpr": {"marketing": {"consented": given, "timestamp_ms": ts}}},
    st.booleans(),
    st.integers(1, 50),
)
updates = st.tuples(st.just("update"), mpids, identities, attributes, consents)
memberships = st.tuples(
    st.just("member"), mpids, st.sampled_from(AUDIENCES), st.booleans(), st.integers(1, 50)
)
erasures = st.tuples(st.just("erase"), mpids)
connection_changes = st.tuples(
    st.just("connection"),
    st.sampled_from(sorted(CONNECTIONS)),
    st.sampled_from(["active", "active", "inactive", "preview", "deleted"]),
    st.sampled_from(["keep", "remove"]),
    st.sampled_from([[], ["tier"], ["tier", "age"]]),
    st.sampled_from([None, {"require_gdpr": ["marketing"]}]),
    st.integers(0, 2),
)
output_changes = st.tuples(st.just("output"), st.sampled_from(["ads", "mail", "push"]))
operations = st.one_of(updates, updates, memberships, memberships, erasures, connection_changes)
histories = st.lists(
    st.lists(st.one_of(operations, operations, operations, output_changes), min_size=1, max_size=6),
    min_size=1,
    max_size=12,
)


def batch_of(
    operations: list[tuple[Any, ...]], routing: Routing, offsets: Iterator[int]
) -> list[InputRecord]:
    """The batch's input records; its config changes applied to ``routing`` first, as the
    worker's config view applies them before their sync requests are read."""
    records = []
    for operation in operations:
        kind, offset = operation[0], next(offsets)
        if kind == "update":
            _, mpid, ids, attrs, consent = operation
            value: dict[str, Any] = {
                "type": "profile_update",
                "mpid": mpid,
                "timestamp_ms": offset,
                "identities": ids,
                "attributes": attrs,
            }
            if consent is not None:
                value["consent"] = consent
            records.append(_record(PROFILES, mpid, value, offset))
        elif kind == "member":
            _, mpid, audience_id, add, timestamp = operation
            value = {
                "mpid": mpid,
                "audience_id": audience_id,
                "action": "add" if add else "remove",
                "timestamp_ms": timestamp,
            }
            records.append(_record(MEMBERSHIPS, mpid, value, offset))
        elif kind == "erase":
            value = {
                "type": "profile_erasure",
                "mpid": operation[1],
                "timestamp_ms": offset,
                "request_id": f"r{offset}",
            }
            records.append(_record(PROFILES, operation[1], value, offset))
        elif kind == "connection":
            _, connection_id, status, on_disconnect, forwarded, consent, generation = operation
            if status == "deleted":
                routing.delete_connection(connection_id)
            else:
                change = config(
                    connection_id, status, on_disconnect, forwarded, consent, generation
                )
                routing.put_connection(change, epoch=offset)
            records.append(_sync_request("connection", connection_id, offset))
        else:
            routing.delete_output(operation[1])
            records.append(_sync_request("output", operation[1], offset))
    return records


def _record(topic: str, key: str, value: dict[str, Any], offset: int) -> InputRecord:
    return InputRecord(topic, 0, offset, key.encode(), orjson.dumps(value), 1.0)


def _sync_request(kind: str, id_: str, offset: int) -> InputRecord:
    request = {"kind": kind, "id": id_, "config": {"topic": "config", "partition": 0, "offset": 0}}
    return _record(SYNC, id_, request, offset)


async def run(
    history: list[list[tuple[Any, ...]]], marks_max: int, counts: PartnerCounts | None = None
) -> tuple[Producer, Store]:
    """The history through a new processor (keeping its partner counts in ``counts``)."""
    routing = base_routing()
    processor, producer, store = make(routing)
    if counts is not None:
        processor.partner_counts = counts
    processor.limits = dataclasses.replace(processor.limits, sync_marks_max=marks_max)
    offsets = iter(range(1, 10**6))
    # Every run sees the same clock: syncs stamp their records with it.
    ticks = iter(range(10**12, 10**13))
    processor.clock = lambda: next(ticks)
    for operations in history:
        await processed(processor, batch_of(operations, routing, offsets))
    return producer, store


def states(store: Store) -> dict[str, ProfileState | None]:
    """Each profile's state as read, without the number of the marks it includes."""
    found = {}
    for mpid in MPIDS:
        state = store.state(0, mpid)
        if state is not None:
            state.pop("m", None)
        found[mpid] = state
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories)
def test_marked_syncs_send_and_store_what_writing_syncs_do(
    history: list[list[tuple[Any, ...]]],
) -> None:
    outcomes = []
    for marks_max in (0, 1, 2, 16):
        producer, store = asyncio.run(run(history, marks_max))
        outcomes.append((marks_max, producer.sent, states(store)))
    (_, eager_sent, eager_states), *marked = outcomes
    for marks_max, sent, held in marked:
        assert sent == eager_sent, f"sync_marks_max={marks_max} sent other records"
        assert held == eager_states, f"sync_marks_max={marks_max} left other states"


def config_after(history: list[list[tuple[Any, ...]]]) -> Routing:
    """The config view after the history, read again from the config topics (a new worker's)."""
    routing, offsets = base_routing(), iter(range(1, 10**6))
    for operations in history:
        batch_of(operations, routing, offsets)
    return routing


def _members_history() -> list[list[tuple[Any, ...]]]:
    joined: list[tuple[Any, ...]] = []
    for mpid in MPIDS:
        joined.append(("update", mpid, {"ios_idfa": [f"I-{mpid}"]}, {"tier": "gold"}, None))
        joined.append(("member", mpid, "aud-2", True, 1))
    push = ("connection", "c-push", "active", "remove", ["tier"], None, 0)
    return [joined, [push]]


async def test_a_marked_sync_writes_one_mark_and_no_state() -> None:
    producer, store = await run(_members_history(), marks_max=16)
    marks = load_marks(store.get(0, marks_key(0)))
    assert [mark.connection_ids for mark in marks.marks] == [("c-push",)]
    assert len([r for r in producer.sent if r[0] == "forward-push"]) == len(MPIDS)
    # The stored states predate the mark; read, they hold what the sync sent.
    for mpid in MPIDS:
        raw = store.get(0, state_key(0, mpid))
        assert raw is not None and b"c-push" not in raw
        state = store.state(0, mpid)
        assert state is not None and "c-push" in state["sent"]


async def test_the_next_event_writes_the_state_with_the_mark_and_sends_only_its_change() -> None:
    history = _members_history()
    history.append([("update", "m1", {}, {"tier": "silver"}, None)])
    producer, store = await run(history, marks_max=16)
    push = [orjson.loads(value) for topic, _, value in producer.sent if topic == "forward-push"]
    assert [(r["mpid"], r["action"]) for r in push][-1] == ("m1", "attribute_update")
    assert [r["action"] for r in push].count("add") == len(MPIDS)  # no second add
    raw = store.get(0, state_key(0, "m1"))
    assert raw is not None and b"c-push" in raw
    assert orjson.loads(raw)["m"] == load_marks(store.get(0, marks_key(0))).seq


async def test_a_restarted_worker_reads_the_marks_from_the_table() -> None:
    history = _members_history()
    _, store = await run(history, marks_max=16)
    # A new processor on the same store (a restart, or the partition's next owner).
    routing = config_after(history)
    processor, after, _ = make(routing)
    processor.store = store
    removal = [("member", "m2", "aud-2", False, 9)]
    await processed(processor, batch_of(removal, routing, iter(range(100, 200))))
    removes = [orjson.loads(value) for topic, _, value in after.sent if topic == "forward-push"]
    # The remove carries what the marked sync sent, so the partner drops the profile.
    assert [(r["mpid"], r["action"], r["identities"]) for r in removes] == [
        ("m2", "remove", [{"type": "ios_idfa", "value": "I-m2", "encoding": "raw"}])
    ]


async def test_marks_at_their_limit_are_written_out_and_cleared_and_numbers_go_on() -> None:
    history = _members_history()
    history.append([("connection", "c-push", "active", "remove", [], None, 1)])
    history.append([("connection", "c-push", "active", "remove", [], None, 2)])
    _, store = await run(history, marks_max=2)
    marks = load_marks(store.get(0, marks_key(0)))
    assert marks.seq == 2 and marks.marks == ()
    for mpid in MPIDS:
        raw = store.get(0, state_key(0, mpid))
        assert raw is not None
        written = orjson.loads(raw)
        assert written["m"] == 2 and written["sent"]["c-push"]["generation"] == 2
    # The next marked sync takes the next number: states written under 2 are behind it.
    history.append([("connection", "c-push", "active", "remove", [], None, 3)])
    _, store = await run(history, marks_max=2)
    assert [mark.seq for mark in load_marks(store.get(0, marks_key(0))).marks] == [3]


def test_a_mark_holds_no_output_settings() -> None:
    """Output settings may hold secrets: a mark, written to the changelog, leaves them out."""
    routing = base_routing()
    secret = output("mail2", ["email"])
    resolved = dataclasses.replace(resolve_output(secret), settings={"api_key": "s3cr3t"})
    routing.put_output(resolved)
    connection = config("c-mail", "active", "keep", [], None, 0).model_copy(
        update={"output_id": "mail2"}
    )
    routing.put_connection(connection)
    mark = new_mark(1, routing, [connection], Source(SYNC, 0, 1), 5)
    raw = dump_marks(SyncMarks(1, (mark,)))
    assert b"s3cr3t" not in raw
    loaded = load_marks(raw).marks[0].routing.find_output("mail2")
    assert loaded is not None and loaded.accepted_identities == resolved.accepted_identities


@pytest.mark.parametrize("marks_max", [0, 16])
async def test_the_partner_counts_include_a_syncs_members(marks_max: int) -> None:
    history = _members_history()
    history.append([("member", "m2", "aud-2", False, 9)])
    # Counted from the start: the counts are stored with the writes (a restart reads them).
    counted = PartnerCounts()
    counted.begin(0)
    counted.establish(0, Counter())
    _, store = await run(history, marks_max, counted)
    stored = store.get(0, counts_key(0))
    assert stored is not None and load_counts(stored)[("push", "c-push")] == len(MPIDS) - 1
    # A count of the state under way all along: the writes' changes are kept apart for it.
    counting = PartnerCounts()
    counting.begin(0)
    await run(history, marks_max, counting)
    assert counting.establish(0, Counter())
    assert counting.snapshot()[("push", "c-push", "0")] == len(MPIDS) - 1


async def test_operator_reads_see_what_a_marked_sync_sent() -> None:
    history = _members_history()
    _, store = await run(history, marks_max=16)
    reads = OperatorReads(config_after(history), store, 1, lambda: True)
    status, answer = reads.explain({"connection_id": "c-push", "mpid": "m1"})
    assert (status, answer["verdict"]) == (200, "at_partner")
    status, page = await reads.members({"connection_id": "c-push", "partition": "0"})
    assert status == 200 and sorted(m["mpid"] for m in page["members"]) == MPIDS
    counts = PartnerCounts()
    assert await reads.count_held(0, counts)
    assert counts.snapshot()[("push", "c-push", "0")] == len(MPIDS)
