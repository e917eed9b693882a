"""The per-profile state the stream processor keeps (value of the profiles table changelog)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import Consent, Identity, IdentityType


class _State(BaseModel):
    model_config = ConfigDict(frozen=True)


class MembershipState(_State):
    """The last membership event applied for one audience.

    Kept after a remove too, so that an older event arriving late is recognised as stale.
    """

    member: bool
    audience_name: str | None = None
    timestamp_ms: int


class SentState(_State):
    """What one connection's partner holds of this profile: the identities and attributes sent."""

    output_id: str
    audience_id: str
    identities: tuple[Identity, ...]
    attributes: dict[str, Any] = Field(default_factory=dict)


class ProfileState(_State):
    mpid: str
    identities: dict[IdentityType, tuple[str, ...]] = Field(default_factory=dict)
    attributes: dict[str, Any] = Field(default_factory=dict)
    memberships: dict[str, MembershipState] = Field(default_factory=dict)
    sent: dict[str, SentState] = Field(default_factory=dict)
    consent: Consent = Field(default_factory=Consent)
