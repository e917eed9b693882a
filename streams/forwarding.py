"""The forwarding decisions: which outbound records one input event causes.

Plain functions over plain data (profile state dicts, the parsed event, the routing snapshot);
no Kafka and no asyncio. The stream processor is a thin shell that loads state, calls
``decide`` and sends what it returns: each record already serialized once, with the fields
that route it and count it beside the bytes.

The model is reconciliation: after an event changes a profile, each connection the change can
concern is compared with what its partner should hold, and the difference goes out as add,
remove and attribute_update records. Config changes reach profiles through their syncs, so a
live event evaluates only the connections its own change concerns. ``ProfileState["sent"]``
records what each partner holds, which makes an add happen exactly once per (profile,
connection) and lets a remove carry the identities that were sent.

States are never mutated: a changed state is a new dict (sharing what did not change), so the
caller can tell "unchanged" by identity. Records are plain slotted classes, not frozen ones:
one is built per record and a frozen class costs twice as much to build. The classes built per
event write their own ``__init__``: mypyc compiles it, where the one ``@dataclass`` generates
runs interpreted (0.5 against 0.08 µs a build); the dataclass keeps their repr and equality.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from core.routing import Routing
from partners.catalog import Output
from schemas.plain import (
    ConsentData,
    InputEventData,
    MembershipEventData,
    ProfileErasureData,
    ProfileUpdateData,
)
from schemas.records import ConnectionConfig
from schemas.state import (
    MembershipState,
    ProfileState,
    SentEntry,
    SentState,
    dumps,
    held_entry,
    new_profile,
    sent_entry,
)

DropReason = Literal[
    "no_accepted_identity", "inactive", "consent", "attributes_unsupported", "stale_event"
]
Action = Literal["add", "remove", "attribute_update"]
Identities = dict[str, list[str]]

__all__ = ["new_profile"]  # re-exported: the processor starts unknown profiles with it


class Source(NamedTuple):
    """Where an input record was read (the ``source`` of every record derived from it)."""

    topic: str
    partition: int
    offset: int


@dataclass(slots=True, init=False)
class Drop:
    """A record that was not sent (or an attribute list that was ignored), and why."""

    reason: DropReason
    output_id: str | None
    connection_id: str | None

    def __init__(
        self, reason: DropReason, output_id: str | None = None, connection_id: str | None = None
    ) -> None:
        self.reason = reason
        self.output_id = output_id
        self.connection_id = connection_id


@dataclass(slots=True, init=False)
class Outbound:
    """One OutboundRecord, serialized: ``value`` goes to forward-<output_id> under key mpid."""

    output_id: str
    connection_id: str
    action: Action
    mpid: str
    value: bytes

    def __init__(
        self, output_id: str, connection_id: str, action: Action, mpid: str, value: bytes
    ) -> None:
        self.output_id = output_id
        self.connection_id = connection_id
        self.action = action
        self.mpid = mpid
        self.value = value


@dataclass(slots=True)
class Previewed:
    """How one profile changed what a connection in preview would have sent (nothing was)."""

    output_id: str
    connection_id: str
    # The records it would have sent, by action.
    actions: list[Action]
    # +1: the profile would join the partner's list; -1: it would leave it.
    member_delta: int
    # Per identity type: +1 when the partner would now hold the type for the profile, -1 no more.
    identity_deltas: dict[str, int]


@dataclass(slots=True)
class ErasureOutcome:
    """One ErasureStatus, serialized: ``value`` goes to forwarder-erasure-status, key mpid."""

    output_id: str
    status: Literal["sent", "skipped"]
    mpid: str
    value: bytes


@dataclass(slots=True, init=False)
class Decision:
    """The profile's new state (None: erased, delete it) and what to send."""

    state: ProfileState | None
    records: list[Outbound]
    drops: list[Drop]
    erasure_statuses: list[ErasureOutcome]
    # None, not an empty list, unless a connection in preview concerns the profile: one list
    # fewer per event on the hot path.
    previews: list[Previewed] | None

    def __init__(
        self,
        state: ProfileState | None,
        records: list[Outbound] | None = None,
        drops: list[Drop] | None = None,
        erasure_statuses: list[ErasureOutcome] | None = None,
        previews: list[Previewed] | None = None,
    ) -> None:
        self.state = state
        self.records = records if records is not None else []
        self.drops = drops if drops is not None else []
        self.erasure_statuses = erasure_statuses if erasure_statuses is not None else []
        self.previews = previews

    def previewed(self, change: Previewed) -> None:
        if self.previews is None:
            self.previews = []
        self.previews.append(change)


def decide(
    state: ProfileState, event: InputEventData, routing: Routing, source: Source
) -> Decision:
    """Apply one input event to a profile and return the new state and the records it causes."""
    if "audience_id" in event:
        applied = apply_membership(state, event)
        if applied is None:
            return Decision(state=state, drops=[Drop(reason="stale_event")])
        # Only the audience's own connections can change: the profile's identities, attributes
        # and consent did not, and a config change reaches the others through its sync. A
        # profile in many audiences pays for one audience's connections, not for all of them.
        audience = [
            connection.connection_id for connection in routing.connections_for(event["audience_id"])
        ]
        return reconcile(applied, routing, source, event["timestamp_ms"], only=audience)
    if event["type"] == "profile_erasure":
        return erase(state, event, routing, source)
    merged = merge_profile(state, event)
    only = _concerned_by_update(state, merged, event, routing)
    return reconcile(merged, routing, source, event["timestamp_ms"], only=only)


def merge_profile(state: ProfileState, update: ProfileUpdateData) -> ProfileState:
    """Merge an update: a key set to null removes it, an absent key leaves it unchanged."""
    merged = state.copy()
    if update["identities"]:
        identities = dict(state["identities"])
        for identity_type, value in update["identities"].items():
            # str(): keys are IdentityType members, which orjson does not take as keys.
            key = str(identity_type)
            values = [value] if isinstance(value, str) else list(dict.fromkeys(value or ()))
            if values:
                identities[key] = values
            else:
                identities.pop(key, None)
        # Kept sorted by type: the order records list identities in, without a sort per send.
        merged["identities"] = dict(sorted(identities.items()))
    if update["attributes"]:
        attributes = dict(state["attributes"])
        for name, attribute in update["attributes"].items():
            if attribute is None:
                attributes.pop(name, None)
            else:
                attributes[name] = attribute
        merged["attributes"] = attributes
    if update["consent"] is not None:
        merged["consent"] = merge_consent(state["consent"], update["consent"])
    return merged


def _concerned_by_update(
    before: ProfileState, after: ProfileState, update: ProfileUpdateData, routing: Routing
) -> list[str] | None:
    """The connections a profile update can change: every one of the profile's (None) when its
    identities or consent changed, else those forwarding an attribute that changed. Config
    changes reach connections through their syncs, so an update that changes neither sends
    nothing, and costs nothing per connection."""
    if after["identities"] != before["identities"] or after["consent"] != before["consent"]:
        return None
    held, merged = before["attributes"], after["attributes"]
    changed = {name for name in update["attributes"] if held.get(name) != merged.get(name)}
    if not changed:
        return []
    return [
        connection_id
        for connection_id, connection in _concerned(
            after, routing, after.get("preview") or {}
        ).items()
        if connection is not None
        and any(name in changed for name in connection.forwarded_attributes)
    ]


def merge_consent(held: ConsentData, update: ConsentData) -> ConsentData:
    """Each GDPR purpose given replaces the one held unless it is older; CCPA likewise."""
    gdpr = dict(held["gdpr"])
    for purpose, consent in update["gdpr"].items():
        previous = gdpr.get(purpose)
        if not _older(consent["timestamp_ms"], previous["timestamp_ms"] if previous else None):
            gdpr[purpose] = consent
    ccpa = held["ccpa"]
    new_ccpa = update["ccpa"]
    if new_ccpa is not None and not _older(
        new_ccpa["timestamp_ms"], ccpa["timestamp_ms"] if ccpa else None
    ):
        ccpa = new_ccpa
    return {"gdpr": gdpr, "ccpa": ccpa}


def _older(timestamp_ms: int | None, than_ms: int | None) -> bool:
    return timestamp_ms is not None and than_ms is not None and timestamp_ms < than_ms


def consent_allows(consent: ConsentData, connection: ConnectionConfig) -> bool:
    rule = connection.consent
    if rule is None:
        return True
    for purpose in rule.require_gdpr:
        given = consent["gdpr"].get(purpose)
        if given is None or not given["consented"]:
            return False
    ccpa = consent["ccpa"]
    return not (rule.block_ccpa_opt_out and ccpa and ccpa["data_sale_opt_out"])


def apply_membership(state: ProfileState, event: MembershipEventData) -> ProfileState | None:
    """Record an add or remove; None when the event is older than the last one applied."""
    audience_id = event["audience_id"]
    previous = state["memberships"].get(audience_id)
    if previous is not None and event["timestamp_ms"] < previous["timestamp_ms"]:
        return None
    name = event["audience_name"] or (previous["audience_name"] if previous else None)
    memberships = dict(state["memberships"])
    memberships[audience_id] = {
        "member": event["action"] == "add",
        "audience_name": name,
        "timestamp_ms": event["timestamp_ms"],
    }
    applied = state.copy()
    applied["memberships"] = memberships
    return applied


def is_member(state: ProfileState, audience_id: str) -> bool:
    membership = state["memberships"].get(audience_id)
    return membership is not None and membership["member"]


def accepted_identities(state: ProfileState, output: Output) -> Identities:
    """The profile's identities of the types the output accepts, sorted by type."""
    accepted = output.accepted_identities
    return {
        identity_type: values
        for identity_type, values in state["identities"].items()
        if identity_type in accepted
    }


def forwarded_attributes(
    state: ProfileState, connection: ConnectionConfig, output: Output
) -> dict[str, Any]:
    if not output.supports_attributes:
        return {}
    attributes = state["attributes"]
    return {
        name: attributes[name] for name in connection.forwarded_attributes if name in attributes
    }


def reconcile(
    state: ProfileState,
    routing: Routing,
    source: Source,
    timestamp_ms: int,
    only: Collection[str] | None = None,
) -> Decision:
    """Bring every connection the profile concerns in line with what its partner should hold;
    with ``only`` (a sync's connections, a membership event's audience's), just those, the
    others staying as they are."""
    previewed = state.get("preview") or {}
    candidates = (
        _concerned(state, routing, previewed)
        if only is None
        else _concerned_among(only, state, routing, previewed)
    )
    sent = dict(state["sent"])
    preview = dict(previewed)
    decision = Decision(state=state)
    sends = _Sends(state, routing, source, timestamp_ms, decision)
    for connection_id, connection in candidates.items():
        output = routing.find_output(connection.output_id) if connection else None
        if connection is None or output is None:
            sent.pop(connection_id, None)  # never configured here: nothing to tell anyone
            _forget_preview(connection_id, preview, decision)
            continue
        if routing.is_live(connection):
            if preview:
                # A preview switched to active starts from nothing: its initial sync sends all.
                _forget_preview(connection_id, preview, decision)
            _reconcile_connection(sends, connection, output, sent)
        elif routing.is_previewed(connection):
            builder = sends.builder(connection, output, sends.held(connection_id))
            if connection_id in sent:
                _disconnect(builder, sent)  # an active connection put in preview
            _preview_connection(builder, preview)
        else:
            _forget_preview(connection_id, preview, decision)
            _disconnect(sends.builder(connection, output, sends.held(connection_id)), sent)
    if not _same_entries(sent, state["sent"]) or not _same_entries(preview, previewed):
        changed = state.copy()
        changed["sent"] = sent
        if preview:
            changed["preview"] = preview
        else:
            changed.pop("preview", None)
        decision.state = changed
    return decision


def _concerned(
    state: ProfileState, routing: Routing, previewed: dict[str, SentEntry]
) -> dict[str, ConnectionConfig | None]:
    """The connections of the profile's audiences, and those holding it (or previewing it):
    None for one never configured here."""
    candidates: dict[str, ConnectionConfig | None] = {}
    for audience_id, membership in state["memberships"].items():
        if membership["member"]:
            for connection in routing.connections_for(audience_id):
                candidates[connection.connection_id] = connection
    for held_ids in (state["sent"], previewed):
        for connection_id in held_ids:
            if connection_id not in candidates:
                candidates[connection_id] = routing.find_connection(connection_id)
    return candidates


def _concerned_among(
    only: Collection[str], state: ProfileState, routing: Routing, previewed: dict[str, SentEntry]
) -> dict[str, ConnectionConfig | None]:
    """``_concerned`` restricted to ``only``, in time proportional to it: a profile in many
    audiences is not walked whole for one connection."""
    candidates: dict[str, ConnectionConfig | None] = {}
    sent = state["sent"]
    for connection_id in only:
        live = routing.connections.get(connection_id)
        if live is not None and is_member(state, live.audience_id):
            candidates[connection_id] = live
        elif connection_id in sent or connection_id in previewed:
            candidates[connection_id] = routing.find_connection(connection_id)
    return candidates


def _preview_connection(builder: _RecordBuilder, preview: dict[str, SentEntry]) -> None:
    """Evaluate the profile exactly as for an active connection, against what the preview
    would have sent; record the difference instead of sending it."""
    connection, output = builder.connection, builder.output
    before = preview.get(connection.connection_id)
    actions: list[Action] = []
    builder.preview_actions = actions
    _reconcile_connection(builder.sends, connection, output, preview, builder)
    after = preview.get(connection.connection_id)
    if after is not before:
        change = _preview_change(
            output.output_id,
            connection.connection_id,
            actions,
            sent_entry(before) if before is not None else None,
            sent_entry(after) if after is not None else None,
        )
        builder.sends.decision.previewed(change)


def _forget_preview(connection_id: str, preview: dict[str, SentEntry], decision: Decision) -> None:
    """A connection no longer in preview: its count of what it would have sent goes."""
    before = preview.pop(connection_id, None)
    if before is not None:
        held = sent_entry(before)
        decision.previewed(_preview_change(held["output_id"], connection_id, [], held, None))


def _preview_change(
    output_id: str,
    connection_id: str,
    actions: list[Action],
    before: SentState | None,
    after: SentState | None,
) -> Previewed:
    had = before["identities"].keys() if before else set()
    has = after["identities"].keys() if after else set()
    deltas = {identity_type: 1 for identity_type in has - had}
    deltas.update((identity_type, -1) for identity_type in had - has)
    member_delta = (after is not None) - (before is not None)
    return Previewed(output_id, connection_id, actions, member_delta, deltas)


def _same_entries(after: dict[str, SentEntry], before: dict[str, SentEntry]) -> bool:
    # Entries are replaced, never mutated: identity tells "unchanged" without deep equality.
    # A loop, not all(): no generator per call on the hot path.
    if len(after) != len(before):
        return False
    for key, entry in after.items():  # noqa: SIM110
        if before.get(key) is not entry:
            return False
    return True


def _disconnect(builder: _RecordBuilder, sent: dict[str, SentEntry]) -> None:
    """A deactivated or deleted connection stops at once; its partner keeps what it holds
    unless the connection says ``on_disconnect: remove``. Either way the record of what was
    sent is dropped, so a reactivation sends every current member as an add."""
    connection = builder.connection
    held = sent.pop(connection.connection_id, None)
    if held is not None and connection.on_disconnect == "remove":
        builder.emit("remove", sent_entry(held)["identities"], {})
    if held is None and is_member(builder.sends.state, connection.audience_id):
        builder.sends.decision.drops.append(_drop("inactive", connection, builder.output))


def _reconcile_connection(
    sends: _Sends,
    connection: ConnectionConfig,
    output: Output,
    sent: dict[str, SentEntry],
    builder: _RecordBuilder | None = None,
) -> None:
    """Bring one connection's partner (``sent``: what it holds) in line with the profile. Most
    events change nothing for most connections: the record builder is built only to send."""
    state, drops = sends.state, sends.decision.drops
    member = is_member(state, connection.audience_id)
    allowed = member and consent_allows(state["consent"], connection)
    stored = sent.get(connection.connection_id)
    # sent_entry's check, inline: calling it (another compiled module) for every entry cost
    # 0.5 to 1.5 µs more per event in benchmarks.micro.
    held = sent_entry(stored) if isinstance(stored, bytes) else stored
    wanted = accepted_identities(state, output) if allowed else {}
    if member and not allowed:
        drops.append(_drop("consent", connection, output))
    elif member and not wanted:
        drops.append(_drop("no_accepted_identity", connection, output))
    if not wanted:
        if held is not None:
            builder = builder or sends.builder(connection, output, held)
            builder.emit("remove", held["identities"], {})
            del sent[connection.connection_id]
        return
    attributes = forwarded_attributes(state, connection, output)
    if connection.forwarded_attributes and not output.supports_attributes:
        drops.append(_drop("attributes_unsupported", connection, output))
    generation = sends.routing.resync_generation(connection.connection_id)
    if held is not None and held.get("generation", 0) >= generation:
        held_identities = held["identities"]
        same = held_identities == wanted
        lost = {} if same else _missing(held_identities, wanted)
        gained = {} if same else _missing(wanted, held_identities)
        same_attributes = held["attributes"] == attributes
        if not lost and not gained and same_attributes:
            return  # the partner holds what it should
        builder = builder or sends.builder(connection, output, held)
        if lost:
            builder.emit("remove", lost, {})
        if gained:
            builder.emit("add", gained, attributes)
        elif not same_attributes:
            changed = _changed_attributes(held["attributes"], attributes)
            if changed:
                builder.emit("attribute_update", wanted, changed)
    else:
        builder = builder or sends.builder(connection, output, held)
        if held is not None:
            # A resync: everything the partner should hold goes again, under record ids of
            # this generation, so that consumers dropping duplicate ids do not drop these.
            builder.generation = generation
            lost = _missing(held["identities"], wanted)
            if lost:
                builder.emit("remove", lost, {})
        builder.emit("add", wanted, attributes)
    assert builder.last_action is not None, "every path here emitted a record"
    entry: SentState = {
        "output_id": output.output_id,
        "audience_id": connection.audience_id,
        "identities": wanted,
        "attributes": attributes,
        "action": builder.last_action,
        "timestamp_ms": sends.timestamp_ms,
        "since_ms": held.get("since_ms", sends.timestamp_ms) if held else sends.timestamp_ms,
    }
    if builder.last_record_id is not None:
        entry["record_id"] = builder.last_record_id
    if generation:
        entry["generation"] = generation
    sent[connection.connection_id] = entry


def _drop(reason: DropReason, connection: ConnectionConfig, output: Output) -> Drop:
    return Drop(reason, output.output_id, connection.connection_id)


def _missing(identities: Identities, from_: Identities) -> Identities:
    """The identities that ``from_`` does not hold, in their order."""
    missing: Identities = {}
    for identity_type, values in identities.items():
        there = from_.get(identity_type, ())
        kept = [value for value in values if value not in there]
        if kept:
            missing[identity_type] = kept
    return missing


def erase(
    state: ProfileState, erasure: ProfileErasureData, routing: Routing, source: Source
) -> Decision:
    """Remove the profile from every output that holds it, then forget it entirely.

    One status per output: "sent" where a remove went out, "skipped" where nothing was held.
    """
    decision = Decision(state=None)
    sends = _Sends(state, routing, source, erasure["timestamp_ms"], decision)
    sent_to: set[str] = set()
    for connection_id, stored in state["sent"].items():
        held = sent_entry(stored)
        connection = routing.find_connection(connection_id)
        output = routing.find_output(held["output_id"])
        if connection is None or output is None:
            continue
        sends.builder(connection, output, held).emit("remove", held["identities"], {})
        sent_to.add(output.output_id)
    mpid = state["mpid"]
    for output_id in sorted(sent_to | routing.outputs.keys()):
        status: Literal["sent", "skipped"] = "sent" if output_id in sent_to else "skipped"
        # The field order of schemas.records.ErasureStatus: the same bytes as its JSON.
        value = dumps(
            {
                "request_id": erasure["request_id"],
                "mpid": mpid,
                "output_id": output_id,
                "status": status,
                "timestamp_ms": erasure["timestamp_ms"],
            }
        )
        decision.erasure_statuses.append(ErasureOutcome(output_id, status, mpid, value))
    return decision


def _changed_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Attributes whose value changed; one that is gone maps to None. In a fixed order (after's,
    then before's): the record's bytes and its record_id are the same on every worker."""
    changed = {name: value for name, value in after.items() if before.get(name) != value}
    for name, value in before.items():
        if value is not None and name not in after:
            changed[name] = None
    return changed


@dataclass(slots=True, init=False)
class _Sends:
    """What the records of one reconcile (or erasure) share, and where they go."""

    state: ProfileState
    routing: Routing
    source: Source
    timestamp_ms: int
    decision: Decision

    def __init__(
        self,
        state: ProfileState,
        routing: Routing,
        source: Source,
        timestamp_ms: int,
        decision: Decision,
    ) -> None:
        self.state = state
        self.routing = routing
        self.source = source
        self.timestamp_ms = timestamp_ms
        self.decision = decision

    def builder(
        self, connection: ConnectionConfig, output: Output, held: SentState | None
    ) -> _RecordBuilder:
        """The records' builder for a connection whose partner holds ``held`` (the profile's
        sent entry for it, before this reconcile)."""
        return _RecordBuilder(
            self,
            connection,
            output,
            self.routing.epoch(connection.connection_id),
            last_record_id=held.get("record_id") if held else None,
        )

    def held(self, connection_id: str) -> SentState | None:
        return held_entry(self.state["sent"], connection_id)


@dataclass(slots=True, init=False)
class _RecordBuilder:
    sends: _Sends
    connection: ConnectionConfig
    output: Output
    # The connection's config epoch (Routing.epoch): part of its record ids.
    epoch: int
    # Set for a resync's sends only: their record ids include it.
    generation: int
    # A connection in preview: the actions it would have sent, instead of records.
    preview_actions: list[Action] | None
    last_action: Action | None
    # The record_id of the connection's latest send for the profile: the next one's chains
    # on it. Starts as the one the state holds.
    last_record_id: str | None

    def __init__(
        self,
        sends: _Sends,
        connection: ConnectionConfig,
        output: Output,
        epoch: int,
        last_record_id: str | None,
    ) -> None:
        self.sends = sends
        self.connection = connection
        self.output = output
        self.epoch = epoch
        self.generation = 0
        self.preview_actions = None
        self.last_action = None
        self.last_record_id = last_record_id

    def emit(self, action: Action, identities: Identities, attributes: dict[str, Any]) -> None:
        """Send a record, or, in preview, note the action that would have been sent."""
        self.last_action = action
        if self.preview_actions is not None:
            self.preview_actions.append(action)
            self.last_record_id = None  # nothing was sent
        else:
            self.sends.decision.records.append(self.record(action, identities, attributes))

    def record(
        self, action: Action, identities: Identities, attributes: dict[str, Any]
    ) -> Outbound:
        sends, connection, output = self.sends, self.connection, self.output
        state, source = sends.state, sends.source
        mpid = state["mpid"]
        membership: MembershipState | None = state["memberships"].get(connection.audience_id)
        self.last_record_id = record_id(
            mpid,
            connection.connection_id,
            action,
            identities,
            attributes,
            previous=self.last_record_id,
            membership_ms=membership["timestamp_ms"] if membership else 0,
            epoch=self.epoch,
            generation=self.generation,
        )
        # The field order of schemas.records.OutboundRecord: the same bytes as its JSON.
        value = dumps(
            {
                "record_id": self.last_record_id,
                "output_id": output.output_id,
                "partner": output.partner,
                "connection_id": connection.connection_id,
                "audience_id": connection.audience_id,
                "audience_name": membership["audience_name"] if membership else None,
                "mpid": mpid,
                "action": action,
                "identities": [
                    {"type": identity_type, "value": value, "encoding": "raw"}
                    for identity_type, values in identities.items()
                    for value in values
                ],
                "attributes": attributes,
                "timestamp_ms": sends.timestamp_ms,
                "source": {
                    "topic": source.topic,
                    "partition": source.partition,
                    "offset": source.offset,
                },
            }
        )
        return Outbound(output.output_id, connection.connection_id, action, mpid, value)


def record_id(
    mpid: str,
    connection_id: str,
    action: Action,
    identities: Identities,
    attributes: dict[str, Any],
    *,
    previous: str | None,
    membership_ms: int,
    epoch: int,
    generation: int = 0,
) -> str:
    """Deterministic from the profile's state and the connection's config, never from the
    input record that triggered the send.

    A replay after a crash or a rebalance may read the two input topics in another order, so
    the same add can be triggered by the profile update instead of the membership event: it
    still gets the same id, which lets consumers drop the duplicate. The parts: the profile,
    the connection and its config epoch, the action and what it carries, the record_id of the
    connection's previous send for the profile (so an add after a remove differs from the
    first add), the audience membership's timestamp (so does an add after an erasure), and a
    resync's generation.
    """
    content = dumps([identities, attributes])
    key = "\x1f".join((mpid, connection_id, str(epoch), action, previous or "", str(membership_ms)))
    if generation:
        key += f"\x1fresync-{generation}"
    digest = hashlib.blake2b(key.encode(), digest_size=16)
    digest.update(content)
    return digest.hexdigest()
