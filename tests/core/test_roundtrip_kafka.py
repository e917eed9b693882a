"""The local broker is a real Kafka: a produce/consume round trip with aiokafka."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devtools.local import BOOTSTRAP, create_topics_async


async def test_aiokafka_produce_consume_round_trip() -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    await create_topics_async([topic], partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(topic, key=f"k{n}".encode(), value=f"v{n}".encode())
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, group_id=topic, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        received: dict[bytes, bytes] = {}
        while len(received) < 10:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, "no records within 10 s"
            for messages in batches.values():
                received.update((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    assert received == {f"k{n}".encode(): f"v{n}".encode() for n in range(10)}
