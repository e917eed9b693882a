"""The profiles table's values: the stored format, and the state that earlier versions stored."""

from __future__ import annotations

import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.state import STATE_VERSION, dump_profile, load_profile
from tests.streams.test_forwarding import (
    Replay,
    connection,
    membership,
    output,
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
