"""Dead-letter records: the raw input, where it came from and why it was refused.

One builder for the worker and the sink runner. A dead letter always fits in a Kafka message:
a value (or key) too large to carry whole is cut to a prefix, with its length and sha256, so
that an oversized input can never stop the partition it came from.
"""

from __future__ import annotations

import base64
import hashlib

import orjson

from schemas.records import DeadLetter, DeadLetterError, SourceRef

# Output records may carry partner settings; an inline secret there must not be copied on.
_REDACTED_FIELDS = ("settings",)
# What is kept of a value or key that does not fit: enough to recognise the record.
PREFIX_BYTES = 1024
# Room for the envelope (source, error, timestamps) beside the value and key.
ENVELOPE_BYTES = 8192


def _as_text(raw: bytes | None) -> tuple[str | None, bool]:
    if raw is None:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def redact(raw: bytes | None) -> bytes | None:
    """The value with every settings field replaced, when it is a JSON object; else all of it.

    A value that cannot be read as a JSON object (not UTF-8, not JSON, not an object) may hold
    a secret anywhere: only its length and SHA-256 are kept, to match it with its producer.
    """
    if raw is None:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        digest = hashlib.sha256(raw).hexdigest()
        return f"<redacted: {len(raw)} bytes, sha256 {digest}>".encode()
    if not any(name in document for name in _REDACTED_FIELDS):
        return raw
    for name in _REDACTED_FIELDS:
        if name in document:
            document[name] = "<redacted>"
    return orjson.dumps(document)


def dead_letter(
    source: SourceRef,
    key: bytes | None,
    value: bytes | None,
    kind: str,
    message: str,
    timestamp_ms: int,
    *,
    max_bytes: int,
) -> bytes:
    """The dead letter's JSON, at most ``max_bytes`` long whatever the input's size."""
    # Keys are UTF-8 by contract; a broken one is kept readable rather than refused twice.
    key_text = key[:PREFIX_BYTES].decode("utf-8", "replace") if key is not None else None
    error = DeadLetterError(kind=kind, message=message[:PREFIX_BYTES])
    value_text, is_base64 = _as_text(value)
    letter = DeadLetter(
        source=source,
        key=key_text,
        value=value_text,
        value_encoding="base64" if is_base64 else "text",
        error=error,
        timestamp_ms=timestamp_ms,
    )
    encoded = letter.model_dump_json().encode()
    if len(encoded) <= max_bytes or value is None:
        return encoded
    prefix_text, prefix_base64 = _as_text(value[:PREFIX_BYTES])
    if not is_base64 and prefix_base64:
        # The cut split a UTF-8 character: keep the prefix as text.
        prefix_text, prefix_base64 = value[:PREFIX_BYTES].decode("utf-8", "ignore"), False
    return (
        letter.model_copy(
            update={
                "value": prefix_text,
                "value_encoding": "base64" if prefix_base64 else "text",
                "value_truncated": True,
                "value_length": len(value),
                "value_sha256": hashlib.sha256(value).hexdigest(),
            }
        )
        .model_dump_json()
        .encode()
    )
