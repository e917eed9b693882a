"""Parsing errors: the kind producers act on, the field, and never the input's values."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter

from schemas.parsing import InvalidRecordError, check_key, parse, parse_union
from schemas.records import (
    ConnectionConfig,
    MembershipEvent,
    OutputConfig,
    ProfileRecord,
    ProfileUpdate,
)

SECRET = "s3cr3t-value-42"
PROFILE = TypeAdapter[ProfileRecord](ProfileRecord)


def refusal(raw: bytes, parser: str = "profile") -> InvalidRecordError:
    with pytest.raises(InvalidRecordError) as refused:
        if parser == "profile":
            parse_union(PROFILE, raw)
        else:
            parse(MembershipEvent, raw)
    return refused.value


def test_an_unknown_record_type_names_the_tags_not_the_value() -> None:
    error = refusal(json.dumps({"type": SECRET, "mpid": "1"}).encode())
    assert error.kind == "unknown_value"
    assert SECRET not in error.message
    assert error.message.startswith("type: ")
    assert "'profile_update', 'profile_erasure'" in error.message


@pytest.mark.parametrize(
    ("record", "parser", "kind", "field"),
    [
        ({"type": SECRET}, "profile", "unknown_value", "type"),
        ({"type": 7}, "profile", "unknown_value", "type"),
        ({"type": "profile_update", "mpid": "1", "timestamp_ms": SECRET}, "profile",
         "wrong_type", "profile_update.timestamp_ms"),
        ({"type": "profile_update", "mpid": "1", "timestamp_ms": 1,
          "identities": {SECRET: "x"}}, "profile", "unknown_value",
         "profile_update.identities.[key]"),
        ({"type": "profile_update", "mpid": "1", "timestamp_ms": 1,
          "identities": {"email": ""}}, "profile", "invalid_value",
         "profile_update.identities.email.constrained-str"),
        ({"mpid": "1", "audience_id": "a", "action": SECRET, "timestamp_ms": 1}, "membership",
         "unknown_value", "action"),
        ({"mpid": SECRET * 10, "audience_id": "a", "action": "add", "timestamp_ms": 1},
         "membership", "invalid_value", "mpid"),
    ],
)  # fmt: skip
def test_messages_name_the_field_and_kind_never_the_value(
    record: dict[str, object], parser: str, kind: str, field: str
) -> None:
    error = refusal(json.dumps(record).encode(), parser)
    assert (error.kind, error.message.split(": ")[0]) == (kind, field)
    assert SECRET not in error.message and "'7'" not in error.message


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity"])
def test_numbers_in_the_contract_are_finite(number: str) -> None:
    raw = (
        '{"type": "profile_update", "mpid": "1", "timestamp_ms": 1, '
        f'"attributes": {{"ltv": {{"history": [1.5, {number}]}}}}}}'
    ).encode()
    error = refusal(raw)
    assert (error.kind, error.message) == (
        "invalid_value",
        "profile_update.attributes.ltv: Input should be a finite number",
    )
    assert parse(ProfileUpdate, raw.replace(number.encode(), b"2.5")).attributes == {
        "ltv": {"history": [1.5, 2.5]}
    }
    output = f'{{"output_id": "o", "partner": "webhook", "settings": {{"rate": {number}}}}}'
    with pytest.raises(InvalidRecordError) as refused:
        parse(OutputConfig, output.encode())
    assert refused.value.message == "settings.rate: Input should be a finite number"


@pytest.mark.parametrize("bad_id", ['c"1', "c 1", "c/1", "C1", "-c", "c" * 64, ""])
def test_connection_ids_follow_the_output_id_pattern(bad_id: str) -> None:
    for model, field in ((ConnectionConfig, "connection_id"), (OutputConfig, "output_id")):
        record = {"connection_id": "c-1", "output_id": "o-1", "audience_id": "a",
                  "status": "active", "partner": "custom", field: bad_id}  # fmt: skip
        with pytest.raises(InvalidRecordError) as refused:
            parse(model, json.dumps(record).encode())
        assert refused.value.message.startswith(f"{field}: String should match pattern")
    connection = ConnectionConfig.model_json_schema()["properties"]["connection_id"]
    output = OutputConfig.model_json_schema()["properties"]["output_id"]
    assert connection["pattern"] == output["pattern"]


def test_the_key_must_equal_the_records_id() -> None:
    check_key(b"c-1", "c-1", "connection_id")
    for key in (None, b"c-2", b"\xff"):
        with pytest.raises(InvalidRecordError) as refused:
            check_key(key, "c-1", "connection_id")
        assert refused.value.kind == "key_mismatch"
        assert refused.value.message == "the record key must equal its connection_id"
