"""Operator reads of the profile state: why a profile is or is not at a partner, and what a
partner should hold. Pure functions over plain data, no Kafka.

They only read: a state passed in is never changed, and nothing here is on the input path.
Identity values never appear in an explanation, only their types; the export of what a
partner holds (``held_member``) carries them, which is why its endpoint needs the token.
"""

from __future__ import annotations

from typing import Any

from core.routing import Routing
from partners.catalog import Output
from schemas.records import ConnectionConfig
from schemas.state import ProfileState, SentState, Verdict, held_entry
from streams.forwarding import consent_allows


def explain(
    mpid: str,
    state: ProfileState | None,
    connection: ConnectionConfig,
    output: Output | None,
    routing: Routing,
) -> dict[str, Any]:
    """Why the profile is or is not at the connection's partner (types only, never values)."""
    connection_id = connection.connection_id
    membership = state["memberships"].get(connection.audience_id) if state else None
    member = membership is not None and membership["member"]
    identity_types = sorted(state["identities"]) if state else []
    accepted = sorted(output.accepted_identities) if output else []
    matching = [identity_type for identity_type in identity_types if identity_type in accepted]
    allowed = consent_allows(state["consent"], connection) if state else True
    held = held_entry(state["sent"], connection_id) if state else None
    previewed = held_entry(state.get("preview") or {}, connection_id) if state else None
    return {
        "mpid": mpid,
        "connection_id": connection_id,
        "audience_id": connection.audience_id,
        "output_id": connection.output_id,
        "connection_status": connection.status,
        "output_exists": output is not None and connection.output_id in routing.outputs,
        "profile_known": state is not None,
        "member": member,
        "membership_timestamp_ms": membership["timestamp_ms"] if membership else None,
        "identity_types": identity_types,
        "accepted_identity_types": accepted,
        "matching_identity_types": matching,
        "consent": {
            "rule": connection.consent.model_dump(mode="json") if connection.consent else None,
            "allowed": allowed,
        },
        "sent": _sent_view(held),
        "previewed": _sent_view(previewed),
        "verdict": _verdict(
            state, member, allowed, bool(matching), held, connection, output, routing
        ),
    }


def _sent_view(held: SentState | None) -> dict[str, Any] | None:
    if held is None:
        return None
    return {
        "identity_types": sorted(held["identities"]),
        "attribute_names": sorted(held["attributes"]),
        "last_action": held.get("action"),
        "last_record_id": held.get("record_id"),
        "last_timestamp_ms": held.get("timestamp_ms"),
        "since_ms": held.get("since_ms"),
        "resync_generation": held.get("generation", 0),
    }


def _verdict(
    state: ProfileState | None,
    member: bool,
    allowed: bool,
    has_accepted: bool,
    held: SentState | None,
    connection: ConnectionConfig,
    output: Output | None,
    routing: Routing,
) -> Verdict:
    """One word for the answer; the fields beside it say the rest. Checked in the order the
    worker decides: the connection, then the profile."""
    if held is not None:
        # Held and live: at the partner. Held but not live: kept there (on_disconnect: keep
        # is only forgotten at the next reconciliation), still at the partner.
        return "at_partner"
    if output is None or connection.output_id not in routing.outputs:
        return "output_deleted"
    if connection.status == "inactive":
        return "inactive"
    if state is None:
        return "unknown_profile"
    if not member:
        return "not_member"
    if not allowed:
        return "consent"
    if not has_accepted:
        return "no_accepted_identity"
    if connection.status == "preview":
        return "preview"
    # Live, a member that qualifies, and nothing sent yet: the sync or event is on its way.
    return "pending"


def held_member(state: ProfileState, connection_id: str) -> dict[str, Any] | None:
    """What the connection's partner holds of the profile, as sent, or None."""
    held = held_entry(state["sent"], connection_id)
    if held is None:
        return None
    return {
        "mpid": state["mpid"],
        "identities": [
            {"type": identity_type, "value": value}
            for identity_type, values in held["identities"].items()
            for value in values
        ],
        "attributes": held["attributes"],
        "since_ms": held.get("since_ms"),
    }
