"""Sync marks: a sync that sends what its connections' partners lack without rewriting every
synced profile's state.

A sync's outcome for one profile is a pure function of the profile's state, the synced
connections' config and the sync's source and timestamp (``reconcile``). So instead of writing
each synced state, a sync (once every record it sent is acknowledged) writes one mark per
partition: that config, source and timestamp, numbered. A state records the number of the
last mark it includes (``m``); a state written before a mark is brought up to date by
replaying the marks after its number (``caught_up``) wherever it is read: by the next event
that touches it, by the next sync, by the operator reads. The replay reproduces the state the
sync would have written, byte for byte, because nothing wrote the profile in between (any
write includes every mark). The records the replay would send are dropped: the sync sent them.

Marks pile up per partition until a sync finds ``FORWARDER_SYNC_MARKS_MAX`` of them: that
sync writes every state the marks change, as syncs did before marks, and clears them (0 makes
every sync write its states).

Plain data and plain functions, no Kafka and no asyncio.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from core.routing import Routing
from partners.catalog import Output
from schemas.records import ConnectionConfig
from schemas.state import ProfileState
from streams.forwarding import Source, reconcile

# Its own byte after the partition's key prefix: 0xff never occurs in UTF-8, so no mpid's
# state key (``processor.state_key``) can be it.
_MARKS_SUFFIX = b"\xff"


@dataclass(frozen=True, slots=True)
class SyncMark:
    """One sync of one partition: what its replay needs to decide as the sync decided."""

    seq: int
    connection_ids: tuple[str, ...]
    # Only the synced connections and their outputs, as the sync read them: a reconcile
    # restricted to some connections reads nothing else of the routing.
    routing: Routing
    source: Source
    timestamp_ms: int

    def needles(self) -> set[bytes]:
        """Bytes that a state this mark changes holds: its audiences' and connections' ids as
        JSON strings (a member names its audience, a sent entry its connection)."""
        found: set[bytes] = set()
        for connection_id in self.connection_ids:
            connection = self.routing.find_connection(connection_id)
            if connection is not None:
                found.add(orjson.dumps(connection.audience_id))
            found.add(orjson.dumps(connection_id))
        return found


@dataclass(frozen=True, slots=True)
class SyncMarks:
    """A partition's marks, oldest first, and the number of the last one written (kept when
    the marks are cleared, so that numbers are never reused)."""

    seq: int
    marks: tuple[SyncMark, ...]

    def behind(self, state: ProfileState) -> bool:
        return bool(self.marks) and state.get("m", 0) < self.marks[-1].seq

    def with_mark(self, mark: SyncMark) -> SyncMarks:
        return SyncMarks(mark.seq, (*self.marks, mark))

    def cleared(self) -> SyncMarks:
        return SyncMarks(self.seq, ())

    def needles(self) -> set[bytes]:
        """What ``SyncMark.needles`` finds for any of the marks."""
        found: set[bytes] = set()
        for mark in self.marks:
            found |= mark.needles()
        return found


NO_MARKS = SyncMarks(0, ())


def marks_key(partition_prefix: bytes) -> bytes:
    """The table key of a partition's marks, after its key prefix (``state_key(p, "")``)."""
    return partition_prefix + _MARKS_SUFFIX


def caught_up(state: ProfileState, marks: SyncMarks) -> ProfileState:
    """The state as the syncs of the marks it does not include would have written it; the
    state itself when it includes them all."""
    covered = state.get("m", 0)
    for mark in marks.marks:
        if mark.seq > covered:
            replayed = reconcile(
                state, mark.routing, mark.source, mark.timestamp_ms, only=mark.connection_ids
            ).state
            assert replayed is not None, "a reconcile never erases"
            state = replayed
    return state


def new_mark(
    seq: int,
    routing: Routing,
    connections: Collection[ConnectionConfig],
    source: Source,
    timestamp_ms: int,
) -> SyncMark:
    """A mark of a sync of ``connections`` under ``routing``, as it stands now."""
    snapshot = Routing()
    for connection in connections:
        _copy_connection(routing, connection.connection_id, snapshot)
    ids = tuple(connection.connection_id for connection in connections)
    return SyncMark(seq, ids, snapshot, source, timestamp_ms)


def _copy_connection(routing: Routing, connection_id: str, into: Routing) -> None:
    connection = routing.find_connection(connection_id)
    if connection is None:
        return
    output = routing.find_output(connection.output_id)
    if output is not None:
        into.put_output(output)
        if output.output_id not in routing.outputs:
            into.delete_output(output.output_id)
    into.put_connection(connection, routing.epoch(connection_id))
    if connection_id not in routing.connections:
        into.delete_connection(connection_id)


def dump_marks(marks: SyncMarks) -> bytes:
    return orjson.dumps({"seq": marks.seq, "marks": [_mark_data(mark) for mark in marks.marks]})


def load_marks(raw: bytes | None) -> SyncMarks:
    if not raw:
        return NO_MARKS
    data = orjson.loads(raw)
    return SyncMarks(data["seq"], tuple(_mark_of(mark) for mark in data["marks"]))


def _mark_data(mark: SyncMark) -> dict[str, Any]:
    routing = mark.routing
    connections = []
    for connection_id in mark.connection_ids:
        connection = routing.find_connection(connection_id)
        assert connection is not None, "a mark holds each of its connections"
        output = routing.find_output(connection.output_id)
        connections.append(
            {
                "connection": connection.model_dump(mode="json"),
                "live": connection_id in routing.connections,
                "epoch": routing.epoch(connection_id),
                # Not the output's settings: they may hold secrets, and no decision reads them.
                "output": None
                if output is None
                else {
                    "output_id": output.output_id,
                    "partner": output.partner,
                    "name": output.name,
                    "accepted_identities": sorted(output.accepted_identities),
                    "supports_attributes": output.supports_attributes,
                    "live": output.output_id in routing.outputs,
                },
            }
        )
    return {
        "seq": mark.seq,
        "connections": connections,
        "source": list(mark.source),
        "timestamp_ms": mark.timestamp_ms,
    }


def _mark_of(data: dict[str, Any]) -> SyncMark:
    routing = Routing()
    ids = []
    for held in data["connections"]:
        connection = ConnectionConfig.model_validate(held["connection"])
        output = held["output"]
        if output is not None:
            routing.put_output(
                Output(
                    output_id=output["output_id"],
                    partner=output["partner"],
                    name=output["name"],
                    accepted_identities=frozenset(output["accepted_identities"]),
                    supports_attributes=output["supports_attributes"],
                    settings={},
                )
            )
            if not output["live"]:
                routing.delete_output(output["output_id"])
        routing.put_connection(connection, held["epoch"])
        if not held["live"]:
            routing.delete_connection(connection.connection_id)
        ids.append(connection.connection_id)
    topic, partition, offset = data["source"]
    return SyncMark(
        data["seq"], tuple(ids), routing, Source(topic, partition, offset), data["timestamp_ms"]
    )
