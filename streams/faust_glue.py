"""Everything the worker needs from Faust beyond its public app API, in one place.

- ``record_of`` turns a Faust event into the processor's plain ``InputRecord``.
- ``held_batches`` takes batches from a stream and keeps their offsets uncommitted until the
  batch's effects are durable. Faust's ``take_events`` acks a batch when the loop body returns
  *or raises*, so a crashed or cancelled batch would be committed without its effects; holding
  one more reference on each message prevents that, and ``release`` drops it once done.
- ``TableStore`` implements the processor's ``StateStore`` over a Faust table: reads go to the
  store of the event's partition, writes produce the changelog records themselves (one send per
  touched profile, awaited with the batch) and then apply them through the table's own
  ``apply_changelog_batch``, the path recovery uses, which also keeps RocksDB's persisted
  changelog offsets right. This replaces Faust's one-message-at-a-time changelog buffer.
- ``BoundedWorker`` is Faust's worker with a deadline on SIGTERM.

Private Faust API used here (an upgrade could break it; the integration tests on both stores
would catch it): the RocksDB store's ``_db_for_partition`` and ``offset_key``, the memory
store's ``data`` dict.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust import Stream
from faust.types import TP, EventT, StreamT

from core.settings import Settings
from streams.processor import InputRecord

log = logging.getLogger(__name__)


def credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The connection options of ``Settings.kafka_client_options``, as Faust takes them."""
    context = settings.ssl_context()
    sasl = settings.sasl()
    if sasl is not None:
        mechanism, username, password = sasl
        return faust.SASLCredentials(
            username=username, password=password, mechanism=mechanism, ssl_context=context
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def record_of(event: EventT[Any]) -> InputRecord:
    message = event.message
    return InputRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_s=message.timestamp,
    )


@dataclass(slots=True)
class HeldBatch:
    events: list[EventT[Any]]
    records: list[InputRecord]
    consumer: Any

    def release(self) -> None:
        """The batch is done: its offsets may be committed."""
        for event in self.events:
            event.message.ack(self.consumer)


async def held_batches(
    app: faust.App, stream: StreamT[Any], max_records: int, within_s: float
) -> AsyncIterator[HeldBatch]:
    # take_events is on Stream, not yet on the StreamT interface.
    async for events in cast(Stream[Any], stream).take_events(max_records, within=within_s):
        for event in events:
            event.message.incref()
        yield HeldBatch(list(events), [record_of(event) for event in events], app.consumer)


@dataclass(frozen=True, slots=True)
class _Message:
    tp: TP
    partition: int
    offset: int
    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class _ChangelogEvent:
    """What a table store's ``apply_changelog_batch`` reads of a changelog event."""

    message: _Message

    @property
    def key(self) -> bytes:
        return self.message.key

    @property
    def value(self) -> bytes | None:
        return self.message.value


class TableStore:
    """The processor's state store over a Faust table with raw (bytes) keys and values."""

    def __init__(self, app: faust.App, table: Any, owner_topic: str, rocksdb: bool) -> None:
        self._app = app
        self._table = table
        # A co-partitioned input topic: owning its partition p means owning state partition p.
        self._owner_topic = owner_topic
        self._rocksdb = rocksdb

    @property
    def changelog_topic(self) -> str:
        name: str = self._table.changelog_topic.get_topic_name()
        return name

    def get(self, partition: int, key: bytes) -> bytes | None:
        store = self._table.data
        if self._rocksdb:
            value: bytes | None = store._db_for_partition(partition).get(key)
            return value
        found: bytes | None = store.data.get(key)
        return found

    def keys(self, partition: int) -> list[bytes]:
        store = self._table.data
        if self._rocksdb:
            offset_key = store.offset_key
            # A raw-mode Rdict cannot be iterated directly, only through keys().
            db = store._db_for_partition(partition)
            return [key for key in db.keys() if key != offset_key]  # noqa: SIM118
        prefix = f"{partition}:".encode()
        return [key for key in store.data if key.startswith(prefix)]

    def owns(self, partition: int) -> bool:
        return TP(self._owner_topic, partition) in self._app.consumer.assignment()

    def __len__(self) -> int:
        return len(self._table.data.data) if not self._rocksdb else 0

    async def write(self, partition: int, changes: Mapping[bytes, bytes | None]) -> None:
        producer = self._app.producer
        topic = self.changelog_topic
        sent: list[tuple[bytes, bytes | None, Awaitable[Any]]] = []
        for key, value in changes.items():
            future = await producer.send(
                topic, key, value, partition=partition, timestamp=None, headers=None
            )
            sent.append((key, value, future))
        acknowledged = await asyncio.gather(*(future for _, _, future in sent))
        tp = TP(topic, partition)
        self._table.apply_changelog_batch(
            [
                _ChangelogEvent(_Message(tp, partition, metadata.offset, key, value))
                for (key, value, _), metadata in zip(sent, acknowledged, strict=True)
            ]
        )


async def rewind_uncommitted(
    app: faust.App, group_id: str, client_options: dict[str, Any], topics: set[str]
) -> None:
    """After a rebalance, put each assigned partition of ``topics`` that has no committed offset
    (or 0) back at its beginning, before Faust resumes fetching.

    Faust's seek to the committed offsets leaves those partitions where the fetcher stopped,
    and records fetched before the rebalance but cleared from the stream's buffers are then
    never delivered, yet committed past once later records are: the first records of a
    partition that moved before its first commit were lost that way.
    """
    consumer = app.consumer
    assigned = [tp for tp in consumer.assignment() if tp.topic in topics]
    if not assigned:
        return
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(
            group_id, partitions=[TopicPartition(tp.topic, tp.partition) for tp in assigned]
        )
    finally:
        await admin.close()
    offsets = {tp: committed.get(TopicPartition(tp.topic, tp.partition)) for tp in assigned}
    uncommitted = [tp for tp, meta in offsets.items() if meta is None or meta.offset <= 0]
    if not uncommitted:
        return
    earliest = await consumer.earliest_offsets(*uncommitted)
    for tp in uncommitted:
        await consumer.seek(tp, earliest.get(tp) or 0)


class BoundedWorker(faust.Worker):
    """Faust's worker, stopped by SIGTERM or SIGINT in two steps, within ``shutdown_timeout_s``.

    First ``drain``: no new batch starts and the one in flight finishes, so that none of its
    changelog writes can land after the group has given its partitions to another worker (a
    write that late would overwrite the new owner's newer state). Then Faust's own stop, which
    commits what finished and leaves the group. Past the deadline the process exits at once
    (exit code 1): a send whose acknowledgement never comes must not keep an orchestrator
    waiting, and what was not finished is not committed.
    """

    def __init__(
        self,
        *services: Any,
        drain: Callable[[], Awaitable[None]],
        shutdown_timeout_s: float,
        **options: Any,
    ) -> None:
        super().__init__(*services, **options)
        self._drain = drain
        self._shutdown_timeout_s = shutdown_timeout_s
        self._stopping = False
        self._draining: asyncio.Future[None] | None = None

    def _on_sigterm(self) -> None:
        self._stop_after_drain(signal.SIGTERM)

    def _on_sigint(self) -> None:
        self._stop_after_drain(signal.SIGINT)

    def _stop_after_drain(self, received: signal.Signals) -> None:
        if self._stopping:
            return
        self._stopping = True
        timer = threading.Timer(
            self._shutdown_timeout_s, exit_now, args=(1, "stopping took too long")
        )
        timer.daemon = True
        timer.start()
        self._draining = asyncio.ensure_future(self._drain_then_stop(received))

    async def _drain_then_stop(self, received: signal.Signals) -> None:
        try:
            await self._drain()
        finally:
            self._schedule_shutdown(received)


def exit_now(code: int, reason: str) -> None:
    """Exit without stopping anything, as a kill would: nothing unfinished is flushed, so no
    write of an abandoned batch can reach Kafka after another worker took its partitions."""
    log.error("exiting now (code %d): %s", code, reason)
    logging.shutdown()
    os._exit(code)
