"""Dead letters of output records never carry their settings, whatever the value's shape."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from core.dead_letters import dead_letter, redact
from schemas.records import SourceRef

SECRET = "hunter2-" + "x" * 8


def test_settings_of_an_output_record_are_replaced_and_the_rest_kept() -> None:
    raw = orjson.dumps({"output_id": "o", "settings": {"password": SECRET}, "name": "N"})
    redacted = redact(raw)
    assert redacted is not None
    assert orjson.loads(redacted) == {"output_id": "o", "settings": "<redacted>", "name": "N"}
    plain = b'{"output_id": "o", "partner": "custom"}'
    assert redact(plain) == plain


@pytest.mark.parametrize(
    "raw",
    [
        b'{"output_id": "o", "settings": {"password": "' + SECRET.encode() + b'"}',  # cut short
        b'["settings", {"password": "' + SECRET.encode() + b'"}]',
        b'"' + SECRET.encode() + b'"',
        b'{"settings": {"password": "' + SECRET.encode() + b'\xff"}}',
    ],
    ids=["invalid-json", "array", "string", "not-utf8"],
)
def test_a_value_that_is_not_a_json_object_is_redacted_whole(raw: bytes) -> None:
    redacted = redact(raw)
    assert redacted == (
        f"<redacted: {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}>".encode()
    )
    letter = dead_letter(
        SourceRef(topic="forwarder-outputs", partition=0, offset=3),
        b"o",
        redacted,
        "invalid_json",
        "record: Invalid JSON",
        1,
    )
    assert SECRET not in letter.model_dump_json()
    assert letter.value_encoding == "text"
