"""The worker's producer on the real broker: every record lands once, where Kafka's default
partitioner puts its key, in the order it was appended; a partition's acknowledgement is the
offset of its last record (the changelog's persisted offsets rely on it); and a record Kafka
refuses fails its partition's acknowledgement, with the records after it, never silently."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from core.kafka_admin import create_topics, wait_for_topics
from devtools.local import BOOTSTRAP
from streams.record_producer import DeliveryError, RecordProducer

OPTIONS = {"bootstrap_servers": BOOTSTRAP}
PARTITIONS = 3


def _producer(**config: Any) -> RecordProducer:
    return RecordProducer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "acks": "all",
            "enable.idempotence": True,
            "enable.gapless.guarantee": True,
            "message.timeout.ms": 0,
            "log_level": 3,
            **config,
        }
    )


async def _topic(config: dict[str, str] | None = None) -> str:
    topic = f"records-{uuid.uuid4().hex[:8]}"
    await create_topics(OPTIONS, [topic], PARTITIONS, 1, config)
    await wait_for_topics(OPTIONS, [topic])
    return topic


async def _read(topic: str, count: int) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **OPTIONS)
    await consumer.start()
    read: list[Any] = []
    try:
        while len(read) < count:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                read.extend(records)
    finally:
        await consumer.stop()
    return read


async def _append_and_read_back() -> tuple[list[tuple[bytes, asyncio.Future[int]]], list[Any]]:
    topic = await _topic()
    producer = _producer(**{"linger.ms": 2, "batch.size": 4096})
    appended: list[tuple[bytes, asyncio.Future[int]]] = []
    try:
        for flush in range(4):
            for n in range(100 * flush, 100 * flush + 100):
                # Mostly small records, some larger than a whole batch, a few without a key.
                value = f"{n:04d}".encode() + (b"x" * 6000 if n % 50 == 7 else b"y" * 60)
                key = None if n % 40 == 3 else f"key-{n % 37}".encode()
                if n % 3 == 0:
                    acknowledged = await producer.add(topic, key, value)
                else:
                    acknowledged = producer.append(topic, key, value) or await producer.add(
                        topic, key, value
                    )
                appended.append((value, acknowledged))
            await producer.flush()
        await asyncio.gather(*dict.fromkeys(future for _, future in appended))
    finally:
        await producer.close(10)
    return appended, await _read(topic, len(appended))


def test_records_land_once_in_order_where_the_default_partitioner_puts_them() -> None:
    appended, read = asyncio.run(_append_and_read_back())
    assert len(read) == len(appended) == 400
    by_value = {record.value: record for record in read}
    assert len(by_value) == 400, "a record landed twice"
    partitioner = DefaultPartitioner()
    for record in read:
        if record.key is not None:
            assert record.partition == partitioner(record.key, list(range(PARTITIONS)), [])
    assert {record.partition for record in read if record.key is None} == set(range(PARTITIONS))
    # Append order is kept within each partition, and each acknowledgement is the offset of
    # the last record its partition took up to its flush.
    for partition in range(PARTITIONS):
        values = [value for value, _ in appended if by_value[value].partition == partition]
        offsets = [by_value[value].offset for value in values]
        assert offsets == sorted(offsets)
    for value, acknowledged in appended:
        record = by_value[value]
        same_flush = [
            by_value[other]
            for other, future in appended
            if future is acknowledged and by_value[other].partition == record.partition
        ]
        assert acknowledged.result() == max(r.offset for r in same_flush) >= record.offset


async def _refused() -> tuple[BaseException | None, int]:
    # The topic takes records of at most 2,000 bytes; the producer's own limit is larger, so
    # the broker refuses the batch holding the large record.
    topic = await _topic({"max.message.bytes": "2000"})
    producer = _producer(**{"linger.ms": 50})
    try:
        key = b"same-partition"
        await producer.add(topic, key, b"small")
        await producer.add(topic, key, b"L" * 5000)
        acknowledged = await producer.add(topic, key, b"after")
        await producer.flush()
        try:
            await asyncio.wait_for(acknowledged, 30)
            error = None
        except DeliveryError as refused:
            error = refused
    finally:
        await producer.close(5)
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **OPTIONS)
    await consumer.start()
    try:
        fetched = await consumer.getmany(timeout_ms=2000)
    finally:
        await consumer.stop()
    return error, sum(len(records) for records in fetched.values())


def test_a_refused_record_fails_its_partitions_acknowledgement() -> None:
    error, landed = asyncio.run(_refused())
    assert isinstance(error, DeliveryError)
    assert "[" in str(error)  # names the topic and partition
    # Nothing after the refused record counts as delivered: the last record never landed.
    assert landed <= 1


def test_a_record_larger_than_the_producer_takes_is_refused_at_once() -> None:
    async def scenario() -> None:
        topic = await _topic()
        producer = _producer(**{"message.max.bytes": 10_000})
        try:
            await producer.add(topic, b"k", b"small")
            await producer.add(topic, b"k", b"L" * 20_000)  # held: refused when handed over
            with pytest.raises(DeliveryError, match=topic):
                await producer.add(topic, b"k", b"next")
        finally:
            await producer.close(5)

    asyncio.run(scenario())
