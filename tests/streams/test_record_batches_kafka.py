"""The worker's record batches on the real broker: every record lands once, where Kafka's
default partitioner puts its key, in the order it was queued, at the offset its batch's base
offset plus its index says (the changelog's persisted offsets rely on it), whether it was
queued at once or after a full batch went out, records larger than a batch included."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from core.kafka_admin import create_topics, wait_for_topics
from devtools.local import BOOTSTRAP
from streams.record_batches import RecordBatches

OPTIONS = {"bootstrap_servers": BOOTSTRAP}
PARTITIONS = 3
BATCH_BYTES = 4096


async def _queue_and_read_back() -> tuple[list[tuple[bytes, int, int]], dict[bytes, Any]]:
    """Queue records through RecordBatches; returns (value, partition, offset) as queued and
    the records read back by value."""
    topic = f"batches-{uuid.uuid4().hex[:8]}"
    await create_topics(OPTIONS, [topic], PARTITIONS, 1)
    await wait_for_topics(OPTIONS, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, max_batch_size=BATCH_BYTES)
    await producer.start()
    queued: list[tuple[bytes, Any, int]] = []
    try:
        batches = RecordBatches(lambda: producer)
        for n in range(400):
            # Mostly small records (batches fill up), some larger than a whole batch.
            value = f"{n:04d}".encode() + (b"x" * 6000 if n % 50 == 7 else b"y" * 60)
            key = f"key-{n % 37}".encode()
            if n % 3 == 0:
                placed = await batches.add(topic, key, value)
            else:
                placed = batches.append(topic, key, value) or await batches.add(topic, key, value)
            queued.append((value, *placed))
        await batches.flush()
        await asyncio.gather(*{id(future): future for _, future, _ in queued}.values())
    finally:
        await producer.stop()
    sent = [
        (value, future.result().partition, future.result().offset + index)
        for value, future, index in queued
    ]
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **OPTIONS)
    await consumer.start()
    read: dict[bytes, Any] = {}
    try:
        while len(read) < len(sent):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    assert record.value not in read, "a record landed twice"
                    read[record.value] = record
    finally:
        await consumer.stop()
    return sent, read


def test_records_land_once_where_and_at_the_offset_their_batch_says() -> None:
    sent, read = asyncio.run(_queue_and_read_back())
    assert len(read) == len(sent) == 400
    partitioner = DefaultPartitioner()
    for value, partition, offset in sent:
        record = read[value]
        assert (record.partition, record.offset) == (partition, offset)
        assert partition == partitioner(record.key, list(range(PARTITIONS)), [])
    # Queue order is kept within each partition.
    for partition in range(PARTITIONS):
        offsets = [offset for _, at, offset in sent if at == partition]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
