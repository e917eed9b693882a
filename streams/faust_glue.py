"""Everything the worker needs from Faust beyond its public app API, in one place.

- ``OwnedConsumer`` (through ``ForwarderApp``) runs the worker's batches in Faust's fetch loop
  and commits their offsets itself, only once a batch is done, its state writes acknowledged
  and only for partitions still owned; Faust's stream path, which could commit records it
  never delivered, is left to the table changelogs.
- ``TableStore`` implements the processor's ``StateStore`` over a Faust table: reads go to the
  store of the event's partition, writes produce the changelog records themselves (one record
  per touched profile, in the worker's record batches) and, once Kafka acknowledged them, write
  them to the store as Faust's recovery would (``apply``, also used by the bulk recovery),
  which keeps RocksDB's persisted changelog offsets right. This replaces Faust's
  one-message-at-a-time changelog buffer.
- ``BoundedWorker`` is Faust's worker with a deadline on SIGTERM.

Private Faust API used here (an upgrade could break it; the integration tests on both stores
would catch it): the consumer's fetch loop (``_drain_messages``, ``_wait_next_records``,
``_commit``), the app's ``_new_transport``, the RocksDB store's ``_db_for_partition``,
``_dbs`` (a graceful stop flushes each) and ``offset_key``, the memory store's ``data`` dict,
the consumer thread's aiokafka consumer and its coordinator's ``_maybe_leave_group`` (a fatal
exit's leave), the producer's aiokafka producer and, for a log line only, its accumulator and
sender.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ConsumerStoppedError
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

from core.settings import Settings
from streams.offsets import OffsetBook
from streams.processor import InputRecord, counts_key, marks_key
from streams.record_batches import RecordBatches

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


def rocksdb_options(settings: Settings) -> dict[str, int]:
    """The table's RocksDB options: Faust's defaults (64 MiB memtables, three of them, and a
    2 GiB block cache, each per partition) let 8 partitions of a million profiles hold 1.4 GB
    of memtables alone. Bloom filters of 10 bits a key instead of Faust's 3: every new
    profile's first event looks up a key the table does not hold, and with 3 bits about one
    such lookup in four reads a data block for nothing (6.2 against 3.0 to 3.5 µs a lookup in a
    partition of 125,000 states; the filters take 1.25 bytes a key)."""
    mib = 1024 * 1024
    return {
        "write_buffer_size": settings.rocksdb_write_buffer_mb * mib,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.rocksdb_block_cache_mb * mib,
        "bloom_filter_size": 10,
    }


# RocksDB's read-ahead for a sync's scan of a partition.
SCAN_READAHEAD_BYTES = 2 * 1024 * 1024

BatchHandler = Callable[[list[InputRecord]], Awaitable[None]]
# Writes a table partition's changelog records (key -> value, None deletes) up to an offset.
ChangelogWriter = Callable[[int, Mapping[bytes, bytes | None], int], None]


class OwnedConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer with the worker's own topics taken out of Faust's stream path.

    Faust hands each fetched record to the streams through a task that a flow suspension
    cancels while the record's offset already counts as read, acknowledges a batch when the
    loop body raises, and its commit check lets a one-record gap at the head pass: under
    rebalances, records were committed that were never processed. For the topics given to
    ``own``, this consumer runs each fetched batch to its end in the fetch loop itself and
    commits the offsets itself (``OffsetBook``), only for partitions it still owns, as Kafka
    Streams does:

    - a batch fetched while the flow is stopped (a rebalance started) is discarded; the
      rebalance's seek to the committed offsets reads it again;
    - a revoke first waits for the batch in flight and its state writes (``settle``, bounded
      by the processor's acknowledgement timeout), commits what finished, and only then lets
      Faust revoke, so the new owner's recovery includes every changelog write of the old
      owner;
    - a commit first waits for the state writes in flight (``settle``): an offset is committed
      only once its batch's state is durable;
    - a batch that fails or is cancelled is never committed.

    A table recovery's changelog batches are applied in bulk (``_recover_in_bulk``); standbys
    go through Faust's path unchanged. This also removes Faust's per-message tasks from the
    hot path.
    """

    _handlers: Mapping[str, BatchHandler] = {}
    _changelog_writers: Mapping[str, ChangelogWriter] = {}

    def own(
        self,
        handlers: Mapping[str, BatchHandler],
        commit_interval_s: float,
        ready: Callable[[], Awaitable[Any]],
        fetch_max_wait_ms: int,
        fetch_min_bytes: int,
        changelog_writers: Mapping[str, ChangelogWriter],
        settle: Callable[[], Awaitable[None]],
    ) -> None:
        """Process the records of these topics (topic -> handler) here, not in Faust streams;
        no batch starts before ``ready`` returns, and no offset is committed before ``settle``
        (the handlers' state writes in flight) returns. A recovery of these changelog topics
        (topic -> writer) goes through their writers in bulk."""
        self._settle = settle
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._fetch_min_bytes = fetch_min_bytes
        self._handlers = dict(handlers)
        self._changelog_writers = dict(changelog_writers)
        self._ready = ready
        self._commit_interval_s = commit_interval_s
        self._book = OffsetBook()
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._last_commit = time.monotonic()

    async def _drain_messages(self, fetcher: Any) -> None:
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        # Faust builds its aiokafka consumer with fetch_max_wait_ms=1500, fetch_min_bytes=1 and
        # no setting for either.
        kafka_fetcher = self._thread._ensure_consumer()._fetcher
        kafka_fetcher._fetch_max_wait_ms = self._fetch_max_wait_ms
        kafka_fetcher._fetch_min_bytes = self._fetch_min_bytes
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, _ = await self._wait_next_records(1.0)
                if records and not self.should_stop:
                    await self._deliver(records)
                else:
                    await asyncio.sleep(0)
                # Also when no record comes: the last batch of a burst is committed too.
                if self._book and time.monotonic() - self._last_commit >= self._commit_interval_s:
                    await self.commit_done()
        except (ConsumerStoppedError, asyncio.CancelledError):
            if self.transport.app.should_stop:
                return
            raise

    async def _deliver(self, records: Mapping[TP, list[Any]]) -> None:
        owned: dict[BatchHandler, list[InputRecord]] = {}
        for tp, batch in records.items():
            handler = self._handlers.get(tp.topic)
            if handler is None:
                await self._deliver_to_faust(tp, self._recover_in_bulk(tp, batch))
                continue
            owned.setdefault(handler, []).extend(
                InputRecord(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    timestamp_s=record.timestamp / 1000,
                )
                for record in batch
            )
        if owned:
            await self._ready()
        # No await between this check and the batch's start: a revoke sees it in flight.
        if not owned or not self.flow_active or self._draining:
            return
        self._idle.clear()
        try:
            for handler, handled in owned.items():
                await handler(handled)
                self._book.done(handled)
        finally:
            self._idle.set()

    def _recover_in_bulk(self, tp: TP, batch: list[Any]) -> list[Any]:
        """Apply a fetched batch of an active changelog partition to its table at once; return
        what is left for Faust's path.

        Faust's recovery takes each changelog record through an event, a queue, a buffer and an
        end-of-recovery check (about 170 µs a record here, 6,000 records/s). During a recovery
        this writes the batch through the table's writer (``TableStore.apply``: one RocksDB
        write batch, which also persists the offset) and counts its offsets as Faust's own loop
        does, then hands Faust only the batch's last record: its offset is already counted, so
        Faust does not apply it again and only runs its end-of-recovery check. Faust's buffers
        are flushed first so that no older record applies after a newer one. Standbys, and
        records outside a recovery or during a flow suspension, keep Faust's path.
        """
        recovery: Recovery = cast(Any, self.app.tables).recovery
        write = self._changelog_writers.get(tp.topic)
        if (
            write is None
            or not recovery.in_recovery
            or tp not in recovery.active_tps
            or not self.flow_active
        ):
            return batch
        seen = recovery.active_offsets.get(tp)
        fresh = [record for record in batch if seen is None or record.offset > seen]
        if fresh:
            recovery.flush_buffers()
            # In offset order: a key's last record in the batch is its state.
            write(tp.partition, {r.key: r.value for r in fresh}, fresh[-1].offset)
            recovery.active_offsets[tp] = fresh[-1].offset
        return batch[-1:]

    async def _deliver_to_faust(self, tp: TP, batch: list[Any]) -> None:
        # As Faust's own fetch loop does: a flow suspension abandons the delivery, and the
        # table recovery that reads these records seeks again when it restarts.
        for record in batch:
            await self.wait_first(
                self.callback(self._to_message(tp, record)), self.suspend_flow.wait()
            )
            if not self.flow_active:
                return

    async def commit_done(self) -> None:
        """Commit the offsets of finished batches, for the partitions still owned."""
        self._last_commit = time.monotonic()
        await self._settle()
        assigned = self.assignment()
        offsets = self._book.take(lambda tp: TP(*tp) in assigned)
        if offsets and not await self._commit({TP(*tp): offset for tp, offset in offsets.items()}):
            log.info("commit refused (the group is rebalancing): the records are read again")

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.stop_flow()  # no new batch starts
        await self._idle.wait()
        await self.commit_done()
        await super().on_partitions_revoked(revoked)

    async def drain(self) -> None:
        """Start no new batch, wait for the one in flight and commit (a stop's first step)."""
        self._draining = True
        await self._idle.wait()
        await self.commit_done()

    def leave_group_now(self, timeout_s: float) -> None:
        """Take this member out of the group at once, blocking the calling (main) loop meanwhile.

        For a fatal exit: the other workers get its partitions at once instead of after the
        session timeout, and since this loop (which runs the producer) is blocked until the
        process exits, no write of the abandoned batch can follow the leave.
        """
        consumer = self._thread._consumer
        if consumer is None:
            return
        leave = consumer._coordinator._maybe_leave_group()
        future = asyncio.run_coroutine_threadsafe(leave, self._thread.thread_loop)
        try:
            future.result(timeout_s)
        except Exception:  # the session timeout still removes the member
            log.warning("could not leave the group before exiting", exc_info=True)

    def verify_event_path(self, now: float, tp: TP) -> None:
        # Faust's slow-stream check counts events of its streams, which owned topics never
        # reach; the worker's own stall check (streams/health.py) covers them.
        if tp.topic not in self._handlers:
            super().verify_event_path(now, tp)


class _Transport(aiokafka_driver.Transport):
    Consumer = OwnedConsumer


class ForwarderApp(faust.App):
    """A Faust app whose consumer is an ``OwnedConsumer``."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    @property
    def owned_consumer(self) -> OwnedConsumer:
        return cast(OwnedConsumer, self.consumer)


def kafka_producer(app: faust.App) -> Any:
    """The aiokafka producer inside Faust's (None before the app started)."""
    return cast(Any, app.producer)._producer


def describe_producer(app: faust.App) -> str:
    """What the producer still holds, for the log of an acknowledgement timeout: records waiting
    per partition with that partition's known leader, and the brokers with a request in flight."""
    producer = kafka_producer(app)
    if producer is None:
        return "no producer"
    cluster = producer.client.cluster
    waiting = [
        f"{tp.topic}[{tp.partition}] {len(batches)} batches, "
        f"leader {cluster.leader_for_partition(tp)}"
        for tp, batches in producer._message_accumulator._batches.items()
    ]
    sender = producer._sender
    return (
        f"waiting: {'; '.join(waiting) or 'none'}; requests in flight to brokers "
        f"{sorted(sender._in_flight) or 'none'}; muted partitions {len(sender._muted_partitions)}"
    )


class TableStore:
    """The processor's state store over a Faust table with raw (bytes) keys and values."""

    def __init__(
        self, app: faust.App, table: Any, owner_topic: str, rocksdb: bool, batches: RecordBatches
    ) -> None:
        self._app = app
        self._batches = batches
        self._table = table
        # A co-partitioned input topic: owning its partition p means owning state partition p.
        self._owner_topic = owner_topic
        self._rocksdb = rocksdb
        if rocksdb:
            from rocksdict import ReadOptions, WriteBatch, WriteOptions  # the [rocksdb] extra

            self._write_batch = WriteBatch
            # No write-ahead log, as Kafka Streams has it: the changelog is the log. A write
            # batch holds its states and their changelog offset, so whatever RocksDB keeps
            # after a crash (its flushed memtables) is a consistent prefix, and the recovery
            # replays the changelog from that offset. Writing the log cost the main thread about
            # 3 µs per synced member.
            self._write_options = WriteOptions()
            # A property at run time; rocksdict's stub declares it a method.
            self._write_options.disable_wal = True  # type: ignore[method-assign,assignment]
            # A sync's scan reads each block once: kept out of the block cache, where it would
            # evict the states live events read, and read ahead. 125,000 states in a partition:
            # 0.9 µs a state against 1.3 to 1.8 with the defaults.
            self._scan_options = ReadOptions()
            # Takes the flag at run time; rocksdict's stub declares no argument.
            self._scan_options.fill_cache(False)  # type: ignore[call-arg]
            self._scan_options.set_readahead_size(SCAN_READAHEAD_BYTES)

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

    def items(self, partition: int, after: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        store = self._table.data
        if self._rocksdb:
            skipped = {store.offset_key, counts_key(partition), marks_key(partition), after}
            # RocksDB's iterator reads from a snapshot taken here, in key order.
            pairs = store._db_for_partition(partition).items(
                from_key=after or None, read_opt=self._scan_options
            )
            return ((key, value) for key, value in pairs if key not in skipped)
        return iter(sorted(item for item in self._memory_profiles(partition) if item[0] > after))

    def count(self, partition: int) -> int:
        store = self._table.data
        if self._rocksdb:
            estimate: int = store._db_for_partition(partition).property_int_value(
                "rocksdb.estimate-num-keys"
            )
            return estimate
        return sum(1 for _ in self._memory_profiles(partition))

    def _memory_profiles(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """The partition's profiles in the memory store, unordered."""
        prefix = counts_key(partition)  # the partition's key prefix is its counts key
        marks = marks_key(partition)
        for key, value in self._table.data.data.items():
            if key.startswith(prefix) and key != prefix and key != marks:
                yield key, value

    def owns(self, partition: int) -> bool:
        return TP(self._owner_topic, partition) in self._app.consumer.assignment()

    def persist(self) -> None:
        """Flush every open partition's memtables to disk (a graceful stop's last write):
        without a write-ahead log, a restart would replay them from the changelog."""
        if self._rocksdb:
            for db in list(self._table.data._dbs.values()):
                db.flush()

    def __len__(self) -> int:
        return len(self._table.data.data) if not self._rocksdb else 0

    async def write(self, partition: int, changes: Mapping[bytes, bytes | None]) -> Awaitable[None]:
        placed = await self._batches.add_all(self.changelog_topic, partition, changes)
        await self._batches.flush()
        return self._apply_acknowledged(partition, changes, placed)

    async def _apply_acknowledged(
        self,
        partition: int,
        changes: Mapping[bytes, bytes | None],
        placed: list[tuple[asyncio.Future[Any], int]],
    ) -> None:
        if not placed:
            return
        await asyncio.gather(*dict.fromkeys(future for future, _ in placed))
        last_offset = max(future.result().offset + index for future, index in placed)
        self.apply(partition, changes, last_offset)

    def apply(self, partition: int, changes: Mapping[bytes, bytes | None], offset: int) -> None:
        """Write changelog records up to ``offset`` (acknowledged ones, or a recovery's) to the
        store as Faust's recovery would, without an event object per record: RocksDB gets one
        write batch that also holds the partition's persisted offset (Faust's own key and
        format), so a restart replays only what came after it."""
        store = self._table.data
        if self._rocksdb:
            batch = self._write_batch(raw_mode=True)
            for key, value in changes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            batch.put(store.offset_key, str(offset).encode())
            store._db_for_partition(partition).write(batch, self._write_options)
            return
        # Faust's memory store keeps each key's partition to drop revoked ones after a recovery.
        data, partitions = store.data, store._key_partition
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
                partitions.pop(key, None)
            else:
                data[key] = value
                partitions[key] = partition


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
