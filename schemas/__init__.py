"""Contracts: the pydantic models of the records on the topics, and the state's types."""

from schemas.records import (
    ConnectionConfig,
    DeadLetter,
    DeadLetterError,
    Identity,
    IdentityType,
    MembershipEvent,
    OutboundRecord,
    OutputConfig,
    ProfileUpdate,
    SourceRef,
)
from schemas.state import MembershipState, ProfileState, SentState

__all__ = [
    "ConnectionConfig",
    "DeadLetter",
    "DeadLetterError",
    "Identity",
    "IdentityType",
    "MembershipEvent",
    "MembershipState",
    "OutboundRecord",
    "OutputConfig",
    "ProfileState",
    "ProfileUpdate",
    "SentState",
    "SourceRef",
]
