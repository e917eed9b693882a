"""Request and response bodies of the control-plane API (records themselves: schemas/records)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import ConsentRule, IdentityType, JsonValue, NonEmpty


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


class PartnerView(BaseModel):
    name: str
    description: str
    accepted_identities: list[IdentityType]
    supports_attributes: bool
    configurable: bool = Field(description="Outputs list the identity types they accept.")
    sink: str | None = Field(description="The built-in adapter delivering it, if any.")
    required_settings: list[str]
    optional_settings: list[str]


class ConnectionStats(BaseModel):
    """Summed over the workers scraped."""

    connection_id: str
    output_id: str
    added: int
    removed: int
    attribute_updates: int
    dropped: dict[str, int] = Field(description="Records not sent, by reason.")
    last_record_timestamp: float | None = Field(description="Unix seconds of the last send.")
    workers_scraped: int
    workers_unreachable: int


class FieldProblem(BaseModel):
    field: str
    reason: str


class ValidationProblem(BaseModel):
    detail: list[FieldProblem]


class Problem(BaseModel):
    detail: str
