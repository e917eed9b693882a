"""The forwarding decisions: which outbound records one input event causes.

Plain functions over plain data (profile state, the event, the routing snapshot); no Kafka and
no asyncio. The stream processor is a thin shell that loads state, calls ``decide`` and sends
what it returns.

The model is reconciliation: after an event changes a profile, each connection the profile is
(or was) sent to is compared with what its partner should hold, and the difference goes out as
add, remove and attribute_update records. ``ProfileState.sent`` records what each partner holds,
which makes an add happen exactly once per (profile, connection) and lets a remove carry the
identities that were sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from core.routing import Routing
from partners.catalog import Output
from schemas.records import (
    ConnectionConfig,
    Consent,
    ErasureStatus,
    Identity,
    MembershipEvent,
    OutboundRecord,
    ProfileErasure,
    ProfileUpdate,
    SourceRef,
)
from schemas.state import MembershipState, ProfileState, SentState

DropReason = Literal[
    "no_accepted_identity", "inactive", "consent", "attributes_unsupported", "stale_event"
]
Action = Literal["add", "remove", "attribute_update"]
InputEvent = ProfileUpdate | ProfileErasure | MembershipEvent


@dataclass(frozen=True, slots=True)
class Drop:
    """A record that was not sent (or an attribute list that was ignored), and why."""

    reason: DropReason
    output_id: str | None = None
    connection_id: str | None = None


@dataclass(slots=True)
class Decision:
    """The profile's new state (None: erased, delete it) and what to send."""

    state: ProfileState | None
    records: list[OutboundRecord] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)
    erasure_statuses: list[ErasureStatus] = field(default_factory=list)


def new_profile(mpid: str) -> ProfileState:
    return ProfileState(mpid=mpid)


def decide(state: ProfileState, event: InputEvent, routing: Routing, source: SourceRef) -> Decision:
    """Apply one input event to a profile and return the new state and the records it causes."""
    if isinstance(event, ProfileErasure):
        return erase(state, event, routing, source)
    if isinstance(event, ProfileUpdate):
        updated = merge_profile(state, event)
    else:
        applied = apply_membership(state, event)
        if applied is None:
            return Decision(state=state, drops=[Drop(reason="stale_event")])
        updated = applied
    return reconcile(updated, routing, source, event.timestamp_ms)


def merge_profile(state: ProfileState, update: ProfileUpdate) -> ProfileState:
    """Merge an update: a key set to null removes it, an absent key leaves it unchanged."""
    identities = dict(state.identities)
    for identity_type, value in update.identities.items():
        values = (value,) if isinstance(value, str) else tuple(dict.fromkeys(value or ()))
        if values:
            identities[identity_type] = values
        else:
            identities.pop(identity_type, None)
    attributes = dict(state.attributes)
    for name, attribute in update.attributes.items():
        if attribute is None:
            attributes.pop(name, None)
        else:
            attributes[name] = attribute
    changes = {"identities": identities, "attributes": attributes}
    if update.consent is not None:
        changes["consent"] = merge_consent(state.consent, update.consent)
    return state.model_copy(update=changes)


def merge_consent(held: Consent, update: Consent) -> Consent:
    """Each GDPR purpose given replaces the one held unless it is older; CCPA likewise."""
    gdpr = dict(held.gdpr)
    for purpose, consent in update.gdpr.items():
        previous = gdpr.get(purpose)
        if not _older(consent.timestamp_ms, previous.timestamp_ms if previous else None):
            gdpr[purpose] = consent
    ccpa = held.ccpa
    if update.ccpa is not None and not _older(
        update.ccpa.timestamp_ms, ccpa.timestamp_ms if ccpa else None
    ):
        ccpa = update.ccpa
    return Consent(gdpr=gdpr, ccpa=ccpa)


def _older(timestamp_ms: int | None, than_ms: int | None) -> bool:
    return timestamp_ms is not None and than_ms is not None and timestamp_ms < than_ms


def consent_allows(consent: Consent, connection: ConnectionConfig) -> bool:
    rule = connection.consent
    if rule is None:
        return True
    for purpose in rule.require_gdpr:
        given = consent.gdpr.get(purpose)
        if given is None or not given.consented:
            return False
    return not (rule.block_ccpa_opt_out and consent.ccpa and consent.ccpa.data_sale_opt_out)


def apply_membership(state: ProfileState, event: MembershipEvent) -> ProfileState | None:
    """Record an add or remove; None when the event is older than the last one applied."""
    previous = state.memberships.get(event.audience_id)
    if previous is not None and event.timestamp_ms < previous.timestamp_ms:
        return None
    name = event.audience_name or (previous.audience_name if previous else None)
    memberships = dict(state.memberships)
    memberships[event.audience_id] = MembershipState(
        member=event.action == "add", audience_name=name, timestamp_ms=event.timestamp_ms
    )
    return state.model_copy(update={"memberships": memberships})


def is_member(state: ProfileState, audience_id: str) -> bool:
    membership = state.memberships.get(audience_id)
    return membership is not None and membership.member


def accepted_identities(state: ProfileState, output: Output) -> tuple[Identity, ...]:
    """The profile's identities of the types the output accepts, in a stable order."""
    return tuple(
        Identity(type=identity_type, value=value)
        for identity_type, values in sorted(state.identities.items())
        if identity_type in output.accepted_identities
        for value in values
    )


def forwarded_attributes(
    state: ProfileState, connection: ConnectionConfig, output: Output
) -> dict[str, Any]:
    if not output.supports_attributes:
        return {}
    return {
        name: state.attributes[name]
        for name in connection.forwarded_attributes
        if name in state.attributes
    }


def reconcile(
    state: ProfileState, routing: Routing, source: SourceRef, timestamp_ms: int
) -> Decision:
    """Bring every connection the profile concerns in line with what its partner should hold."""
    candidates: dict[str, ConnectionConfig | None] = {}
    for audience_id, membership in state.memberships.items():
        if membership.member:
            for member_connection in routing.connections_for(audience_id):
                candidates[member_connection.connection_id] = member_connection
    for connection_id in state.sent:
        if connection_id not in candidates:
            candidates[connection_id] = routing.find_connection(connection_id)

    sent = dict(state.sent)
    decision = Decision(state=state)
    for connection_id, connection in candidates.items():
        output = routing.find_output(connection.output_id) if connection else None
        if connection is None or output is None:
            sent.pop(connection_id, None)  # never configured here: nothing to tell anyone
            continue
        builder = _RecordBuilder(state, connection, output, source, timestamp_ms)
        if routing.is_live(connection):
            _reconcile_connection(builder, sent, decision)
        else:
            _disconnect(builder, sent, decision)
    if not _same_entries(sent, state.sent):
        decision.state = state.model_copy(update={"sent": sent})
    return decision


def _same_entries(after: dict[str, SentState], before: dict[str, SentState]) -> bool:
    # Entries are replaced, never mutated: identity tells "unchanged" without deep equality.
    return after.keys() == before.keys() and all(after[key] is before[key] for key in after)


def _disconnect(builder: _RecordBuilder, sent: dict[str, SentState], decision: Decision) -> None:
    """A deactivated or deleted connection stops at once; its partner keeps what it holds
    unless the connection says ``on_disconnect: remove``. Either way the record of what was
    sent is dropped, so a reactivation sends every current member as an add."""
    connection = builder.connection
    held = sent.pop(connection.connection_id, None)
    if held is not None and connection.on_disconnect == "remove":
        decision.records.append(builder.record("remove", held.identities, {}))
    if held is None and is_member(builder.state, connection.audience_id):
        decision.drops.append(builder.drop("inactive"))


def _reconcile_connection(
    builder: _RecordBuilder, sent: dict[str, SentState], decision: Decision
) -> None:
    state, connection, output = builder.state, builder.connection, builder.output
    member = is_member(state, connection.audience_id)
    allowed = consent_allows(state.consent, connection)
    held = sent.get(connection.connection_id)
    wanted = accepted_identities(state, output) if member and allowed else ()
    if member and not allowed:
        decision.drops.append(builder.drop("consent"))
    elif member and not wanted:
        decision.drops.append(builder.drop("no_accepted_identity"))
    if not wanted:
        if held is not None:
            decision.records.append(builder.record("remove", held.identities, {}))
            del sent[connection.connection_id]
        return
    attributes = forwarded_attributes(state, connection, output)
    if connection.forwarded_attributes and not output.supports_attributes:
        decision.drops.append(builder.drop("attributes_unsupported"))
    if held is None:
        decision.records.append(builder.record("add", wanted, attributes))
    else:
        lost = tuple(identity for identity in held.identities if identity not in wanted)
        gained = tuple(identity for identity in wanted if identity not in held.identities)
        if lost:
            decision.records.append(builder.record("remove", lost, {}))
        if gained:
            decision.records.append(builder.record("add", gained, attributes))
        else:
            changed = _changed_attributes(held.attributes, attributes)
            if changed:
                decision.records.append(builder.record("attribute_update", wanted, changed))
        if not lost and not gained and held.attributes == attributes:
            return
    sent[connection.connection_id] = SentState(
        output_id=output.output_id,
        audience_id=connection.audience_id,
        identities=wanted,
        attributes=attributes,
    )


def erase(
    state: ProfileState, erasure: ProfileErasure, routing: Routing, source: SourceRef
) -> Decision:
    """Remove the profile from every output that holds it, then forget it entirely.

    One status per output: "sent" where a remove went out, "skipped" where nothing was held.
    """
    decision = Decision(state=None)
    sent_to: set[str] = set()
    for connection_id, held in state.sent.items():
        connection = routing.find_connection(connection_id)
        output = routing.find_output(held.output_id)
        if connection is None or output is None:
            continue
        builder = _RecordBuilder(state, connection, output, source, erasure.timestamp_ms)
        decision.records.append(builder.record("remove", held.identities, {}))
        sent_to.add(output.output_id)
    for output_id in sorted(sent_to | routing.outputs.keys()):
        decision.erasure_statuses.append(
            ErasureStatus(
                request_id=erasure.request_id,
                mpid=state.mpid,
                output_id=output_id,
                status="sent" if output_id in sent_to else "skipped",
                timestamp_ms=erasure.timestamp_ms,
            )
        )
    return decision


def _changed_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Attributes whose value changed; one that is gone maps to None."""
    return {
        name: after.get(name)
        for name in before.keys() | after.keys()
        if before.get(name) != after.get(name)
    }


@dataclass(frozen=True, slots=True)
class _RecordBuilder:
    state: ProfileState
    connection: ConnectionConfig
    output: Output
    source: SourceRef
    timestamp_ms: int

    def drop(self, reason: DropReason) -> Drop:
        return Drop(reason, self.output.output_id, self.connection.connection_id)

    def record(
        self, action: Action, identities: tuple[Identity, ...], attributes: dict[str, Any]
    ) -> OutboundRecord:
        membership = self.state.memberships.get(self.connection.audience_id)
        return OutboundRecord(
            record_id=record_id(
                self.source, self.state.mpid, self.connection.connection_id, action
            ),
            output_id=self.output.output_id,
            partner=self.output.partner,
            connection_id=self.connection.connection_id,
            audience_id=self.connection.audience_id,
            audience_name=membership.audience_name if membership else None,
            mpid=self.state.mpid,
            action=action,
            identities=list(identities),
            attributes=attributes,
            timestamp_ms=self.timestamp_ms,
            source=self.source,
        )


def record_id(source: SourceRef, mpid: str, connection_id: str, action: Action) -> str:
    """Deterministic from the source coordinates, the profile, the connection and the action.

    A re-delivery after a crash reprocesses the same source record and so carries the same id,
    which lets consumers drop the duplicate.
    """
    # The profile is part of it: one sync request (one source record) reaches many profiles.
    key = "\x1f".join(
        (source.topic, str(source.partition), str(source.offset), mpid, connection_id, action)
    )
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
