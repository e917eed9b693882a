"""The worker's dict parsers accept and reject exactly what the contract models do."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from schemas.parsing import InvalidRecordError, parse, parse_union
from schemas.plain import (
    MembershipEventData,
    ProfileErasureData,
    ProfileUpdateData,
    parse_membership_event,
    parse_profile_record,
)
from schemas.records import MembershipEvent, ProfileErasure, ProfileRecord, ProfileUpdate

PROFILE_RECORD = TypeAdapter[Any](ProfileRecord)


def outcome(parser: Callable[[bytes], Any], raw: bytes) -> tuple[Any, ...]:
    """What the worker does with a value: its data (as JSON), or the dead letter's reason."""
    try:
        parsed = parser(raw)
    except InvalidRecordError as error:
        return ("dead letter", error.kind, error.message)
    data = parsed.model_dump() if hasattr(parsed, "model_dump") else parsed
    return ("accepted", pydantic_core.to_json(data))


def same_as_models(raw: bytes) -> None:
    assert outcome(parse_profile_record, raw) == outcome(
        lambda value: parse_union(PROFILE_RECORD, value), raw
    )
    assert outcome(parse_membership_event, raw) == outcome(
        lambda value: parse(MembershipEvent, value), raw
    )


# Values of every JSON type, with the edges pydantic and JSON parsers tell apart.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["", "x" * 129, "x" * 257, "email", "ios_idfa", "fax", "add", "remove"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
timestamps = st.integers(-1, 2**40) | json_values
identity_types = st.sampled_from(["email", "ios_idfa", "push_token", "fax", ""]) | st.text()
identity_values = st.none() | st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=3)
consent = st.fixed_dictionaries(
    {},
    optional={
        "gdpr": st.dictionaries(
            st.text(max_size=3),
            st.fixed_dictionaries(
                {"consented": st.booleans() | json_values},
                optional={"timestamp_ms": timestamps},
            )
            | json_values,
            max_size=2,
        )
        | json_values,
        "ccpa": st.fixed_dictionaries(
            {"data_sale_opt_out": st.booleans() | json_values},
            optional={"timestamp_ms": timestamps},
        )
        | json_values,
    },
)
mpids = st.text(max_size=4) | st.integers(-(2**70), 2**70) | st.booleans() | json_values
records = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["profile_update", "profile_erasure", "other"]) | json_values,
        "mpid": mpids,
        "timestamp_ms": timestamps,
        "identities": st.dictionaries(identity_types, identity_values, max_size=3) | json_values,
        "attributes": st.dictionaries(st.text(max_size=3), json_values, max_size=3) | json_values,
        "consent": consent | st.none() | json_values,
        "request_id": st.text(max_size=3) | json_values,
        "audience_id": st.text(max_size=3) | json_values,
        "audience_name": st.none() | st.text(max_size=3) | json_values,
        "action": st.sampled_from(["add", "remove", "upsert"]) | json_values,
        "unknown": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(records)
def test_records_near_the_contract_are_treated_as_the_models_treat_them(
    record: dict[str, Any],
) -> None:
    # json (not orjson): it writes NaN, Infinity and integers beyond 64 bits
    same_as_models(json.dumps(record).encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | json_values.map(lambda value: json.dumps(value).encode()))
def test_any_bytes_are_treated_as_the_models_treat_them(raw: bytes) -> None:
    same_as_models(raw)


# The corpus of bad records of tests/streams/test_forwarding_kafka.py, and a few more.
BAD_RECORDS = [
    b"{not json",
    b'{"type": "profile_update", "timestamp_ms": 1}',
    b'{"type": "profile_update", "mpid": "m3", "timestamp_ms": "yesterday"}',
    b'{"type": "profile_update", "mpid": "m4", "timestamp_ms": 1, "identities": {"fax": "1"}}',
    b"\xff\xfe\x00binary",
    b'{"mpid": "m7", "audience_id": "a", "action": "upsert", "timestamp_ms": 1}',
    b'{"type": "profile_erasure", "mpid": "m8", "timestamp_ms": 1}',
    b'{"type": "profile_update", "mpid": true, "timestamp_ms": 1}',
    b'{"type": "profile_update", "mpid": "m9", "timestamp_ms": 1.0}',
    b'{"type": "profile_update", "mpid": "m9", "timestamp_ms": -1}',
    b'{"mpid": "", "audience_id": "a", "action": "add", "timestamp_ms": 1}',
    b'{"type": "profile_update", "mpid": "1", "timestamp_ms": 1, "consent": {"ccpa": {}}}',
    b"[]",
    b"null",
    b"",
]


@pytest.mark.parametrize("raw", BAD_RECORDS)
def test_bad_records_get_the_models_dead_letter_reasons(raw: bytes) -> None:
    assert outcome(parse_profile_record, raw)[0] == "dead letter" or raw.startswith(b'{"mpid"')
    same_as_models(raw)


def test_a_missing_value_is_a_dead_letter_as_before() -> None:
    with pytest.raises(InvalidRecordError) as error:
        parse_profile_record(None)
    assert error.value.kind == "missing_value"


def test_valid_records_give_every_field_with_the_models_defaults() -> None:
    update = parse_profile_record(b'{"type": "profile_update", "mpid": 42, "timestamp_ms": 1}')
    assert update == {
        "type": "profile_update",
        "mpid": "42",
        "timestamp_ms": 1,
        "identities": {},
        "attributes": {},
        "consent": None,
    }
    member = parse_membership_event(
        b'{"mpid": "1", "audience_id": "a", "action": "add", "timestamp_ms": 1, "x": 0}'
    )
    assert member == {
        "mpid": "1",
        "audience_id": "a",
        "audience_name": None,
        "action": "add",
        "timestamp_ms": 1,
    }


@pytest.mark.parametrize(
    ("typed_dict", "model"),
    [
        (ProfileUpdateData, ProfileUpdate),
        (ProfileErasureData, ProfileErasure),
        (MembershipEventData, MembershipEvent),
    ],
)
def test_the_dict_types_name_the_models_fields(typed_dict: Any, model: Any) -> None:
    assert set(typed_dict.__annotations__) == set(model.model_fields)
