"""Dead letters never carry an output's settings, and always fit in a Kafka message."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from core.dead_letters import dead_letter, redact
from schemas.records import DeadLetter, SourceRef

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
        max_bytes=65_536,
    )
    assert SECRET.encode() not in letter
    assert orjson.loads(letter)["value_encoding"] == "text"


SOURCE = SourceRef(topic="profile-updates", partition=3, offset=7)


def test_a_small_value_is_kept_whole() -> None:
    letter = DeadLetter.model_validate_json(
        dead_letter(SOURCE, b"m1", b"{not json", "invalid_json", "bad", 1, max_bytes=65_536)
    )
    assert (letter.value, letter.value_truncated, letter.value_length) == ("{not json", False, None)


def test_oversized_text_binary_and_keys_are_cut_with_length_and_digest() -> None:
    for value in (b"x" * 2_000_000, bytes(range(256)) * 8000, "é".encode() * 600_000):
        raw = dead_letter(SOURCE, b"k" * 1_000_000, value, "too_large", "big", 1, max_bytes=65_536)
        assert len(raw) <= 65_536
        letter = DeadLetter.model_validate_json(raw)
        assert letter.value_truncated and letter.value_length == len(value)
        assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
        prefix = (
            base64.b64decode(letter.value or "")
            if letter.value_encoding == "base64"
            else (letter.value or "").encode()
        )
        assert value.startswith(prefix) and prefix
        assert orjson.loads(raw)["source"]["offset"] == 7
