"""Turn raw topic values into contract models, or a clear reason why not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

Model = TypeVar("Model", bound=BaseModel)
Parsed = TypeVar("Parsed")

# pydantic error types grouped into the dead-letter kinds that producers act on.
_KINDS = {
    "json_invalid": "invalid_json",
    "json_type": "invalid_json",
    "missing": "missing_field",
    "literal_error": "unknown_value",
    "enum": "unknown_value",
    "union_tag_invalid": "unknown_value",
    "union_tag_not_found": "missing_field",
}


class InvalidRecordError(ValueError):
    """A record that breaks the contract. The message never quotes input values (secrets)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldError:
    """One validation error: where (a dotted field path, "" for the whole value), why, and
    its dead-letter kind. The reason names types and allowed values, never the input."""

    field: str
    reason: str
    kind: str


def _kind(error_type: str) -> str:
    if error_type in _KINDS:
        return _KINDS[error_type]
    if error_type.endswith("_type") or error_type.endswith("_parsing"):
        return "wrong_type"
    return "invalid_value"


def _field_error(detail: ErrorDetails, prefix: tuple[str, ...]) -> FieldError:
    loc = [str(part) for part in detail["loc"]]
    # A dict key that failed is input itself: the path names the dict, not the key.
    loc = [part for at, part in enumerate(loc) if loc[at + 1 : at + 2] != ["[key]"]]
    path = [*prefix, *loc]
    reason = detail["msg"]
    if detail["type"] == "union_tag_invalid":
        # pydantic's message quotes the tag found, which is input.
        context = detail.get("ctx", {})
        path.append(str(context.get("discriminator", "")).strip("'"))
        reason = f"Input should be one of the tags {context.get('expected_tags', '')}"
    return FieldError(".".join(part for part in path if part), reason, _kind(detail["type"]))


def field_errors(error: ValidationError, prefix: str = "") -> list[FieldError]:
    """Every error of ``error``, with ``prefix`` before each field path."""
    parts = tuple(prefix.split(".")) if prefix else ()
    return [
        _field_error(detail, parts)
        for detail in error.errors(include_input=False, include_url=False)
    ]


def describe(error: ValidationError) -> InvalidRecordError:
    errors = field_errors(error)
    message = "; ".join(f"{e.field or 'record'}: {e.reason}" for e in errors[:5])
    return InvalidRecordError(errors[0].kind, message)


def check_key(key: bytes | None, record_id: str, field: str) -> None:
    """A record's key must be its id: its partition, or its compacted slot, follows the key."""
    if key is None or key.decode("utf-8", "replace") != record_id:
        raise InvalidRecordError("key_mismatch", f"the record key must equal its {field}")


def validated(raw: bytes | None, validate_json: Callable[[bytes], Parsed]) -> Parsed:
    if raw is None:
        raise InvalidRecordError("missing_value", "the record has no value")
    try:
        return validate_json(raw)
    except ValidationError as error:
        raise describe(error) from None


def parse(model: type[Model], raw: bytes | None) -> Model:
    return validated(raw, model.model_validate_json)


def parse_union(adapter: TypeAdapter[Parsed], raw: bytes | None) -> Parsed:
    """Parse into one of several record types (a discriminated union)."""
    return validated(raw, adapter.validate_json)
