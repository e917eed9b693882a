"""Request and response bodies of the control-plane API (records themselves: schemas/records)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import ConsentRule, IdentityType, JsonValue, NonEmpty
from schemas.state import Verdict


class _Body(BaseModel):
    # As the records: strict types; unlike them, an unknown field in an update is an error.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class OutputUpdate(_Body):
    """Fields of an output to replace; those left out keep their value."""

    name: str | None = None
    accepted_identities: list[IdentityType] | None = None
    supports_attributes: bool | None = None
    settings: dict[str, JsonValue] | None = None


class ConnectionUpdate(_Body):
    """Fields of a connection to replace; those left out keep their value."""

    status: Literal["active", "inactive", "preview"] | None = None
    forwarded_attributes: list[NonEmpty] | None = None
    on_disconnect: Literal["keep", "remove"] | None = None
    consent: ConsentRule | None = None


class OutputView(BaseModel):
    """An output as the forwarder resolved it against its partner."""

    output_id: str
    partner: str
    name: str
    accepted_identities: list[IdentityType]
    supports_attributes: bool
    settings: dict[str, Any] | None = Field(
        description="Null when the settings on the topic fail the partner's check: they may "
        "hold an inline secret, which the API never shows."
    )


class SettingField(BaseModel):
    """One setting of a partner's settings model, enough to ask for it in a form."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "object"]
    format: str | None = Field(description="'uri' or 'path' for strings that must be one.")
    required: bool
    default: JsonValue = None
    description: str
    secret: bool = Field(
        description="The setting names the environment variable holding a secret (never the "
        "secret itself)."
    )


class PartnerView(BaseModel):
    name: str
    description: str
    accepted_identities: list[IdentityType]
    supports_attributes: bool
    configurable: bool = Field(description="Outputs list the identity types they accept.")
    sink: str | None = Field(description="The built-in adapter delivering it, if any.")
    required_settings: list[str]
    optional_settings: list[str]
    settings: list[SettingField] = Field(description="The settings model, field by field.")
    batch_limit: int = Field(description="Most records in one request to the partner.")
    rate_per_second: float = Field(description="Requests per second the sink sends at most.")
    rate_burst: int


class SyncProgress(BaseModel):
    """The syncs of a connection (initial, resync, config change), summed over the workers."""

    profiles: int = Field(description="Profiles the syncs have to check.")
    done: int = Field(description="Profiles checked so far.")


class PreviewStats(BaseModel):
    """What a connection in preview would have sent (nothing was), as the workers evaluated it
    since they started."""

    members: int = Field(description="Profiles the partner would hold.")
    members_by_identity_type: dict[str, int] = Field(
        description="Of them, those that would be sent with each identity type."
    )
    would_send: dict[str, int] = Field(description="Records it would have sent, by action.")


class ConnectionStats(BaseModel):
    """Summed over the workers scraped."""

    connection_id: str
    output_id: str
    status: str
    added: int
    removed: int
    attribute_updates: int
    dropped: dict[str, int] = Field(description="Records not sent, by reason.")
    last_record_timestamp: float | None = Field(description="Unix seconds of the last send.")
    sync: SyncProgress | None = Field(
        description="The connection's syncs (initial, resync, config change); null when no "
        "worker has synced it."
    )
    resync_generation: int = Field(description="The last resync requested (0: none).")
    resync_partitions_done: int = Field(
        description="Input partitions that finished that resync, of FORWARDER_INPUT_PARTITIONS."
    )
    partner_profiles: int = Field(
        description="Profiles the partner holds, as the workers last counted them from their "
        "state (every FORWARDER_PARTNER_COUNT_INTERVAL_S): compare with the partner's count."
    )
    preview: PreviewStats | None = Field(description="Set while the connection is in preview.")
    workers_scraped: int
    workers_unreachable: int


class Access(BaseModel):
    """What the caller may do, for a console to offer only what the API would accept."""

    writes_enabled: bool
    token_valid: bool = Field(description="The request's bearer token would be accepted.")


class Explanation(BaseModel):
    """Why a profile is or is not at a connection's partner: identity types, never values."""

    mpid: str
    connection_id: str
    audience_id: str
    output_id: str
    connection_status: str
    output_exists: bool
    profile_known: bool
    member: bool
    membership_timestamp_ms: int | None
    identity_types: list[str] = Field(description="The types the profile has.")
    accepted_identity_types: list[str] = Field(description="The types the output accepts.")
    matching_identity_types: list[str]
    consent: dict[str, Any] = Field(description="The connection's rule and its verdict.")
    sent: dict[str, Any] | None = Field(
        description="What the partner was sent and holds: identity types, attribute names, "
        "the last record's action, record_id and timestamp, since when it holds the profile."
    )
    previewed: dict[str, Any] | None = Field(
        description="For a connection in preview, what it would have sent."
    )
    verdict: Verdict = Field(description="pending: it qualifies and its add is on its way.")
    partition: int = Field(description="The input partition holding the profile.")


class HeldIdentity(BaseModel):
    type: str
    value: str


class HeldMember(BaseModel):
    """One line of the export: a profile as its partner should hold it. The last line is
    ``{"next_cursor": ...}`` instead (null when the export is complete)."""

    mpid: str
    identities: list[HeldIdentity] = Field(description="As sent.")
    attributes: dict[str, Any] = Field(description="As sent.")
    since_ms: int | None = Field(description="When the partner was sent the profile first.")


class FieldProblem(BaseModel):
    field: str
    reason: str


class ValidationProblem(BaseModel):
    detail: list[FieldProblem]


class Problem(BaseModel):
    detail: str
