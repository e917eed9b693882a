"""A dead letter always fits in a Kafka message, whatever it quotes."""

from __future__ import annotations

import base64
import hashlib

import orjson

from core.dead_letters import dead_letter
from schemas.records import DeadLetter, SourceRef

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
