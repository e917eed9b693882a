"""The shell around the forwarding decisions: one batch of input records at a time.

Per batch: check and parse each record (bad ones become dead letters), load the profile,
``decide``, send the outbound records, and start the batch's completion: it waits until Kafka
has acknowledged every send of the batch, and only then writes each touched profile's state
once, for the partitions this worker still owns. The changelog therefore never records a send
that did not happen, and a record whose batch did not complete is never committed: after a
crash or a rebalance the batch is read again and its records go out again, with the same
record ids (at least once, never lost).

Completions run beside the next batches, in order, each after the one before it; a failed one
fails every later one, which then write nothing, and the next batch or ``settle`` raises it.
The batches after them read the states still being written from ``_unapplied``. A live batch
returns once its sends are acknowledged, its state write left in flight; a sync's chunks do not
wait at all, so a chunk's round trips overlap the next chunk's reads and decisions (see
``process`` for why the two differ). At most ``COMPLETING_MAX`` units complete at once, which
bounds what a slow broker lets pile up. ``settle`` waits for every completion: before a sync's
scan, and in the consumer before any offset commit (so an offset is committed only once its
batch's sends and state are durable) and before a revoke.

Sync requests (after a config change) are served in the same stream, in order with the input
records of their partition, so a sync and a live event never race for one profile.

No Kafka client and no Faust here: records come in as plain data, and sends and state go
through the ``Producer`` and ``StateStore`` protocols (streams/faust_glue.py implements them).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from core.dead_letters import dead_letter
from core.errors import AckTimeoutError
from core.routing import Routing
from schemas.parsing import InvalidRecordError, check_key, parse
from schemas.plain import InputEventData, parse_membership_event, parse_profile_record
from schemas.records import ConnectionConfig, SourceRef, SyncRequest
from schemas.state import ProfileState, dump_profile, load_profile, new_profile
from streams import metrics, sync_marks
from streams.forwarding import Decision, Source, decide, reconcile
from streams.partner_counts import Held, PartnerCounts, held_change
from streams.sync_marks import (
    NO_MARKS,
    SyncMark,
    SyncMarks,
    caught_up,
    dump_marks,
    load_marks,
    new_mark,
)
from streams.tally import BatchMetrics

log = logging.getLogger(__name__)

# Profiles reconciled per send-and-store round of a sync: bounds memory and unacked sends.
SYNC_CHUNK = 5000
# Batches (or sync chunks) whose acknowledgements and state writes may be pending while the
# next one runs: the state they hold in memory, and what a slow broker lets pile up.
COMPLETING_MAX = 4
TOO_LARGE = "too_large"
# A sent entry's bytes beside the profile's identities and attributes and its ids: the keys,
# record id, action, timestamps and generation (about 190).
ENTRY_OVERHEAD = 512


@dataclass(slots=True, init=False)
class InputRecord:
    """One consumed record, as plain data. Not a frozen class: one is built per record, and a
    frozen one costs four times as much to build (2 µs)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_s: float

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        timestamp_s: float,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.timestamp_s = timestamp_s

    @property
    def source(self) -> Source:
        return Source(self.topic, self.partition, self.offset)

    @property
    def source_ref(self) -> SourceRef:
        return SourceRef(topic=self.topic, partition=self.partition, offset=self.offset)


class Producer(Protocol):
    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        """Queue one record; returns the future of Kafka's acknowledgement, which may come
        only after ``flush``."""

    def send_nowait(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any] | None:
        """As ``send`` when nothing needs waiting for, without a coroutine per record; None
        when something does (then ``send``)."""

    async def flush(self) -> None:
        """Send every queued record."""


class StateStore(Protocol):
    """Profile states of the partitions this worker owns (key -> state JSON)."""

    def get(self, partition: int, key: bytes) -> bytes | None: ...

    def items(self, partition: int, after: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """The partition's profiles (key, state) with keys after ``after``, in key order, read
        from a snapshot taken by this call: later writes are not seen. The partition's partner
        counts (``counts_key``) and sync marks (``marks_key``) are not among them."""

    def count(self, partition: int) -> int:
        """How many profiles the partition holds (RocksDB: its estimate, for progress)."""

    def owns(self, partition: int) -> bool:
        """Whether this worker still owns the partition: state is written only then."""

    async def write(self, partition: int, changes: Mapping[bytes, bytes | None]) -> Awaitable[None]:
        """Produce the changes' changelog records now (None deletes); the returned awaitable
        completes once Kafka acknowledged them and the store holds them."""


@dataclass(frozen=True, slots=True)
class ProcessorTopics:
    profiles: str
    sync: str
    dead_letters: str
    erasure_status: str
    # output_id -> its forward topic's name, creating the topic on first use
    outbound: Callable[[str], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Limits:
    """What one record may cause; keeps every state and record within Kafka's message size."""

    max_record_bytes: int
    max_identity_values: int
    ack_timeout_s: float
    # Syncs a partition's states may lag behind (streams/sync_marks.py); 0: none.
    sync_marks_max: int = 16


@dataclass(slots=True)
class _Unit:
    """One unit of work: the states it touched (per partition) and the sends it waits for."""

    # partition -> key -> the serialized state to write (None deletes).
    touched: defaultdict[int, dict[bytes, bytes | None]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    # A live batch's new states by key (keys name their partition), for a later event of the
    # same profile in it. A sync keeps only the bytes: thousands of states held per chunk
    # made the garbage collector scan them again and again.
    states: dict[bytes, ProfileState | None] = field(default_factory=dict)
    # Records of one Kafka batch share its future: awaited once each (``dict.fromkeys``).
    pending: list[Awaitable[Any]] = field(default_factory=list)
    # Kafka timestamps (seconds) of the input records that caused sends: for the latency metric.
    sources_sent: list[float] = field(default_factory=list)
    metrics: BatchMetrics = field(default_factory=BatchMetrics)
    # partition -> what the batch's states change in the profiles each partner holds
    held: defaultdict[int, Held] = field(default_factory=lambda: defaultdict(Counter))
    # partition -> its sync marks, read once per unit
    marks: dict[int, SyncMarks] = field(default_factory=dict)


def state_key(partition: int, mpid: str) -> bytes:
    """Table key: the partition first, so a sync finds one partition's profiles by prefix."""
    return f"{partition}:{mpid}".encode()


def counts_key(partition: int) -> bytes:
    """Table key of the partition's partner counts: an empty mpid, which no profile has."""
    return state_key(partition, "")


def marks_key(partition: int) -> bytes:
    """Table key of the partition's sync marks."""
    return sync_marks.marks_key(counts_key(partition))


def parse_input(topic_is_profiles: bool, key: bytes | None, value: bytes | None) -> InputEventData:
    event: InputEventData = (
        parse_profile_record(value) if topic_is_profiles else parse_membership_event(value)
    )
    check_key(key, event["mpid"], "mpid")
    return event


def check_size(record: InputRecord, limits: Limits) -> None:
    if record.value is not None and len(record.value) > limits.max_record_bytes:
        raise InvalidRecordError(
            TOO_LARGE,
            f"the record value has {len(record.value)} bytes, more than the "
            f"{limits.max_record_bytes} allowed (FORWARDER_MAX_RECORD_BYTES)",
        )


def check_identities(event: InputEventData, limits: Limits) -> None:
    identities = event.get("identities")
    if not isinstance(identities, dict):
        return
    for identity_type, values in identities.items():
        if isinstance(values, list) and len(values) > limits.max_identity_values:
            raise InvalidRecordError(
                TOO_LARGE,
                f"identities.{identity_type} has {len(values)} values, more than the "
                f"{limits.max_identity_values} allowed (FORWARDER_MAX_IDENTITY_VALUES)",
            )


def now_ms() -> int:
    return int(time.time() * 1000)


class InputProcessor:
    def __init__(
        self,
        *,
        routing: Routing,
        store: StateStore,
        producer: Producer,
        topics: ProcessorTopics,
        limits: Limits,
        config_applied: Callable[[SourceRef], Awaitable[None]],
        partner_counts: PartnerCounts | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.routing = routing
        self.store = store
        self.producer = producer
        self.topics = topics
        self.limits = limits
        self.config_applied = config_applied
        self.partner_counts = partner_counts or PartnerCounts()
        # Milliseconds since the epoch: a sync's records and marks carry it.
        self.clock = clock
        # output_id -> its forward topic, created on the first record
        self._outbound_topics: dict[str, str] = {}
        # The completions of the units still completing, oldest first; the last one completes
        # after all the others (each waits for its predecessor).
        self._completing: deque[asyncio.Future[None]] = deque()
        # Until the store holds them, the states of those units (state key -> serialized
        # state, None deleted), the latest unit's for a key that several touched.
        self._unapplied: dict[bytes, bytes | None] = {}
        # partition -> its sync marks as last read, and the bytes they were read from
        self._marks: dict[int, tuple[bytes, SyncMarks]] = {}

    async def process(self, records: Sequence[InputRecord]) -> None:
        """Handle one batch; returns once its sends are acknowledged and its state writes are
        in flight (``settle`` waits for those: the batch may be committed only after it).
        Raises, and the batch must then not be committed, when Kafka does not acknowledge in
        time or refuses, this batch's sends or an earlier unit's."""
        self._raise_failed()
        unit = _Unit()
        served: set[int] = set()
        for position, record in enumerate(records):
            if position in served:
                continue
            if record.topic == self.topics.sync:
                await self._complete(unit)
                unit = _Unit()
                run = self._sync_run(records, position)
                served.update(run)
                await self._sync(record.partition, [records[index] for index in run])
            else:
                await self._handle(unit, record)
        await self._complete(unit)
        # Measured at a paced load (16,000 events/s): a live batch that returned before its
        # acknowledgements made the next one start on the few records fetched right after this
        # one's, while those arriving meanwhile waited a batch more, and the worker's thread
        # left the consumer's thread less time to fetch (p50 latency 29 to 38 ms against 21 to
        # 25). A sync's chunks gain from not waiting (a 300,000-member sync: 36,300 to 37,900
        # members/s against 31,100 to 35,200).
        await self.wait_acknowledged(unit.pending)

    def _sync_run(self, records: Sequence[InputRecord], first: int) -> list[int]:
        """The sync requests of one partition that one scan can serve: the first and those
        after it up to the partition's next input record (other partitions are independent)."""
        partition, run = records[first].partition, [first]
        for index in range(first + 1, len(records)):
            record = records[index]
            if record.partition != partition:
                continue
            if record.topic != self.topics.sync:
                break
            run.append(index)
        return run

    async def _handle(self, unit: _Unit, record: InputRecord) -> None:
        try:
            check_size(record, self.limits)
            parsed = parse_input(record.topic == self.topics.profiles, record.key, record.value)
            check_identities(parsed, self.limits)
        except InvalidRecordError as error:
            unit.pending.append(await self._dead_letter(record, error))
            return
        mpid = parsed["mpid"]
        key = state_key(record.partition, mpid)
        marks = unit.marks.get(record.partition)
        if marks is None:
            marks = unit.marks[record.partition] = self._marks_of(record.partition)
        if key in unit.states:
            state = unit.states[key] or new_profile(mpid)
        else:
            stored = self._stored(record.partition, key)
            if stored:
                state = load_profile(stored)
                if marks.behind(state):
                    state = caught_up(state, marks)
            else:
                state = new_profile(mpid)
        decision = decide(state, parsed, self.routing, record.source)
        if marks.marks and decision.state is not None:
            # The processor's own copy (loaded, or the decision's): it includes every mark.
            decision.state["m"] = marks.seq
        try:
            encoded = self._encode(decision)
        except InvalidRecordError as error:
            # The profile stays as it was: the event's effect would not fit in Kafka.
            unit.pending.append(await self._dead_letter(record, error))
            return
        await self._send(unit, decision)
        if decision.records:
            unit.sources_sent.append(record.timestamp_s)
        unit.touched[record.partition][key] = encoded
        unit.states[key] = decision.state
        held_change(state, decision.state, unit.held[record.partition])

    def _stored(self, partition: int, key: bytes) -> bytes | None:
        """The key's value as the units so far leave it, applied or not."""
        unapplied = self._unapplied
        return unapplied[key] if key in unapplied else self.store.get(partition, key)

    def _marks_of(self, partition: int) -> SyncMarks:
        raw = self._stored(partition, marks_key(partition))
        if raw is None:
            return NO_MARKS
        cached = self._marks.get(partition)
        if cached is not None and cached[0] == raw:
            return cached[1]
        marks = load_marks(raw)
        self._marks[partition] = (raw, marks)
        return marks

    def _encode(self, decision: Decision) -> bytes | None:
        """The new state, serialized; too_large when it or a record would not fit."""
        state = dump_profile(decision.state) if decision.state is not None else None
        largest = len(state) if state is not None else 0
        for record in decision.records:
            largest = max(largest, len(record.value))
        if largest > self.limits.max_record_bytes:
            raise InvalidRecordError(
                TOO_LARGE,
                f"applying the record would make a profile state or outbound record of "
                f"{largest} bytes, more than the {self.limits.max_record_bytes} allowed "
                "(FORWARDER_MAX_RECORD_BYTES)",
            )
        return state

    async def _sync(self, partition: int, requests: Sequence[InputRecord]) -> None:
        """Reconcile this partition's profiles concerned by some config changes, in one scan."""
        connections: dict[str, ConnectionConfig] = {}
        for record in requests:
            try:
                request = parse(SyncRequest, record.value)
            except InvalidRecordError as error:
                await self.wait_acknowledged(await self._dead_letter(record, error))
                continue
            await self.config_applied(request.config)
            if request.kind == "output":
                found = self.routing.connections_of_output(request.id)
            else:
                connection = self.routing.find_connection(request.id)
                found = [connection] if connection else []
            connections.update((c.connection_id, c) for c in found)
        if not connections:
            return
        await self.settle()  # the scan reads the store: every earlier write is in it
        marks = self._marks_of(partition)
        # Mark the sync instead of writing the states it changes, unless the partition's marks
        # are at their limit: then write every state they change (clearing them) as well.
        lazy = len(marks.marks) < self.limits.sync_marks_max
        mark = new_mark(
            marks.seq + 1, self.routing, connections.values(), requests[-1].source, self.clock()
        )
        # A state written here includes the marks so far, and this one unless it is written.
        covered = mark.seq if lazy else marks.seq
        # Cheap byte test before decoding: only profiles naming an audience or a connection.
        needles = mark.needles() if lazy else mark.needles() | marks.needles()
        concerned = re.compile(b"|".join(re.escape(needle) for needle in sorted(needles))).search
        unwritten_fits = self._unwritten_fits(mark, marks)
        started = time.monotonic()
        # The total is the store's estimate at first (RocksDB's), set to the exact count at
        # the end, so that the progress gauges agree once the sync is done.
        expected = self.store.count(partition)
        for connection_id in connections:
            metrics.SYNC_PROFILES.labels(connection_id).inc(expected)
        # Profiles the sync changed; of them, those whose state the mark stands for.
        checked, sent, changed, deferred = 0, 0, 0, 0
        # What the states left to the mark change in the partner counts: applied with the mark,
        # in the step that makes those states what a count reads.
        marked_held: Held = Counter()
        scan = self.store.items(partition)
        while chunk := list(islice(scan, SYNC_CHUNK)):
            unit = _Unit()
            for key, stored in chunk:
                if concerned(stored) is None:
                    continue
                loaded = load_profile(stored)
                state = caught_up(loaded, marks) if marks.behind(loaded) else loaded
                decision = reconcile(
                    state, mark.routing, mark.source, mark.timestamp_ms, only=connections
                )
                if decision.state is state:
                    if decision.drops:
                        # Evaluated as a live event is: its drops count (a preview shows them).
                        unit.metrics.count(decision)
                    if lazy or state is loaded:
                        continue
                else:
                    changed += 1
                    if lazy and unwritten_fits(stored):
                        # The mark stands for this state: the sync's replay writes it.
                        await self._send(unit, decision)
                        sent += len(decision.records)
                        deferred += 1
                        held_change(state, decision.state, marked_held)
                        continue
                written = decision.state
                assert written is not None, "a reconcile never erases"
                if covered:
                    written["m"] = covered  # a copy: the reconcile's or the replay's
                try:
                    encoded = self._encode(decision)
                except InvalidRecordError:
                    # Only a state written under a larger limit can get here; it stays as it
                    # is, with the syncs before this one (this one's replay would send nothing).
                    log.warning("sync skipped a profile whose records exceed the size limit")
                    if state is not loaded or lazy:
                        state["m"] = covered
                        unit.touched[partition][key] = dump_profile(state)
                    continue
                if decision.state is not state:
                    await self._send(unit, decision)
                    sent += len(decision.records)
                    held_change(state, decision.state, unit.held[partition])
                unit.touched[partition][key] = encoded
            await self._complete(unit)
            checked += len(chunk)
            for connection_id in connections:
                metrics.SYNC_PROFILES_DONE.labels(connection_id).inc(len(chunk))
        # A state written with this mark's number needs the mark too: a later one must not
        # reuse it.
        if changed if lazy else marks.marks:
            await self.settle()  # every record the mark stands for is acknowledged
            unit = _Unit()
            after = marks.with_mark(mark) if lazy else marks.cleared()
            unit.touched[partition][marks_key(partition)] = dump_marks(after)
            unit.held[partition] = marked_held
            await self._complete(unit)
        for connection_id in connections:
            metrics.SYNC_PROFILES.labels(connection_id).inc(checked - expected)
        await self.settle()
        self._resyncs_done(partition, connections.values())
        log.log(
            logging.INFO if checked else logging.DEBUG,
            "sync of %s on partition %d: %d profiles checked, %d records sent in %.1f s "
            "(%d changed, %d of them left to the sync's mark)",
            ", ".join(sorted(connections)),
            partition,
            checked,
            sent,
            time.monotonic() - started,
            changed,
            deferred,
        )

    def _unwritten_fits(self, mark: SyncMark, marks: SyncMarks) -> Callable[[bytes], bool]:
        """Whether a stored state, once the pending marks and ``mark`` are replayed on it, is
        sure to fit in a record: each replay adds at most one sent entry per connection, which
        holds no more of the profile than the profile itself, and a few ids beside it."""
        connections = len(mark.connection_ids) + sum(len(m.connection_ids) for m in marks.marks)
        ids = 0
        for held in (mark, *marks.marks):
            for connection_id in held.connection_ids:
                connection = held.routing.find_connection(connection_id)
                if connection is not None:
                    size = len(connection.audience_id) + len(connection.output_id)
                    ids = max(ids, size + len(connection_id))
        growth = connections * (ENTRY_OVERHEAD + 2 * ids)
        limit = self.limits.max_record_bytes

        def fits(stored: bytes) -> bool:
            return len(stored) * (1 + connections) + growth <= limit

        return fits

    def _resyncs_done(self, partition: int, connections: Iterable[ConnectionConfig]) -> None:
        """A finished scan served each live connection's current resync generation here; the
        API refuses a new resync until every partition reports it."""
        if not self.store.owns(partition):
            return  # its writes were left to the new owner, which serves the request again
        for connection in connections:
            if connection.resync is not None and self.routing.is_live(connection):
                metrics.RESYNC_DONE.labels(connection.connection_id, str(partition)).set(
                    connection.resync.generation
                )

    async def wait_acknowledged(self, pending: Awaitable[Any] | list[Awaitable[Any]]) -> None:
        """Wait for Kafka's acknowledgements, at most FORWARDER_ACK_TIMEOUT_S."""
        futures = pending if isinstance(pending, list) else [pending]

        async def acknowledged() -> None:
            await self.producer.flush()
            await asyncio.gather(*dict.fromkeys(futures))

        await self._within_ack_timeout(acknowledged(), f"{len(futures)} sends")

    async def _within_ack_timeout(self, work: Awaitable[Any], what: str) -> None:
        try:
            await asyncio.wait_for(work, self.limits.ack_timeout_s)
        except TimeoutError:
            raise AckTimeoutError(
                f"Kafka did not acknowledge {what} within "
                f"{self.limits.ack_timeout_s:.0f} s (FORWARDER_ACK_TIMEOUT_S)"
            ) from None

    async def _complete(self, unit: _Unit) -> None:
        """Hand the unit's sends to Kafka, make its states visible to the next units, and start
        its completion, after the unit before it; waits while ``COMPLETING_MAX`` others run."""
        await self.producer.flush()
        visible: dict[bytes, bytes | None] = {}
        for touched in unit.touched.values():
            visible.update(touched)
        self._unapplied.update(visible)
        previous = self._completing[-1] if self._completing else None
        self._completing.append(asyncio.ensure_future(self._completion(unit, previous, visible)))
        self._raise_failed()
        if len(self._completing) > COMPLETING_MAX:
            # Shielded: a waiter cancelled (a stop) must not cancel the completion itself.
            await asyncio.shield(self._completing[0])
            self._raise_failed()

    async def _completion(
        self, unit: _Unit, previous: asyncio.Future[None] | None, visible: dict[bytes, bytes | None]
    ) -> None:
        """Wait for the unit's acknowledgements, then write its states and wait until the store
        holds them; in unit order, and nothing after a failed unit."""
        if previous is not None:
            await previous  # raises what it raised: this unit then writes nothing
        # Acknowledged by Kafka before any state says they were sent. ``_complete`` sent them;
        # what this flush finds open is a later unit's, which the state write flushes anyway.
        await self.wait_acknowledged(unit.pending)
        acknowledged = time.time()
        unit.metrics.flush()
        for timestamp in unit.sources_sent:
            metrics.LATENCY.observe(max(0.0, acknowledged - timestamp))
        writes: list[Awaitable[None]] = []
        counts = self.partner_counts
        for partition in {*unit.touched, *counts.unstored()}:
            if not self.store.owns(partition):
                if partition in unit.touched:
                    # Revoked while the batch ran: the new owner reads these records again.
                    log.info(
                        "partition %d revoked during a batch: state left to its new owner",
                        partition,
                    )
                continue
            touched = unit.touched[partition]
            held = unit.held.get(partition)
            # The partner counts go in the same changelog batch as the states they count.
            stored_counts = counts.to_store(partition, held)
            if stored_counts is not None:
                touched[counts_key(partition)] = stored_counts
            elif counts.outdates_stored(partition, held):
                touched[counts_key(partition)] = None
            if not touched:
                continue  # a sync's chunk that left every state to its mark
            written = await self.store.write(partition, touched)
            writes.append(self._applied(partition, written, held, stored_counts is not None))
        # Every partition's changelog records in flight at once: one acknowledgement round trip.
        await self._within_ack_timeout(
            asyncio.gather(*writes), f"the state writes of {len(writes)} partitions"
        )
        unapplied = self._unapplied
        for key, state in visible.items():
            # The store holds it now, unless a later unit changed it again (that one's stays).
            if key in unapplied and unapplied[key] is state:
                del unapplied[key]

    async def _applied(
        self, partition: int, written: Awaitable[None], held: Held | None, with_counts: bool
    ) -> None:
        await written
        # In the same step as the store write: a count read in between would see it twice.
        if held:
            self.partner_counts.apply(partition, held)
        if with_counts:
            self.partner_counts.stored(partition)

    async def settle(self) -> None:
        """Wait until every unit has completed (its sends acknowledged, its states in the
        store); raises (the batches since the last commit must then not be committed) when one
        failed."""
        if self._completing:
            # Shielded: a waiter cancelled (a stop) must not cancel the completion itself.
            await asyncio.shield(self._completing[-1])
        self._raise_failed()

    def _raise_failed(self) -> None:
        """Raise what a completed unit raised: no batch runs after a failed one."""
        while self._completing and self._completing[0].done():
            self._completing.popleft().result()

    async def _send(self, unit: _Unit, decision: Decision) -> None:
        for record in decision.records:
            topic = self._outbound_topics.get(record.output_id)
            if topic is None:
                topic = self._outbound_topics[record.output_id] = await self.topics.outbound(
                    record.output_id
                )
            key = record.mpid.encode()
            acknowledged = self.producer.send_nowait(topic, key, record.value)
            if acknowledged is None:
                acknowledged = await self.producer.send(topic, key, record.value)
            unit.pending.append(acknowledged)
        for status in decision.erasure_statuses:
            unit.pending.append(
                await self.producer.send(
                    self.topics.erasure_status, status.mpid.encode(), status.value
                )
            )
        unit.metrics.count(decision)

    async def _dead_letter(self, record: InputRecord, error: InvalidRecordError) -> Awaitable[Any]:
        return await send_dead_letter(
            self.producer,
            self.topics.dead_letters,
            record,
            error,
            max_bytes=self.limits.max_record_bytes,
        )


async def send_dead_letter(
    producer: Producer,
    topic: str,
    record: InputRecord,
    error: InvalidRecordError,
    *,
    max_bytes: int,
    value: bytes | None = None,
) -> Awaitable[Any]:
    """Send a dead letter now (``value`` replaces the record's, e.g. redacted); returns the
    delivery future to wait on."""
    letter = dead_letter(
        record.source_ref,
        record.key,
        record.value if value is None else value,
        error.kind,
        error.message,
        now_ms(),
        max_bytes=max_bytes,
    )
    metrics.DEAD_LETTERS.labels(record.topic, error.kind).inc()
    key = record.key if record.key is None or len(record.key) <= max_bytes // 4 else None
    return await producer.send(topic, key, letter)
