"""The shell around the forwarding decisions: one batch of input events at a time.

Per batch: parse each event (bad ones become dead letters), load the profile, ``decide``,
send the outbound records, wait until Kafka has acknowledged every record of the batch, and
only then write each touched profile's state once. The changelog therefore never records a
send that did not happen: after a crash the batch is read again and its records go out again,
with the same record ids (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from faust import streams as faust_streams
from faust.types import EventT, TopicT

from schemas.parsing import InvalidRecordError, parse
from schemas.records import MembershipEvent, ProfileUpdate, SourceRef
from schemas.state import ProfileState
from streams import metrics
from streams.dead_letters import dead_letter
from streams.forwarding import Decision, InputEvent, decide, new_profile
from streams.routing import Routing


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


def parse_input(topic_is_profiles: bool, key: bytes | None, value: bytes | None) -> InputEvent:
    event: InputEvent = (
        parse(ProfileUpdate, value) if topic_is_profiles else parse(MembershipEvent, value)
    )
    if key is None or key.decode("utf-8", "replace") != event.mpid:
        raise InvalidRecordError("key_mismatch", "the record key must be the record's mpid")
    return event


class InputProcessor:
    def __init__(
        self,
        *,
        routing: Routing,
        profiles: Any,  # faust Table of mpid bytes -> ProfileState JSON bytes
        profile_topic: str,
        outbound_topic: Callable[[str], Awaitable[TopicT]],
        dead_letter_topic: TopicT,
    ) -> None:
        self.routing = routing
        self.profiles = profiles
        self.profile_topic = profile_topic
        self.outbound_topic = outbound_topic
        self.dead_letter_topic = dead_letter_topic

    async def process(self, events: Sequence[EventT[Any]]) -> None:
        touched: dict[str, tuple[ProfileState, EventT[Any]]] = {}
        pending: list[Awaitable[Any]] = []
        for event in events:
            message = event.message
            source = SourceRef(
                topic=message.topic, partition=message.partition, offset=message.offset
            )
            try:
                parsed = parse_input(
                    message.topic == self.profile_topic, message.key, message.value
                )
            except InvalidRecordError as error:
                pending.append(
                    await send_dead_letter(
                        self.dead_letter_topic, source, message.key, message.value, error
                    )
                )
                continue
            if parsed.mpid in touched:
                state = touched[parsed.mpid][0]
            else:
                with event_context(event):
                    state = self._load(parsed.mpid)
            decision = decide(state, parsed, self.routing, source)
            pending.extend(await self._send(decision))
            touched[parsed.mpid] = (decision.state, event)
        # Acknowledged by Kafka before any state says they were sent.
        await asyncio.gather(*pending)
        for mpid, (state, event) in touched.items():
            with event_context(event):
                self.profiles[mpid.encode()] = state.model_dump_json().encode()

    def _load(self, mpid: str) -> ProfileState:
        stored = self.profiles.get(mpid.encode())
        return ProfileState.model_validate_json(stored) if stored else new_profile(mpid)

    async def _send(self, decision: Decision) -> list[Awaitable[Any]]:
        sent: list[Awaitable[Any]] = []
        for record in decision.records:
            topic = await self.outbound_topic(record.output_id)
            sent.append(
                await topic.send(
                    key=record.mpid.encode(), value=record.model_dump_json().encode(), force=True
                )
            )
            metrics.FORWARDED.labels(record.output_id, record.action).inc()
        for drop in decision.drops:
            metrics.DROPPED.labels(drop.output_id or "", drop.reason).inc()
        return sent


async def send_dead_letter(
    topic: TopicT,
    source: SourceRef,
    key: bytes | None,
    value: bytes | None,
    error: InvalidRecordError,
) -> Awaitable[Any]:
    """Send a dead letter now; returns the delivery future to wait on."""
    letter = dead_letter(source, key, value, error.kind, error.message, int(time.time() * 1000))
    metrics.DEAD_LETTERS.labels(source.topic, error.kind).inc()
    return await topic.send(key=key, value=letter.model_dump_json().encode(), force=True)
