"""The latest dead letters, read from the tail of the dead-letter topic for `GET /dead-letters`."""

from __future__ import annotations

import asyncio
import base64
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from core.dead_letters import redact
from core.kafka_admin import topic_partitions
from core.settings import Settings
from schemas import topics
from schemas.records import DeadLetter

# How redact() replaces a value that is not a JSON object.
REDACTED_WHOLE = "<redacted: "
# How many GET /dead-letters answers without a limit, and at most.
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Longest a read of the tail goes on: it answers with what it read by then.
READ_TIMEOUT_S = 5.0


def shown(letter: DeadLetter, outputs_topic: str) -> DeadLetter:
    """``letter`` with the settings of an output record redacted, as the worker writes it.

    The worker redacts before it sends; this keeps a letter written any other way (an older
    release, another producer) from showing a secret.
    """
    if letter.source.topic != outputs_topic or letter.value is None:
        return letter
    if letter.value_encoding == "base64":
        raw = base64.b64decode(letter.value)
    elif letter.value.startswith(REDACTED_WHOLE):
        return letter
    else:
        raw = letter.value.encode()
    redacted = redact(raw)
    if redacted == raw:
        return letter
    assert redacted is not None
    return letter.model_copy(update={"value": redacted.decode(), "value_encoding": "text"})


class DeadLetterTail:
    """One group-less consumer, assigned afresh to the topic's partitions at every read."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(topics.DEAD_LETTERS)
        self.outputs_topic = settings.topic(topics.OUTPUTS)
        self.consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(),
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=settings.consumer_max_fetch_bytes,
        )
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def latest(self, limit: int) -> list[DeadLetter]:
        """The ``limit`` latest dead letters over all partitions, newest first."""
        options = self.settings.kafka_client_options()
        async with self._lock:
            partitions = await topic_partitions(options, [self.topic])
            if not partitions:
                # No worker has created the topic yet (None: its leader is being elected).
                return []
            self.consumer.assign(partitions)
            end = await self.consumer.end_offsets(partitions)
            begin = await self.consumer.beginning_offsets(partitions)
            for tp in partitions:
                # Each partition's last ``limit`` records hold the latest ``limit`` over all.
                self.consumer.seek(tp, max(begin[tp], end[tp] - limit))
            letters = await self._read_to(end)
        letters.sort(key=lambda letter: letter.timestamp_ms, reverse=True)
        return [shown(letter, self.outputs_topic) for letter in letters[:limit]]

    async def _read_to(self, end: dict[TopicPartition, int]) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + READ_TIMEOUT_S
        waiting = {tp for tp, offset in end.items() if offset > 0}
        while waiting and time.monotonic() < deadline:
            batches = await self.consumer.getmany(*waiting, timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset < end[tp]:
                        letters += _parsed(message.value)
            waiting = {tp for tp in waiting if await self.consumer.position(tp) < end[tp]}
        return letters


def _parsed(value: bytes | None) -> list[DeadLetter]:
    """The letter, or none for a record on the topic that is not one (nothing else is shown)."""
    try:
        return [DeadLetter.model_validate_json(value or b"null")]
    except ValidationError:
        return []
