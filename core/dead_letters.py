"""Dead-letter records: the raw input, where it came from and why it was refused."""

from __future__ import annotations

import base64
import hashlib

import orjson

from schemas.records import DeadLetter, DeadLetterError, SourceRef

# Output records may carry partner settings; an inline secret there must not be copied on.
_REDACTED_FIELDS = ("settings",)


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
) -> DeadLetter:
    # Keys are UTF-8 by contract; a broken one is kept readable rather than refused twice.
    key_text = key.decode("utf-8", "replace") if key is not None else None
    value_text, is_base64 = _as_text(value)
    return DeadLetter(
        source=source,
        key=key_text,
        value=value_text,
        value_encoding="base64" if is_base64 else "text",
        error=DeadLetterError(kind=kind, message=message),
        timestamp_ms=timestamp_ms,
    )
