"""The record contract of every topic the forwarder reads or writes.

Producers in other languages validate against the JSON Schema files exported
from these models (``python -m schemas.export``).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# Output and connection ids: they name topics (forward-<output_id>) and URL paths.
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class IdentityType(StrEnum):
    """mParticle's IDSync identity names."""

    CUSTOMER_ID = "customer_id"
    EMAIL = "email"
    MOBILE_NUMBER = "mobile_number"
    PHONE_NUMBER_2 = "phone_number_2"
    PHONE_NUMBER_3 = "phone_number_3"
    FACEBOOK = "facebook"
    GOOGLE = "google"
    MICROSOFT = "microsoft"
    TWITTER = "twitter"
    YAHOO = "yahoo"
    OTHER = "other"
    OTHER_ID_2 = "other_id_2"
    OTHER_ID_3 = "other_id_3"
    OTHER_ID_4 = "other_id_4"
    OTHER_ID_5 = "other_id_5"
    OTHER_ID_6 = "other_id_6"
    OTHER_ID_7 = "other_id_7"
    OTHER_ID_8 = "other_id_8"
    OTHER_ID_9 = "other_id_9"
    OTHER_ID_10 = "other_id_10"
    IOS_IDFA = "ios_idfa"
    IOS_IDFV = "ios_idfv"
    ANDROID_AAID = "android_aaid"
    ANDROID_UUID = "android_uuid"
    PUSH_TOKEN = "push_token"
    ROKU_AID = "roku_aid"
    ROKU_PUBLISHER_ID = "roku_publisher_id"
    FIRE_AID = "fire_aid"
    AMP_ID = "amp_id"


def _mpid_to_str(value: Any) -> Any:
    # mpid may arrive as a JSON integer; bool is an int subclass and is not an mpid.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Mpid = Annotated[
    str,
    BeforeValidator(_mpid_to_str),
    StringConstraints(min_length=1, max_length=128),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "minLength": 1, "maxLength": 128}, {"type": "integer"}],
            "description": "The profile's id; a JSON integer is accepted and becomes a string.",
        }
    ),
]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=256)]
TimestampMs = Annotated[int, Field(ge=0, description="Milliseconds since the Unix epoch.")]
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
IdentityValue = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


def _finite(value: Any) -> Any:
    # JSON parsing turns 1e400 into inf (and takes NaN), which would be written back as null.
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    if isinstance(value, dict):
        for item in value.values():
            _finite(item)
    elif isinstance(value, list):
        for item in value:
            _finite(item)
    return value


JsonValue = Annotated[Any, AfterValidator(_finite)]


class _Record(BaseModel):
    # strict: "42" is not an int and 1 is not a string; unknown fields are ignored so that
    # producers can add fields before the forwarder knows them.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class GdprConsent(_Record):
    consented: bool
    timestamp_ms: TimestampMs | None = None


class CcpaConsent(_Record):
    data_sale_opt_out: bool
    timestamp_ms: TimestampMs | None = None


class Consent(_Record):
    """Consent states; each purpose given replaces the one held, absent ones stay."""

    gdpr: dict[NonEmpty, GdprConsent] = Field(default_factory=dict)
    ccpa: CcpaConsent | None = None


class ProfileUpdate(_Record):
    """A change to one profile; on profile-updates, key mpid.

    Merge semantics: a key set to null removes that identity or attribute; an absent key
    leaves it unchanged.
    """

    type: Literal["profile_update"]
    mpid: Mpid
    timestamp_ms: TimestampMs
    identities: dict[IdentityType, IdentityValue | list[IdentityValue] | None] = Field(
        default_factory=dict
    )
    attributes: dict[NonEmpty, JsonValue] = Field(default_factory=dict)
    consent: Consent | None = None


class ProfileErasure(_Record):
    """A data subject's erasure request; on profile-updates, key mpid."""

    type: Literal["profile_erasure"]
    mpid: Mpid
    request_id: NonEmpty
    timestamp_ms: TimestampMs


ProfileRecord = Annotated[ProfileUpdate | ProfileErasure, Field(discriminator="type")]


class MembershipEvent(_Record):
    """A profile entering or leaving an audience; on audience-memberships, key mpid."""

    mpid: Mpid
    audience_id: NonEmpty
    audience_name: str | None = None
    action: Literal["add", "remove"]
    timestamp_ms: TimestampMs


class OutputConfig(_Record):
    """One configured partner; on forwarder-outputs (compacted), key output_id."""

    output_id: Id
    partner: NonEmpty
    name: str = ""
    accepted_identities: list[IdentityType] | None = None
    supports_attributes: bool | None = None
    settings: dict[str, JsonValue] = Field(default_factory=dict)


class ConsentRule(_Record):
    """A connection's consent requirement; profiles failing it are not sent."""

    require_gdpr: list[NonEmpty] = Field(default_factory=list)
    block_ccpa_opt_out: bool = False


class Resync(_Record):
    """An operator's request to send every current member again (``POST .../resync``)."""

    generation: int = Field(
        ge=1,
        description="Counts the connection's resyncs; part of the record_id of resync sends, "
        "so that they differ from every earlier send.",
    )
    requested_ms: TimestampMs


class ConnectionConfig(_Record):
    """One audience connected to one output; on forwarder-connections (compacted)."""

    connection_id: Id
    audience_id: NonEmpty
    output_id: Id
    status: Literal["active", "inactive", "preview"] = Field(
        description="active: members are sent; inactive: nothing is sent; preview: members are "
        "evaluated as for active and counted, nothing is sent."
    )
    forwarded_attributes: list[NonEmpty] = Field(default_factory=list)
    on_disconnect: Literal["keep", "remove"] = Field(
        "keep",
        description="When the connection is deactivated or deleted: keep what the partner "
        "holds (as mParticle does) or send a remove for every profile it was sent.",
    )
    consent: ConsentRule | None = None
    resync: Resync | None = Field(
        None, description="The last resync requested; a new generation sends every member again."
    )

    @property
    def resync_generation(self) -> int:
        return self.resync.generation if self.resync is not None else 0


class Identity(_Record):
    type: IdentityType
    value: str
    encoding: Literal["raw", "sha256"] = "raw"


class SourceRef(_Record):
    """Where an input record was read: the lineage of everything derived from it."""

    topic: str
    partition: int
    offset: int


class OutboundRecord(_Record):
    """One identity record for one partner; on forward-<output_id>, key mpid."""

    record_id: str
    output_id: Id
    partner: str
    connection_id: str
    audience_id: str
    audience_name: str | None
    mpid: str
    action: Literal["add", "remove", "attribute_update"]
    identities: list[Identity]
    attributes: dict[str, JsonValue]
    timestamp_ms: TimestampMs
    source: SourceRef


class DeadLetterError(_Record):
    kind: str
    message: str


class DeadLetter(_Record):
    """An input record the forwarder could not use, with the reason; on forwarder-dead-letters."""

    source: SourceRef
    key: str | None
    value: str | None
    value_encoding: Literal["text", "base64"] = "text"
    # A value too large to carry whole is cut to a prefix; these describe the original.
    value_truncated: bool = False
    value_length: int | None = None
    value_sha256: str | None = None
    error: DeadLetterError
    timestamp_ms: TimestampMs


class ErasureStatus(_Record):
    """One per output for each erasure request; on forwarder-erasure-status, key mpid."""

    request_id: str
    mpid: str
    output_id: str
    status: Literal["sent", "skipped"]
    timestamp_ms: TimestampMs


class SyncRequest(_Record):
    """Internal (forwarder-sync): reconcile one partition's profiles after a config change.

    The validating agent publishes one per partition for each output or connection record;
    ``config`` is that record's position, which the worker's config view must have applied
    before the request is served.
    """

    kind: Literal["output", "connection"]
    id: str
    config: SourceRef
