"""The worker's Kafka producer: every outbound record, dead letter, erasure status and state write
(the table's changelog) goes through it. Compiled with the hot path (core/native.py).

It runs on librdkafka (confluent-kafka), not on aiokafka as the rest of the worker: a record
costs the event loop's thread about 1 µs to hand over, and librdkafka's own threads build,
compress and send the requests without the GIL. Through aiokafka the same work ran on the event
loop, 6 to 7 µs of its thread per synced member (README, "Choices").

Acknowledgements come per partition, not per record: the records appended to a partition since
the last ``flush`` share one future, which completes with the offset of the last of them once
Kafka acknowledged it. Only that last record carries a delivery callback; the idempotent
producer with ``enable.gapless.guarantee`` makes its acknowledgement vouch for every record
before it in the partition (a record that fails for good is a fatal error, which fails every
record after it), and a Python callback per record would cost the poll thread the GIL per
record.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Mapping
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.partitioner import partition_for
from core.settings import Settings

log = logging.getLogger(__name__)

# How long a topic's partition count is trusted before it is read again (a topic can grow).
PARTITION_COUNT_MAX_AGE_S: Final = 60.0
# How long the poll thread waits for delivery reports at a time (and so how late it sees a stop).
POLL_INTERVAL_S: Final = 0.1
# How long a full local queue is waited on at a time before the record is tried again.
QUEUE_FULL_WAIT_S: Final = 0.005


class DeliveryError(Exception):
    """Kafka did not take a record: the batch holding it fails, and nothing after it is
    committed."""


class _Held:
    """A partition's last record since the last flush, not yet handed to librdkafka: the one
    that will carry the partition's delivery callback."""

    def __init__(
        self, key: bytes | None, value: bytes | None, acknowledged: asyncio.Future[int]
    ) -> None:
        self.key = key
        self.value = value
        # The offset of the partition's last record, once Kafka acknowledged it.
        self.acknowledged = acknowledged


class RecordProducer:
    """Records appended per partition and delivered by librdkafka; see the module's text.

    Keyed records without a partition go where Kafka's default partitioner puts them (murmur2
    of the key), records without a key round-robin over the partitions, so consumers see the
    same partitioning as from any Kafka client.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        # librdkafka's settings (``producer_config``); may hold a SASL password: never logged.
        self._config = dict(config)
        self._producer: Any = None  # created on first use, on the event loop's thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._polling: threading.Thread | None = None
        self._stopped = threading.Event()
        self._held: dict[tuple[str, int], _Held] = {}
        # topic -> (its partition count, when it was read)
        self._partition_counts: dict[str, tuple[int, float]] = {}
        self._next_unkeyed: dict[str, int] = {}

    def append(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> asyncio.Future[int] | None:
        """Queue one record at once, without a coroutine (the hot path): returns the future of
        its partition's acknowledgement (the offset of the partition's last record), which
        completes after ``flush``. None when something must be waited for (``add`` does): the
        topic's partition count, or room in librdkafka's queue."""
        producer = self._producer
        if producer is None:
            producer = self._start()
        if partition is None:
            partition = self._partition_of(topic, key)
            if partition is None:
                return None
        tp = (topic, partition)
        held = self._held.get(tp)
        if held is None:
            assert self._loop is not None
            self._held[tp] = _Held(key, value, self._loop.create_future())
            return self._held[tp].acknowledged
        try:
            producer.produce(topic, held.value, held.key, partition)
        except BufferError:
            return None  # librdkafka's queue is full: nothing changed
        except KafkaException as error:
            raise self._refused(tp, error) from None
        held.key = key
        held.value = value
        return held.acknowledged

    def send_nowait(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any] | None:
        """The processor's ``Producer.send_nowait``: ``append``'s acknowledgement future."""
        return self.append(topic, key, value)

    async def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> Awaitable[Any]:
        """The processor's ``Producer.send``: ``add``'s acknowledgement future."""
        return await self.add(topic, key, value, partition)

    async def add(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> asyncio.Future[int]:
        """``append``, waiting for what it cannot."""
        while True:
            placed = self.append(topic, key, value, partition)
            if placed is not None:
                return placed
            if partition is None and topic not in self._partition_counts:
                await self._read_partition_count(topic)
            else:
                await asyncio.sleep(QUEUE_FULL_WAIT_S)  # the poll thread frees the queue

    async def add_all(
        self, topic: str, partition: int, records: Mapping[bytes, bytes | None]
    ) -> asyncio.Future[int] | None:
        """``add`` for each (key, value) of ``records``, in their order, to one partition; the
        future of their acknowledgement (None for no records)."""
        acknowledged = None
        for key, value in records.items():
            acknowledged = self.append(topic, key, value, partition)
            if acknowledged is None:
                acknowledged = await self.add(topic, key, value, partition)
        return acknowledged

    async def flush(self) -> None:
        """Hand every partition's last record to librdkafka with its delivery callback, and
        have the requests sent without waiting out ``linger.ms``: the batch is complete and
        awaits these acknowledgements before it sends anything else."""
        while self._held:
            (topic, partition), held = self._held.popitem()
            callback = _on_delivery(self._loop, held.acknowledged, topic, partition)
            while True:
                try:
                    self._producer.produce(topic, held.value, held.key, partition, callback)
                    break
                except BufferError:
                    await asyncio.sleep(QUEUE_FULL_WAIT_S)
                except KafkaException as error:
                    self._held[topic, partition] = held
                    raise self._refused((topic, partition), error) from None
        now = time.monotonic()
        for topic, (_count, read_at) in list(self._partition_counts.items()):
            if now - read_at > PARTITION_COUNT_MAX_AGE_S:
                del self._partition_counts[topic]

    def _refused(self, tp: tuple[str, int], error: KafkaException) -> DeliveryError:
        """librdkafka refused a record at once (larger than ``message.max.bytes``): its
        partition's records since the last flush fail with it."""
        failure = DeliveryError(f"Kafka refused a record for {tp[0]}[{tp[1]}]: {error}")
        held = self._held.pop(tp)
        held.acknowledged.set_exception(failure)
        return failure

    def waiting(self) -> int:
        """Records librdkafka still holds (queued or awaiting their acknowledgement)."""
        return len(self._producer) if self._producer is not None else 0

    def discard(self) -> None:
        """Drop every record not yet sent (a fatal exit's first step: none of them may reach
        Kafka after another worker took their partitions)."""
        if self._producer is not None:
            self._producer.purge(in_queue=True, in_flight=False, blocking=False)

    async def close(self, timeout_s: float) -> None:
        """Deliver what is queued, at most ``timeout_s``, then stop the poll thread."""
        if self._producer is None:
            return
        await asyncio.to_thread(self._producer.flush, timeout_s)
        self._stopped.set()
        if self._polling is not None:
            await asyncio.to_thread(self._polling.join)

    def _start(self) -> Any:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer({**self._config, "error_cb": _on_error})
        self._polling = threading.Thread(
            target=self._poll, name="record-producer-poll", daemon=True
        )
        self._polling.start()
        return self._producer

    def _poll(self) -> None:
        """Serve librdkafka's delivery reports and errors (their callbacks run here)."""
        producer = self._producer
        while not self._stopped.is_set():
            try:
                producer.poll(POLL_INTERVAL_S)
            except KafkaException as error:
                # A fatal error is raised here, not given to ``error_cb``; the delivery reports
                # that follow fail every record the producer held.
                log.error("Kafka producer: %s", error)

    def _partition_of(self, topic: str, key: bytes | None) -> int | None:
        """Where a record without a partition goes (None: the topic's count is not known)."""
        known = self._partition_counts.get(topic)
        if known is None:
            return None
        count = known[0]
        if key is None:
            partition = self._next_unkeyed.get(topic, 0) % count
            self._next_unkeyed[topic] = partition + 1
            return partition
        # Kafka's default partitioner, compiled.
        return partition_for(key, count)

    async def _read_partition_count(self, topic: str) -> None:
        metadata = await asyncio.to_thread(self._producer.list_topics, topic, 10.0)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise DeliveryError(
                f"Kafka has no partitions for topic {topic}: "
                f"{found.error if found is not None else 'unknown topic'}"
            )
        self._partition_counts[topic] = (len(found.partitions), time.monotonic())


def _on_delivery(
    loop: asyncio.AbstractEventLoop | None,
    acknowledged: asyncio.Future[int],
    topic: str,
    partition: int,
) -> Any:
    assert loop is not None

    def delivered(error: KafkaError | None, message: Message) -> None:
        # On the poll thread: the future belongs to the event loop.
        if error is None:
            loop.call_soon_threadsafe(_settle, acknowledged, message.offset(), None)
        else:
            failure = DeliveryError(
                f"Kafka did not take the records for {topic}[{partition}]: {error.str()}"
            )
            loop.call_soon_threadsafe(_settle, acknowledged, None, failure)

    return delivered


def _settle(
    acknowledged: asyncio.Future[int], offset: int | None, failure: DeliveryError | None
) -> None:
    if acknowledged.done():
        return
    if failure is not None:
        acknowledged.set_exception(failure)
    else:
        assert offset is not None
        acknowledged.set_result(offset)


def _on_error(error: KafkaError) -> None:
    # What librdkafka retries on its own (a broker down, a timed-out request).
    log.warning("Kafka producer: %s", error.str())


def producer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka's settings for the worker's producer, from ``Settings``."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "security.protocol": settings.security_protocol.lower(),
        "client.id": f"{settings.group_id}-records",
        "acks": "all",
        "enable.idempotence": True,
        "enable.gapless.guarantee": True,
        "linger.ms": settings.producer_linger_ms,
        "batch.size": settings.producer_batch_bytes,
        "message.max.bytes": settings.producer_max_request_bytes,
        # No local timeout (0): librdkafka retries until the processor's acknowledgement
        # timeout makes the worker exit. A record timed out locally is the one failure the
        # gapless guarantee does not cover: a later record of its partition could still be
        # acknowledged, and vouch for it.
        "message.timeout.ms": 0,
        "request.timeout.ms": max(1000, int(settings.ack_timeout_s * 500)),
        "partitioner": "murmur2_random",
    }
    if settings.ssl_cafile:
        config["ssl.ca.location"] = str(settings.ssl_cafile)
    if settings.ssl_certfile:
        config["ssl.certificate.location"] = str(settings.ssl_certfile)
    if settings.ssl_keyfile:
        config["ssl.key.location"] = str(settings.ssl_keyfile)
    sasl = settings.sasl()
    if sasl is not None:
        mechanism, username, password = sasl
        config["sasl.mechanisms"] = mechanism
        config["sasl.username"] = username
        config["sasl.password"] = password
    return config
