"""The shell around the forwarding decisions: one batch of input events at a time.

Per batch: parse each event (bad ones become dead letters), load the profile, ``decide``,
send the outbound records, wait until Kafka has acknowledged every record of the batch, and
only then write each touched profile's state once. The changelog therefore never records a
send that did not happen: after a crash the batch is read again and its records go out again,
with the same record ids (at least once, never lost).

Sync requests (after a config change) are served in the same stream, in order with the input
events of their partition, so a sync and a live event never race for one profile.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from faust import streams as faust_streams
from faust.types import EventT

from core.dead_letters import dead_letter
from core.routing import Routing
from schemas.parsing import InvalidRecordError, parse
from schemas.plain import InputEventData, parse_membership_event, parse_profile_record
from schemas.records import SourceRef, SyncRequest
from schemas.state import ProfileState, dump_profile, load_profile
from streams import metrics
from streams.forwarding import Decision, Source, decide, new_profile, reconcile
from streams.tally import BatchMetrics

# Profiles reconciled per send-and-store round of a sync: bounds memory and unacked sends.
SYNC_CHUNK = 5000


@contextmanager
def event_context(event: EventT[Any]) -> Iterator[None]:
    """Make ``event`` Faust's current event while its profile is read or written.

    Faust tables pick the store and changelog partition from the current event; in a batch
    the stream's current event is the last one read, which may be another partition's.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


def state_key(partition: int, mpid: str) -> bytes:
    """Table key: the partition first, so a sync finds one partition's profiles by prefix."""
    return f"{partition}:{mpid}".encode()


def parse_input(topic_is_profiles: bool, key: bytes | None, value: bytes | None) -> InputEventData:
    event: InputEventData = (
        parse_profile_record(value) if topic_is_profiles else parse_membership_event(value)
    )
    if key is None or key.decode("utf-8", "replace") != event["mpid"]:
        raise InvalidRecordError("key_mismatch", "the record key must be the record's mpid")
    return event


def source_of(event: EventT[Any]) -> SourceRef:
    message = event.message
    return SourceRef(topic=message.topic, partition=message.partition, offset=message.offset)


def now_ms() -> int:
    return int(time.time() * 1000)


# Produce one record (topic, key, value); returns the future of Kafka's acknowledgement.
Send = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[Any]]]


@dataclass(frozen=True, slots=True)
class ProcessorTopics:
    profiles: str
    sync: str
    dead_letters: str
    erasure_status: str
    # output_id -> its forward topic's name, creating the topic on first use
    outbound: Callable[[str], Awaitable[str]]


@dataclass(slots=True)
class _Unit:
    """One unit of work: the states it touched and the sends it is waiting for."""

    touched: dict[bytes, tuple[ProfileState | None, EventT[Any]]] = field(default_factory=dict)
    pending: list[Awaitable[Any]] = field(default_factory=list)
    # Kafka timestamps (seconds) of the input records that caused sends: for the latency metric.
    sources_sent: list[float] = field(default_factory=list)
    metrics: BatchMetrics = field(default_factory=BatchMetrics)


class InputProcessor:
    def __init__(
        self,
        *,
        routing: Routing,
        profiles: Any,  # faust Table: state_key -> ProfileState JSON bytes
        topics: ProcessorTopics,
        send: Send,
        config_applied: Callable[[SourceRef], Awaitable[None]],
    ) -> None:
        self.routing = routing
        self.profiles = profiles
        self.topics = topics
        self.send = send
        self.config_applied = config_applied

    async def process(self, events: Sequence[EventT[Any]]) -> None:
        unit = _Unit()
        for event in events:
            if event.message.topic == self.topics.sync:
                await self._flush(unit)
                unit = _Unit()
                await self._sync(event)
            else:
                await self._handle(unit, event)
        await self._flush(unit)

    async def _handle(self, unit: _Unit, event: EventT[Any]) -> None:
        message = event.message
        try:
            parsed = parse_input(message.topic == self.topics.profiles, message.key, message.value)
        except InvalidRecordError as error:
            unit.pending.append(
                await self._dead_letter(source_of(event), message.key, message.value, error)
            )
            return
        mpid = parsed["mpid"]
        key = state_key(message.partition, mpid)
        if key in unit.touched:
            state = unit.touched[key][0] or new_profile(mpid)
        else:
            with event_context(event):
                stored = self.profiles.get(key)
            state = load_profile(stored) if stored else new_profile(mpid)
        source = Source(message.topic, message.partition, message.offset)
        decision = decide(state, parsed, self.routing, source)
        await self._send(unit, decision)
        if decision.records:
            unit.sources_sent.append(message.timestamp)
        unit.touched[key] = (decision.state, event)

    async def _sync(self, event: EventT[Any]) -> None:
        """Reconcile this partition's profiles concerned by one config change."""
        try:
            request = parse(SyncRequest, event.message.value)
        except InvalidRecordError as error:
            message = event.message
            await (await self._dead_letter(source_of(event), message.key, message.value, error))
            return
        await self.config_applied(request.config)
        if request.kind == "output":
            connections = self.routing.connections_of_output(request.id)
        else:
            found = self.routing.find_connection(request.id)
            connections = [found] if found else []
        # Cheap byte test before decoding: only profiles naming the audience or the connection.
        needles = [orjson.dumps(c.audience_id) for c in connections] + [
            orjson.dumps(c.connection_id) for c in connections
        ]
        if not needles:
            return
        prefix = state_key(event.message.partition, "")
        with event_context(event):
            keys = [key for key in self.profiles if key.startswith(prefix)]
        message = event.message
        source = Source(message.topic, message.partition, message.offset)
        timestamp = now_ms()
        for start in range(0, len(keys), SYNC_CHUNK):
            chunk = keys[start : start + SYNC_CHUNK]
            unit = _Unit()
            with event_context(event):
                stored_states = [(key, self.profiles.get(key)) for key in chunk]
            for key, stored in stored_states:
                if stored is None or not any(needle in stored for needle in needles):
                    continue
                state = load_profile(stored)
                decision = reconcile(state, self.routing, source, timestamp)
                await self._send(unit, decision)
                if decision.state is not state:
                    unit.touched[key] = (decision.state, event)
            await self._flush(unit)

    async def _flush(self, unit: _Unit) -> None:
        # Acknowledged by Kafka before any state says they were sent.
        await asyncio.gather(*unit.pending)
        acknowledged = time.time()
        unit.metrics.flush()
        for timestamp in unit.sources_sent:
            metrics.LATENCY.observe(max(0.0, acknowledged - timestamp))
        for key, (state, event) in unit.touched.items():
            with event_context(event):
                if state is None:
                    self.profiles.pop(key, None)
                else:
                    self.profiles[key] = dump_profile(state)

    async def _send(self, unit: _Unit, decision: Decision) -> None:
        for record in decision.records:
            topic = await self.topics.outbound(record.output_id)
            unit.pending.append(await self.send(topic, record.mpid.encode(), record.value))
        for status in decision.erasure_statuses:
            unit.pending.append(
                await self.send(self.topics.erasure_status, status.mpid.encode(), status.value)
            )
        unit.metrics.count(decision)

    async def _dead_letter(
        self, source: SourceRef, key: bytes | None, value: bytes | None, error: InvalidRecordError
    ) -> Awaitable[Any]:
        return await send_dead_letter(
            self.send, self.topics.dead_letters, source, key, value, error
        )


async def send_dead_letter(
    send: Send,
    topic: str,
    source: SourceRef,
    key: bytes | None,
    value: bytes | None,
    error: InvalidRecordError,
) -> Awaitable[Any]:
    """Send a dead letter now; returns the delivery future to wait on."""
    letter = dead_letter(source, key, value, error.kind, error.message, now_ms())
    metrics.DEAD_LETTERS.labels(source.topic, error.kind).inc()
    return await send(topic, key, letter.model_dump_json().encode())
