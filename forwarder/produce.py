"""``forwarder produce``: publish JSON records from stdin to an input topic, to try the service.

Upstream systems publish in production; this sends what one types, keyed by each record's mpid
as the topic contract asks.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaProducer

from core.errors import ForwarderError
from core.kafka_admin import topic_partitions
from core.settings import Settings
from schemas import topics

INPUT_TOPICS = (topics.PROFILE_UPDATES, topics.AUDIENCE_MEMBERSHIPS)


class ProduceError(ForwarderError):
    """Nothing was sent: a line is not a JSON object with an mpid, or the topic is missing."""


def keyed(lines: Iterable[str]) -> list[tuple[bytes, bytes]]:
    """(key, value) for each non-blank line; the whole input is checked before any is sent."""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or record.get("mpid") in (None, ""):
            raise ProduceError(
                f"forwarder produce: line {number}: expected a JSON object with an mpid"
            )
        records.append((str(record["mpid"]).encode(), line.strip().encode()))
    return records


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    name = settings.topic(topic)
    if not await topic_partitions(settings.kafka_client_options(), [name]):
        raise ProduceError(
            f"forwarder produce: topic {name} does not exist yet: start forwarder worker "
            "(it creates it)"
        )
    producer = AIOKafkaProducer(**settings.kafka_client_options(), acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(name, value, key=key)
    finally:
        await producer.stop()
