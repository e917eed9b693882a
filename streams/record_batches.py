"""The worker's Kafka record batches: every outbound record and every state write (the table's
changelog) is appended here. Compiled with the hot path (core/native.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from core.partitioner import partition_for


class _OpenBatch:
    def __init__(self, builder: Any, acknowledged: asyncio.Future[Any]) -> None:
        self.builder = builder  # aiokafka's BatchBuilder
        # Completes with the batch's RecordMetadata (its base offset) once Kafka acknowledged it.
        self.acknowledged = acknowledged
        self.count = 0


class RecordBatches:
    """Records queued per partition into Kafka record batches, each sent with one
    ``send_batch`` at ``flush``: about 1.5 µs a record appended, against about 20 through
    aiokafka's per-message ``send`` (a future, a metadata object and a partitioner call per
    record).

    Keyed records without a partition go where Kafka's default partitioner puts them (murmur2
    of the key), so consumers see the same partitioning as from any Kafka client.
    """

    def __init__(self, producer: Callable[[], Any]) -> None:
        self._find_producer = producer  # the app's aiokafka producer, once it started
        # Found once per flush, not per record (finding it runs interpreted Faust code).
        self._found: Any = None
        self._open: dict[tuple[str, int], _OpenBatch] = {}
        # topic -> its partition count, until the flush (aiokafka builds a set per question)
        self._partition_counts: dict[str, int] = {}

    def append(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> tuple[asyncio.Future[Any], int] | None:
        """Queue one record at once, without a coroutine (the hot path): returns the future of
        its batch's acknowledgement, which completes after ``flush``, and the record's index in
        that batch (its offset is the batch's base offset plus the index). None when something
        must be waited for (``add`` does): the topic's metadata, or the send of a full batch."""
        producer = self._producer()
        if partition is None:
            partition = self._partition_of(producer, topic, key, value)
            if partition is None:
                return None
        tp = (topic, partition)
        batch = self._open.get(tp)
        if batch is None:
            batch = self._open[tp] = _OpenBatch(
                producer.create_batch(), asyncio.get_running_loop().create_future()
            )
        if batch.builder.append(timestamp=None, key=key, value=value) is None:
            return None  # the batch is full, and closed by aiokafka
        batch.count += 1
        return batch.acknowledged, batch.count - 1

    def send_nowait(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any] | None:
        """The processor's ``Producer.send_nowait``: ``append``'s acknowledgement future."""
        placed = self.append(topic, key, value)
        return placed[0] if placed is not None else None

    async def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> Awaitable[Any]:
        """The processor's ``Producer.send``: ``add``'s acknowledgement future."""
        acknowledged, _index = await self.add(topic, key, value, partition)
        return acknowledged

    async def add(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> tuple[asyncio.Future[Any], int]:
        """``append``, waiting for what it cannot."""
        placed = self.append(topic, key, value, partition)
        if placed is not None:
            return placed
        producer = self._producer()
        if partition is None:
            partition = self._partition_of(producer, topic, key, value)
            if partition is None:
                await producer.client._wait_on_metadata(topic)
                return await self.add(topic, key, value)
        # The partition's open batch is full (an empty one takes any record): it goes now, and
        # the record starts the next one.
        tp = (topic, partition)
        await self._send(tp, self._open.pop(tp))
        placed = self.append(topic, key, value, partition)
        assert placed is not None, "an empty batch takes any record"
        return placed

    async def add_all(
        self, topic: str, partition: int, records: Mapping[bytes, bytes | None]
    ) -> list[tuple[asyncio.Future[Any], int]]:
        """``add`` for each (key, value) of ``records``, in their order, to one partition."""
        placed = []
        for key, value in records.items():
            at = self.append(topic, key, value, partition)
            placed.append(at if at is not None else await self.add(topic, key, value, partition))
        return placed

    def _partition_of(
        self, producer: Any, topic: str, key: bytes | None, value: bytes | None
    ) -> int | None:
        """Where a record without a partition goes (None: the topic's metadata is unknown)."""
        count = self._partition_counts.get(topic)
        if count is None:
            partitions = producer._metadata.partitions_for_topic(topic)
            if partitions is None:
                return None
            count = self._partition_counts[topic] = len(partitions)
        if key is None:
            partition: int = producer._partition(topic, None, key, value, key, value)
            return partition
        # Kafka's default partitioner, compiled (aiokafka's own call hashes in pure Python,
        # after copying the topic's partition sets into lists, per record).
        return partition_for(key, count)

    def _producer(self) -> Any:
        found = self._found
        if found is None:
            found = self._found = self._find_producer()
        return found

    async def flush(self) -> None:
        """Hand every open batch to the producer (their futures complete on the acks)."""
        self._partition_counts.clear()
        self._found = None
        while self._open:
            tp, batch = self._open.popitem()
            await self._send(tp, batch)

    async def _send(self, tp: tuple[str, int], batch: _OpenBatch) -> None:
        topic, partition = tp
        # Closed, the batch goes out at once. Open, it would wait out the producer's linger
        # (5 ms by default, twice per batch: outbound, then changelog) to gain nothing, since
        # the batch is complete and awaits this acknowledgement before sending anything else.
        batch.builder.close()
        try:
            sent = await self._producer().send_batch(batch.builder, topic, partition=partition)
        except BaseException as error:
            batch.acknowledged.set_exception(error)
            raise
        sent.add_done_callback(lambda done: _complete(done, batch.acknowledged))


def _complete(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())
