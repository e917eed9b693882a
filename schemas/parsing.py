"""Turn raw topic values into contract models, or a clear reason why not."""

from __future__ import annotations

from collections.abc import Callable
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


def _kind(error: ErrorDetails) -> str:
    error_type = error["type"]
    if error_type in _KINDS:
        return _KINDS[error_type]
    if error_type.endswith("_type") or error_type.endswith("_parsing"):
        return "wrong_type"
    return "invalid_value"


def describe(error: ValidationError) -> InvalidRecordError:
    details = error.errors(include_input=False, include_url=False)
    parts = []
    for detail in details[:5]:
        where = ".".join(str(part) for part in detail["loc"]) or "record"
        parts.append(f"{where}: {detail['msg']}")
    return InvalidRecordError(_kind(details[0]), "; ".join(parts))


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
