"""The per-profile state the stream processor keeps (value of the profiles table changelog).

Plain dicts stored as JSON (written by orjson): the worker loads and stores one per event, so
no model is built. ``identities`` maps an identity type to its values, types in sorted order,
in the profile as in what each connection was sent. Version 1 (the pydantic ``ProfileState``
JSON, without ``v``) is still read: only its sent identities change shape.

A profile held by many connections is stored in parts (``SPLIT_FROM``): the state without its
sent entries, then each entry's JSON, so that loading it decodes only the rest, and an event
decodes only the entries of the connections it concerns (``sent_entry``); the entries it
leaves alone are written back as they were read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, NotRequired, TypedDict

import orjson
import pydantic_core

from schemas.plain import ConsentData

STATE_VERSION = 2
# Version 2 holding an integer beyond 64 bits (in an attribute): read it with an exact parser.
EXACT_INTEGERS_VERSION = 3


# Why a profile is or is not at a connection's partner (an operator's explain answer).
Verdict = Literal[
    "at_partner",
    "unknown_profile",
    "not_member",
    "consent",
    "no_accepted_identity",
    "inactive",
    "preview",
    "output_deleted",
    "pending",
]


class MembershipState(TypedDict):
    """The last membership event applied for one audience.

    Kept after a remove too, so that an older event arriving late is recognised as stale.
    """

    member: bool
    audience_name: str | None
    timestamp_ms: int


class SentState(TypedDict):
    """What one connection's partner holds of this profile: the identities and attributes sent.

    The same shape records what a connection in preview would have sent (``preview``).
    """

    output_id: str
    audience_id: str
    identities: dict[str, list[str]]
    attributes: dict[str, Any]
    # The last record sent: its id, action and timestamp (for explain); when the partner got
    # the profile first (for export); the resync generation it was sent in, when not 0. States
    # written before these were kept have none of them.
    record_id: NotRequired[str]
    action: NotRequired[str]
    timestamp_ms: NotRequired[int]
    since_ms: NotRequired[int]
    generation: NotRequired[int]


# A sent entry as loaded: decoded, or (a state stored in parts) its JSON until it is read.
SentEntry = SentState | bytes


class ProfileState(TypedDict):
    v: int
    mpid: str
    identities: dict[str, list[str]]
    attributes: dict[str, Any]
    memberships: dict[str, MembershipState]
    sent: dict[str, SentEntry]
    consent: ConsentData
    # Connections in preview: what each would have sent. Absent until a preview concerns the
    # profile, so other states keep their size.
    preview: NotRequired[dict[str, SentEntry]]
    # The number of the last sync mark of its partition the state includes (absent: none):
    # the syncs after it are replayed on it when it is read (streams/sync_marks.py).
    m: NotRequired[int]


# States with at least this many sent entries are stored in parts. Below it one JSON document
# costs less (a prototype of parts cost 3-connection profiles about 2 µs per event); at 9
# connections parts measured 28.1 against 29.9 µs per event of benchmarks.micro's wide mix.
SPLIT_FROM: Final = 8
# Separates the parts; orjson escapes it inside strings, so JSON never holds it.
_PART: Final = b"\x1e"
# The key of the part-stored state that lists its sent entries' connection ids, in part order.
_SENT_IDS: Final = "sent_ids"


def held_entry(entries: Mapping[str, SentEntry], connection_id: str) -> SentState | None:
    """A connection's sent (or previewed) entry, decoded; None when there is none."""
    entry = entries.get(connection_id)
    return sent_entry(entry) if entry is not None else None


def sent_entry(entry: SentEntry) -> SentState:
    """A sent entry, decoded. A part holds no integer beyond 64 bits (such a state is stored
    whole), so orjson reads it exactly."""
    if isinstance(entry, bytes):
        decoded: SentState = orjson.loads(entry)
        return decoded
    return entry


def new_profile(mpid: str) -> ProfileState:
    return {
        "v": STATE_VERSION,
        "mpid": mpid,
        "identities": {},
        "attributes": {},
        "memberships": {},
        "sent": {},
        "consent": {"gdpr": {}, "ccpa": None},
    }


def dumps(value: Any) -> bytes:
    """JSON bytes; pydantic's encoder takes the integers beyond 64 bits that orjson refuses."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json(value)


def load_profile(raw: bytes) -> ProfileState:
    if raw.startswith(_PART):
        return _from_parts(raw)
    try:
        state = orjson.loads(raw)
    except orjson.JSONDecodeError:
        state = None
    version = state.get("v") if isinstance(state, dict) else None
    if version == STATE_VERSION:
        profile: ProfileState = state
        return profile
    # orjson reads integers beyond 64 bits as floats (or not at all); pydantic's parser reads
    # them exactly. Such states are marked, so the common case is read with the faster orjson.
    state = pydantic_core.from_json(raw)
    if version == EXACT_INTEGERS_VERSION:
        state["v"] = STATE_VERSION
        return state  # type: ignore[no-any-return]
    return _from_version_1(state)


def dump_profile(state: ProfileState) -> bytes:
    """The state's JSON, in an allocation of its own size.

    orjson returns its output in the buffer it wrote it to: at least 4 KiB, 16 KiB for a 1 to
    2 KB state (orjson 3.12 on). States are held: the memory store keeps every profile's, and a
    sync's chunks thousands until Kafka acknowledges them. Uncopied, 100,000 profiles in the
    memory store took 590 MB of RSS. The copy costs less than it saves: 1.2 µs a state
    encoded and copied against 1.1 to 3.1 uncopied, when a batch's thousands are held.
    """
    sent = state["sent"]
    if len(sent) >= SPLIT_FROM:
        parts = _in_parts(state)
        if parts is not None:
            return parts
    for entry in sent.values():
        if isinstance(entry, bytes):  # read in parts, now too few for them
            state = {**state, "sent": {key: sent_entry(value) for key, value in sent.items()}}
            break
    try:
        encoded = orjson.dumps(state)
    except orjson.JSONEncodeError:
        return pydantic_core.to_json({**state, "v": EXACT_INTEGERS_VERSION})
    # Two parts: bytes.join returns a single part as it is, without copying it.
    return b"".join((encoded, b""))


def _in_parts(state: ProfileState) -> bytes | None:
    """The state in parts (None: a part needs an integer beyond 64 bits, so it is stored
    whole). Entries still as read are written as they are."""
    rest: dict[str, Any] = {key: value for key, value in state.items() if key != "sent"}
    rest[_SENT_IDS] = list(state["sent"])
    try:
        parts = [b"", orjson.dumps(rest)]
        for entry in state["sent"].values():
            parts.append(entry if isinstance(entry, bytes) else orjson.dumps(entry))
    except orjson.JSONEncodeError:
        return None
    return _PART.join(parts)


def _from_parts(raw: bytes) -> ProfileState:
    parts = raw.split(_PART)
    state = orjson.loads(parts[1])
    ids = state.pop(_SENT_IDS)
    entries = parts[2:]
    if len(ids) != len(entries):
        raise ValueError(
            f"a profile state in parts lists {len(ids)} sent entries and holds {len(entries)}"
        )
    state["sent"] = dict(zip(ids, entries, strict=True))
    profile: ProfileState = state
    return profile


def _from_version_1(old: dict[str, Any]) -> ProfileState:
    """Read the pydantic ``ProfileState`` JSON (every field but ``mpid`` had a default)."""
    state = new_profile(old["mpid"])
    state["identities"] = dict(sorted(old.get("identities", {}).items()))
    state["attributes"] = old.get("attributes", {})
    state["memberships"] = {
        audience_id: {
            "member": held["member"],
            "audience_name": held.get("audience_name"),
            "timestamp_ms": held["timestamp_ms"],
        }
        for audience_id, held in old.get("memberships", {}).items()
    }
    state["sent"] = {
        connection_id: {
            "output_id": held["output_id"],
            "audience_id": held["audience_id"],
            "identities": _grouped(held["identities"]),
            "attributes": held.get("attributes", {}),
        }
        for connection_id, held in old.get("sent", {}).items()
    }
    consent = old.get("consent") or {}
    state["consent"] = {
        "gdpr": {
            purpose: {"consented": given["consented"], "timestamp_ms": given.get("timestamp_ms")}
            for purpose, given in consent.get("gdpr", {}).items()
        },
        "ccpa": consent.get("ccpa"),
    }
    return state


def _grouped(identities: list[dict[str, str]]) -> dict[str, list[str]]:
    # Version 1 kept (type, value) pairs sorted by type; the worker only ever sent raw values.
    grouped: dict[str, list[str]] = {}
    for identity in identities:
        grouped.setdefault(identity["type"], []).append(identity["value"])
    return grouped
