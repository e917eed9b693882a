"""The input records as plain dicts: validators derived from the contract models.

The models in ``schemas/records.py`` stay the one definition of the contract (JSON Schemas,
API, docs). These validators run the same pydantic-core checks with the same errors, so a
record is accepted or dead-lettered exactly as before, but they build dicts instead of model
instances: the stream worker parses every event and has no use for the models' behaviour.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, final

from pydantic import TypeAdapter
from pydantic_core import CoreSchema, SchemaValidator

from schemas.parsing import validated
from schemas.records import MembershipEvent, ProfileRecord


class GdprConsentData(TypedDict):
    consented: bool
    timestamp_ms: int | None


class CcpaConsentData(TypedDict):
    data_sale_opt_out: bool
    timestamp_ms: int | None


class ConsentData(TypedDict):
    gdpr: dict[str, GdprConsentData]
    ccpa: CcpaConsentData | None


@final  # lets a key test tell the event types apart (mypy)
class ProfileUpdateData(TypedDict):
    type: Literal["profile_update"]
    mpid: str
    timestamp_ms: int
    # keys are IdentityType members (a str subclass)
    identities: dict[str, str | list[str] | None]
    attributes: dict[str, Any]
    consent: ConsentData | None


@final
class ProfileErasureData(TypedDict):
    type: Literal["profile_erasure"]
    mpid: str
    request_id: str
    timestamp_ms: int


@final
class MembershipEventData(TypedDict):
    mpid: str
    audience_id: str
    audience_name: str | None
    action: Literal["add", "remove"]
    timestamp_ms: int


ProfileRecordData = ProfileUpdateData | ProfileErasureData
InputEventData = ProfileUpdateData | ProfileErasureData | MembershipEventData


def plain_schema(schema: Any) -> Any:
    """A copy of a core schema in which every model validates into a dict of its fields.

    Each field keeps its validator, its default and its model's config (strict, extra
    ignored), so errors and defaults are the model's own.
    """
    if isinstance(schema, list):
        return [plain_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema.get("type") != "model":
        return {key: plain_schema(value) for key, value in schema.items()}
    fields = schema["schema"]
    if fields["type"] != "model-fields":
        raise TypeError(f"{fields.get('model_name')}: only plain field models are supported")
    typed_dict: dict[str, Any] = {
        "type": "typed-dict",
        "fields": {
            name: {
                "type": "typed-dict-field",
                "schema": plain_schema(field["schema"]),
                "required": field["schema"]["type"] != "default",
            }
            for name, field in fields["fields"].items()
        },
        "config": schema["config"],
    }
    if "ref" in schema:
        typed_dict["ref"] = schema["ref"]
    return typed_dict


def plain_validator(schema: CoreSchema) -> SchemaValidator:
    return SchemaValidator(plain_schema(schema))


_PROFILE_RECORD = plain_validator(TypeAdapter[Any](ProfileRecord).core_schema)
_MEMBERSHIP_EVENT = plain_validator(MembershipEvent.__pydantic_core_schema__)


def parse_profile_record(raw: bytes | None) -> ProfileRecordData:
    """A profile-updates value, checked as ``ProfileRecord``; raises InvalidRecordError."""
    parsed: ProfileRecordData = validated(raw, _PROFILE_RECORD.validate_json)
    return parsed


def parse_membership_event(raw: bytes | None) -> MembershipEventData:
    """An audience-memberships value, checked as ``MembershipEvent``; raises InvalidRecordError."""
    parsed: MembershipEventData = validated(raw, _MEMBERSHIP_EVENT.validate_json)
    return parsed
