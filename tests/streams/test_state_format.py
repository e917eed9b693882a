"""The profiles table's values: the stored format, and the state that earlier versions stored."""

from __future__ import annotations

import tracemalloc
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.routing import Routing
from schemas.plain import InputEventData, parse_profile_record
from schemas.state import (
    SPLIT_FROM,
    STATE_VERSION,
    ProfileState,
    dump_profile,
    load_profile,
    sent_entry,
)
from streams.forwarding import Source, decide, new_profile, reconcile
from tests.streams.test_forwarding import (
    Replay,
    connection,
    contract_records,
    membership,
    membership_events,
    output,
    profile_events,
    reconfigured,
    routing_of,
    update,
)

# Written by the pydantic ProfileState of earlier versions (model_dump_json), byte for byte.
VERSION_1 = (
    b'{"mpid":"7","identities":{"push_token":["t1","t2"],"email":["a@x"]},'
    b'"attributes":{"ltv":3,"big":1180591620717411303424},'
    b'"memberships":{"aud-42":{"member":true,"audience_name":"High LTV","timestamp_ms":5}},'
    b'"sent":{"c-b":{"output_id":"partner-b","audience_id":"aud-42",'
    b'"identities":[{"type":"email","value":"a@x","encoding":"raw"}],"attributes":{"ltv":3}},'
    b'"c-p":{"output_id":"partner-p","audience_id":"aud-42","identities":'
    b'[{"type":"push_token","value":"t1","encoding":"raw"},'
    b'{"type":"push_token","value":"t2","encoding":"raw"}],"attributes":{}}},'
    b'"consent":{"gdpr":{"marketing":{"consented":true,"timestamp_ms":4}},"ccpa":null}}'
)


def test_state_stored_by_earlier_versions_loads_as_the_same_profile() -> None:
    state = load_profile(VERSION_1)
    assert state == {
        "v": STATE_VERSION,
        "mpid": "7",
        "identities": {"email": ["a@x"], "push_token": ["t1", "t2"]},
        "attributes": {"ltv": 3, "big": 2**70},
        "memberships": {"aud-42": {"member": True, "audience_name": "High LTV", "timestamp_ms": 5}},
        "sent": {
            "c-b": {
                "output_id": "partner-b",
                "audience_id": "aud-42",
                "identities": {"email": ["a@x"]},
                "attributes": {"ltv": 3},
            },
            "c-p": {
                "output_id": "partner-p",
                "audience_id": "aud-42",
                "identities": {"push_token": ["t1", "t2"]},
                "attributes": {},
            },
        },
        "consent": {"gdpr": {"marketing": {"consented": True, "timestamp_ms": 4}}, "ccpa": None},
    }
    assert load_profile(dump_profile(state)) == state


def test_a_profile_stored_by_earlier_versions_is_removed_with_what_it_was_sent() -> None:
    replay = Replay(
        routing_of(
            [
                output("partner-b", ["email"], supports_attributes=True),
                output("partner-p", ["push_token"]),
            ],
            [connection("c-b", "partner-b", forwarded=["ltv"]), connection("c-p", "partner-p")],
        )
    )
    replay.states["7"] = load_profile(VERSION_1)
    # Unchanged identities: nothing to send, although the stored format changed.
    assert replay.feed(update("7", ts=6, attributes={"other": 1})) == []
    removed = replay.feed(membership("7", "remove", ts=7))
    assert sorted((r.connection_id, [i.value for i in r.identities]) for r in removed) == [
        ("c-b", ["a@x"]),
        ("c-p", ["t1", "t2"]),
    ]


def test_a_state_without_the_fields_that_had_defaults_loads() -> None:
    state = load_profile(b'{"mpid": "1", "identities": {"email": ["a@x"]}}')
    assert state["memberships"] == {} and state["sent"] == {}
    assert state["consent"] == {"gdpr": {}, "ccpa": None}


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
attribute_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(attribute_values.filter(lambda value: value is not None), st.text(min_size=1, max_size=20))
def test_any_attribute_value_is_stored_and_forwarded_as_the_contract_writes_it(
    value: Any, email: str
) -> None:
    replay = Replay(
        routing_of(
            [output("crm", ["email"], supports_attributes=True)],
            [connection("c-crm", "crm", forwarded=["v"])],
        )
    )
    [added] = replay.feed(membership("1", "add"), update("1", identities={"email": email}))
    [changed] = replay.feed(update("1", ts=2, attributes={"v": value}))
    # Replay checked the bytes against the model's JSON; here the value survives the table.
    assert added.identities[0].value == email
    assert changed.attributes == {"v": value}
    assert replay.states["1"]["attributes"]["v"] == value


def test_a_stored_state_takes_about_its_own_size_in_memory() -> None:
    replay = Replay(
        routing_of(
            [output("ads", ["ios_idfa"]), output("crm", ["email"], supports_attributes=True)],
            [connection("c-ads", "ads"), connection("c-crm", "crm", forwarded=["ltv"])],
        )
    )
    replay.feed(
        membership("1", "add"),
        update("1", identities={"email": "a@x", "ios_idfa": "IDFA-1"}, attributes={"ltv": 3}),
    )
    state = replay.states["1"]
    # The memory store holds every profile's state as dump_profile returned it; thousands are
    # held in flight too. orjson's own output sits in a buffer of 4 to 16 KiB.
    tracemalloc.start()
    try:
        held = [dump_profile(state) for _ in range(1000)]
        allocated, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = len(held[0])
    assert 300 < size < 2000
    assert allocated < 1000 * (size + 200)
    assert all(load_profile(stored) == state for stored in held[:3])


# A profile of both audiences is held by 12 connections (stored in parts), of one by 6 (whole).
WIDE_AUDIENCES = ("aud-1", "aud-2")
WIDE_OUTPUTS = ("ads", "mail", "ids")


def wide_routing() -> Routing:
    return routing_of(
        [
            output("ads", ["ios_idfa", "android_aaid"]),
            output("mail", ["email", "customer_id"], supports_attributes=True),
            output("ids", ["customer_id"]),
        ],
        [
            connection(
                f"{audience}-{output_id}-{n}",
                output_id,
                audience_id=audience,
                forwarded=["ltv"] if output_id == "mail" and n == 0 else None,
            )
            for audience in WIDE_AUDIENCES
            for output_id in WIDE_OUTPUTS
            for n in (0, 1)
        ],
    )


def decoded(state: ProfileState) -> dict[str, Any]:
    """The state with every sent and previewed entry decoded."""
    whole: dict[str, Any] = {**state}
    for entries in ("sent", "preview"):
        if entries in state:
            whole[entries] = {key: sent_entry(entry) for key, entry in whole[entries].items()}
    return whole


def joined_both(mpid: str) -> list[Any]:
    return [
        update(
            mpid,
            identities={"email": "a@x", "ios_idfa": "i-1", "customer_id": "c-1"},
            attributes={"ltv": 1},
        ),
        membership(mpid, "add", ts=2, audience="aud-1"),
        membership(mpid, "add", ts=3, audience="aud-2"),
    ]


def test_a_profile_held_by_many_connections_is_stored_in_parts_and_read_back_whole() -> None:
    replay = Replay(wide_routing())
    replay.feed(*joined_both("1"))
    state = decoded(replay.states["1"])
    assert len(state["sent"]) == 12 >= SPLIT_FROM
    stored = dump_profile(cast(ProfileState, state))
    assert stored[:1] == b"\x1e"
    loaded = load_profile(stored)
    # the entries stay as stored until read, and read as they were
    assert all(isinstance(entry, bytes) for entry in loaded["sent"].values())
    assert decoded(loaded) == state
    assert dump_profile(loaded) == stored


def test_entries_an_event_leaves_alone_are_written_back_as_they_were_read() -> None:
    replay = Replay(wide_routing())
    replay.feed(*joined_both("1"))
    before = replay.states["1"]
    replay.feed(membership("1", "remove", ts=4, audience="aud-2"))
    after = replay.states["1"]
    # aud-2's 6 connections removed it: 6 entries left, stored whole again
    assert sorted(after["sent"]) == sorted(key for key in before["sent"] if "aud-1" in key)
    assert all(isinstance(entry, dict) for entry in after["sent"].values())
    assert decoded(after)["sent"] == {key: sent_entry(before["sent"][key]) for key in after["sent"]}
    replay.feed(membership("1", "add", ts=6, audience="aud-2"))
    rejoined = replay.states["1"]["sent"]
    replay.feed(update("1", ts=7, attributes={"ltv": 9}))  # forwarded by one connection each
    now = replay.states["1"]["sent"]
    assert all(isinstance(entry, bytes) for entry in now.values())
    assert sorted(key for key in now if now[key] != rejoined[key]) == [
        "aud-1-mail-0",
        "aud-2-mail-0",
    ]


def test_a_profile_in_parts_with_an_integer_beyond_64_bits_is_stored_whole_and_exactly() -> None:
    replay = Replay(wide_routing())
    replay.feed(*joined_both("1"), update("1", ts=4, attributes={"ltv": 2**70}))
    state = replay.states["1"]
    stored = dump_profile(state)
    assert stored[:1] == b"{"
    assert sent_entry(load_profile(stored)["sent"]["aud-1-mail-0"])["attributes"] == {"ltv": 2**70}


def test_an_erasure_removes_a_profile_in_parts_from_every_partner_with_what_was_sent() -> None:
    replay = Replay(wide_routing())
    replay.feed(*joined_both("1"))
    erasure = parse_profile_record(
        b'{"type": "profile_erasure", "mpid": "1", "request_id": "r", "timestamp_ms": 9}'
    )
    assert erasure["type"] == "profile_erasure"
    decision = decide(replay.states["1"], erasure, replay.routing, Source("in", 0, 99))
    removed = {
        (record.connection_id, tuple((i.type.value, i.value) for i in record.identities))
        for record in contract_records(decision)
    }
    assert len(removed) == 12
    assert ("aud-2-ids-1", (("customer_id", "c-1"),)) in removed


def test_a_state_in_parts_that_lost_a_part_is_refused_with_a_clear_error() -> None:
    replay = Replay(wide_routing())
    replay.feed(*joined_both("1"))
    stored = dump_profile(replay.states["1"])
    with pytest.raises(ValueError, match="lists 12 sent entries and holds 11"):
        load_profile(stored[: stored.rindex(b"\x1e")])


wide_configs = st.sampled_from(
    [
        ("aud-1-ads-0", {"status": "inactive"}),
        ("aud-1-ads-0", {"status": "active"}),
        ("aud-2-mail-1", {"status": "preview"}),
        ("aud-2-mail-1", {"status": "active"}),
        ("aud-1-mail-0", {"forwarded_attributes": ["ltv", "tier"]}),
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(profile_events, membership_events, wide_configs, st.just("sync")),
        max_size=30,
    )
)
def test_a_state_stored_in_parts_decides_exactly_as_the_whole_state(steps: list[Any]) -> None:
    """Differential: every step on states as the worker loads them (a profile of 12
    connections in parts, each entry decoded when read) and on the same states decoded whole
    gives the same records and drops, and the same state."""
    routing = wide_routing()
    as_loaded: dict[str, ProfileState] = {}
    whole: dict[str, ProfileState] = {}
    pending: set[str] = set()

    def step(mpid: str, offset: int, event: InputEventData | None) -> None:
        source = Source(topic="in", partition=0, offset=offset)
        decisions = []
        for states in (as_loaded, whole):
            state = states.get(mpid) or new_profile(mpid)
            decisions.append(
                decide(state, event, routing, source)
                if event is not None
                else reconcile(state, routing, source, 9, only=sorted(pending))
            )
        lazy, eager = decisions
        assert [r.value for r in lazy.records] == [r.value for r in eager.records]
        assert lazy.drops == eager.drops
        assert lazy.state is not None and eager.state is not None
        as_loaded[mpid] = load_profile(dump_profile(lazy.state))
        whole[mpid] = cast(ProfileState, decoded(load_profile(dump_profile(eager.state))))
        assert decoded(as_loaded[mpid]) == whole[mpid]

    # Both profiles start in both audiences, held by all 12 connections: stored in parts.
    for offset, item in enumerate([*joined_both("1"), *joined_both("2"), *steps]):
        if item == "sync":
            for mpid in sorted(as_loaded):
                step(mpid, offset, None)
            pending.clear()
        elif isinstance(item, tuple):
            pending.add(reconfigured(routing, *item))
        else:
            step(item["mpid"], offset, item)
