"""The Faust application: topics, the profiles table, the batch handlers and the web endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from faust.web import Request, Response, View
from mode import BaseSignalT

from core.auth import bearer_matches
from core.config import ConfigView, apply_config
from core.dead_letters import ENVELOPE_BYTES, redact
from core.errors import AckTimeoutError, ConfigError
from core.kafka_admin import (
    TopicSpec,
    ensure_topics,
    max_message_bytes,
    track_topics,
    wait_for_topics,
)
from core.prometheus import exposition
from core.routing import Routing
from core.settings import Settings
from partners.catalog import Output
from schemas import topics
from schemas.parsing import InvalidRecordError
from schemas.records import SyncRequest
from streams import metrics
from streams.faust_glue import (
    BoundedWorker,
    ForwarderApp,
    TableStore,
    credentials,
    describe_producer,
    exit_now,
    kafka_producer,
    rewind_uncommitted,
    rocksdb_options,
)
from streams.health import WorkerHealth
from streams.operator_reads import RETRY_AFTER_S, OperatorReads
from streams.partner_counts import PartnerCounts
from streams.processor import (
    InputProcessor,
    InputRecord,
    Limits,
    ProcessorTopics,
    counts_key,
    send_dead_letter,
)
from streams.record_batches import RecordBatches

log = logging.getLogger(__name__)

# The collector's thresholds once started. A batch holds thousands of container objects
# (parsed records, states, decisions, futures) until its end, so with Python's default (700,
# 10, 10) young collections ran dozens of times per batch and promoted each batch's objects to
# be scanned again: 12% of the worker's CPU in the steady state and 8% in a load and sync
# (measured with gc.callbacks), against under 2% with these. Most objects are freed by their
# reference counts, which the thresholds count against, so a collection still comes after
# 50,000 container objects more alive than freed.
GC_THRESHOLDS = (50_000, 20, 10)
# Longest a rebalance's rewind of uncommitted partitions may take before the worker restarts.
REWIND_TIMEOUT_S = 30.0
# Longest a fatal exit waits for the group coordinator to take this member out of the group.
LEAVE_TIMEOUT_S = 5.0


class TopicLayoutError(ConfigError):
    """An existing topic whose partition count breaks co-partitioning: start-up stops."""


class Forwarder:
    """Builds and holds one worker's Faust app and the state around it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = ForwarderApp(
            settings.group_id,
            broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
            broker_credentials=credentials(settings),
            store="rocksdb://" if settings.store == "rocksdb" else "memory://",
            datadir=str(settings.data_dir),
            topic_partitions=settings.input_partitions,
            topic_replication_factor=settings.replication_factor,
            topic_allow_declare=True,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            producer_acks=-1,
            # Faust's 20 minutes would let a request without an answer, or a partition without
            # a leader, hold its records silently until the ack timeout kills the worker; half
            # of it makes aiokafka retry or fail them, with a log line, inside that window.
            producer_request_timeout=max(1.0, settings.ack_timeout_s / 2),
            # Outbound records are sent a batch at a time, then awaited: let them share requests.
            producer_linger_ms=settings.producer_linger_ms,
            producer_max_batch_size=settings.producer_batch_bytes,
            producer_max_request_size=settings.producer_max_request_bytes,
            # A broker returns a batch larger than this only for the first partition of a
            # fetch: a smaller limit could leave a partition behind an oversized record.
            consumer_max_fetch_size=settings.consumer_max_fetch_bytes,
            broker_max_poll_records=settings.batch_max,
            table_standby_replicas=settings.table_standby_replicas,
            web_enabled=True,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            web_port=settings.web_port,
            autodiscover=False,
        )
        self.routing = Routing()
        self._outbound_topics: set[str] = set()
        self._tracked = False
        self.config_view = ConfigView(settings, self.routing, on_output=self._on_output)

        # One stream, co-partitioned: a profile's updates, memberships and the sync requests
        # of its partition are handled by one worker, in order.
        self.inputs = self.app.topic(
            settings.topic(topics.PROFILE_UPDATES),
            settings.topic(topics.AUDIENCE_MEMBERSHIPS),
            settings.topic(topics.SYNC),
            partitions=settings.input_partitions,
        )
        self.sync_requests = self.app.topic(
            settings.topic(topics.SYNC), partitions=settings.input_partitions
        )
        self.config_topics = self.app.topic(
            settings.topic(topics.OUTPUTS),
            settings.topic(topics.CONNECTIONS),
            partitions=1,
            compacting=True,
        )
        self.profiles = self.app.Table(
            "profiles",
            partitions=settings.input_partitions,
            default=None,
            key_type=bytes,  # bytes types make Faust use the raw codec for the changelog
            value_type=bytes,
            options=rocksdb_options(settings) if settings.store == "rocksdb" else None,
        )
        self.batches = RecordBatches(lambda: kafka_producer(self.app))
        self.store = TableStore(
            self.app,
            self.profiles,
            owner_topic=settings.topic(topics.PROFILE_UPDATES),
            rocksdb=settings.store == "rocksdb",
            batches=self.batches,
        )
        self.limits = Limits(
            max_record_bytes=settings.max_record_bytes,
            max_identity_values=settings.max_identity_values,
            ack_timeout_s=settings.ack_timeout_s,
            sync_marks_max=settings.sync_marks_max,
        )
        self.partner_counts = PartnerCounts()
        self.processor = InputProcessor(
            routing=self.routing,
            store=self.store,
            producer=self.batches,
            topics=ProcessorTopics(
                profiles=settings.topic(topics.PROFILE_UPDATES),
                sync=settings.topic(topics.SYNC),
                dead_letters=settings.topic(topics.DEAD_LETTERS),
                erasure_status=settings.topic(topics.ERASURE_STATUS),
                outbound=self.outbound_topic,
            ),
            limits=self.limits,
            config_applied=self.config_view.applied,
            partner_counts=self.partner_counts,
        )
        self.health = WorkerHealth(settings.stall_timeout_s)
        self.operator_reads = OperatorReads(
            routing=self.routing,
            store=self.store,
            partitions=self.settings.input_partitions,
            settled=lambda: (
                self.config_view.loaded.is_set()
                and not self.app.rebalancing
                and not self.app.in_recovery
                and self.app.owned_consumer.flow_active
            ),
        )

        # Both are subscribed, but their batches run in the consumer's fetch loop, one at a
        # time, and are committed by it (streams/faust_glue.py: OwnedConsumer).
        self.app.topics.add(self.inputs)
        self.app.topics.add(self.config_topics)
        forward = self._guarded(self.processor.process)
        validate = self._guarded(self._validate_batch)
        self.app.owned_consumer.own(
            {
                **{topic: forward for topic in self.inputs.topics},
                **{topic: validate for topic in self.config_topics.topics},
            },
            commit_interval_s=float(self.app.conf.broker_commit_interval),
            ready=self._ready,
            fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            fetch_min_bytes=self.settings.consumer_fetch_min_bytes,
            changelog_writers={self.store.changelog_topic: self.store.apply},
            settle=self._settle,
        )
        self.app.task(self._run_config_view)
        self.app.timer(interval=5.0)(self._update_gauges)
        self.app.task(self._keep_partner_counts)
        self._partner_labels: set[tuple[str, str, str]] = set()
        # Set by a rebalance: the partitions it assigned are counted at once, not an interval
        # later (a sync or a load running meanwhile would share the worker with the count).
        self._recount = asyncio.Event()
        self.app.on_rebalance_complete.connect(self._after_rebalance)
        self._add_web_views()
        self._add_operator_views()

    async def create_topics(self) -> None:
        """Create the missing topics of ``required_topics``, wait until each is visible with a
        leader per partition, and check partition counts and message sizes; run before the
        worker starts."""
        options = self.settings.kafka_client_options()
        required = self.required_topics()
        await ensure_topics(options, required, self.settings.replication_factor)
        found = await wait_for_topics(options, [spec.name for spec in required])
        counts = Counter(tp.topic for tp in found)
        for spec in self.copartitioned_topics():
            if counts[spec.name] != spec.partitions:
                raise TopicLayoutError(
                    f"forwarder: topic {spec.name} has {counts[spec.name]} partitions, the "
                    f"settings want {spec.partitions} (FORWARDER_INPUT_PARTITIONS); "
                    "co-partitioned topics and the changelog must agree"
                )
        limits = await max_message_bytes(
            self.settings.kafka_client_options(), [spec.name for spec in required]
        )
        self._check_message_sizes(limits)
        self._check_fetch_size(limits)
        self._fit_batches(limits)

    def _fit_batches(self, limits: dict[str, int]) -> None:
        """A producer batch goes whole to one topic, which refuses it beyond its
        max.message.bytes: no batch is larger than the smallest limit of these topics."""
        fitting = min(self.settings.producer_batch_bytes, *limits.values())
        if fitting < self.settings.producer_batch_bytes:
            log.info(
                "producer batches of at most %d bytes (FORWARDER_PRODUCER_BATCH_BYTES is %d): "
                "the smallest max.message.bytes of the worker's topics",
                fitting,
                self.settings.producer_batch_bytes,
            )
        # Faust's producer has read its settings already; it builds aiokafka's at start.
        self.app.producer.max_batch_size = fitting

    def _check_fetch_size(self, limits: dict[str, int]) -> None:
        """The consumer must fetch the largest record any topic it reads can hold."""
        read = set(self.inputs.topics) | set(self.config_topics.topics)
        largest = max((limit for name, limit in limits.items() if name in read), default=0)
        if largest > self.settings.consumer_max_fetch_bytes:
            raise TopicLayoutError(
                f"forwarder: the input topics accept messages of {largest} bytes, more than "
                f"FORWARDER_CONSUMER_MAX_FETCH_BYTES ({self.settings.consumer_max_fetch_bytes}): "
                "raise it so that every record can be fetched"
            )

    def _check_message_sizes(self, limits: dict[str, int]) -> None:
        """Every state, outbound record and dead letter is at most FORWARDER_MAX_RECORD_BYTES
        (a changelog record also carries its key, an mpid bounded by the same limit): the
        producer and each topic must accept that much."""
        needed = 2 * self.settings.max_record_bytes + ENVELOPE_BYTES
        if self.settings.producer_max_request_bytes < needed:
            raise TopicLayoutError(
                f"forwarder: FORWARDER_PRODUCER_MAX_REQUEST_BYTES must be at least {needed} "
                "(twice FORWARDER_MAX_RECORD_BYTES and 8 KiB)"
            )
        small = sorted(name for name, limit in limits.items() if limit < needed)
        if small:
            raise TopicLayoutError(
                f"forwarder: topics {', '.join(small)} accept messages of "
                f"{min(limits[name] for name in small)} bytes, the settings need {needed}: "
                "raise their max.message.bytes or lower FORWARDER_MAX_RECORD_BYTES"
            )

    def copartitioned_topics(self) -> list[TopicSpec]:
        """The inputs, the sync requests and the table's changelog: partition p of each is
        one worker's, so their partition counts must agree."""
        settings, partitions = self.settings, self.settings.input_partitions
        return [
            TopicSpec(settings.topic(topics.PROFILE_UPDATES), partitions),
            TopicSpec(settings.topic(topics.AUDIENCE_MEMBERSHIPS), partitions),
            TopicSpec(settings.topic(topics.SYNC), partitions),
            TopicSpec(self.profiles.changelog_topic.get_topic_name(), partitions, compacted=True),
        ]

    def required_topics(self) -> list[TopicSpec]:
        """Every topic the worker reads or writes at start (outbound ones come with outputs).

        They must exist before Faust subscribes: its assignor co-partitions only the topics it
        sees then, and the sync topic must be co-partitioned with the inputs and the table.
        """
        settings, partitions = self.settings, self.settings.input_partitions
        return [
            *self.copartitioned_topics(),
            TopicSpec(settings.topic(topics.OUTPUTS), 1, compacted=True),
            TopicSpec(settings.topic(topics.CONNECTIONS), 1, compacted=True),
            TopicSpec(settings.topic(topics.DEAD_LETTERS), partitions),
            TopicSpec(settings.topic(topics.ERASURE_STATUS), partitions),
        ]

    async def outbound_topic(self, output_id: str) -> str:
        """The forward-<output_id> topic's name, created (and waited for: a produce to a
        topic without a leader yet can wedge the producer) and tracked on first use."""
        name = self.settings.topic(topics.outbound(output_id))
        if name not in self._outbound_topics:
            options = self.settings.kafka_client_options()
            await ensure_topics(
                options,
                [TopicSpec(name, self.settings.outbound_partitions)],
                self.settings.replication_factor,
            )
            await wait_for_topics(options, [name])
            await self._track_topics([name])
            self._outbound_topics.add(name)
        return name

    async def _track_topics(self, names: list[str]) -> None:
        producer = kafka_producer(self.app)
        if producer is not None:  # else the topic is tracked when the first batch starts
            await track_topics(producer, names)

    async def _ready(self) -> None:
        """Before each batch: the config is loaded and every topic the worker writes is
        tracked by the producer (see ``track_topics``; cheap once done)."""
        await self.config_view.loaded.wait()
        if not self._tracked:
            await self._track_topics(
                [
                    self.settings.topic(topics.DEAD_LETTERS),
                    self.settings.topic(topics.ERASURE_STATUS),
                    self.settings.topic(topics.SYNC),
                    self.store.changelog_topic,
                    *self._outbound_topics,
                ]
            )
            self._tracked = True
            # The start-up's objects (modules, Faust's services) live as long as the process:
            # out of the collector's full scans, which otherwise walk them again and again.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)

    async def _on_output(self, output: Output) -> None:
        await self.outbound_topic(output.output_id)

    async def _run_config_view(self) -> None:
        await self.config_view.run()

    def _guarded(
        self, work: Callable[[list[InputRecord]], Awaitable[None]]
    ) -> Callable[[list[InputRecord]], Awaitable[None]]:
        """The batch handler around ``work``: any failure exits the process at once, with the
        batch uncommitted, so the next owner reads it again."""

        async def handle(records: list[InputRecord]) -> None:
            try:
                await work(records)
            except Exception as error:
                self._fail(error)
            self.health.batch_done(records)

        return handle

    async def _settle(self) -> None:
        """The processor's state writes in flight, before a commit: a failure is fatal as a
        batch's is, with nothing committed."""
        try:
            await self.processor.settle()
        except Exception as error:
            self._fail(error)

    def _fail(self, error: Exception) -> None:
        log.error("processing failed; the batch is left uncommitted", exc_info=error)
        if isinstance(error, AckTimeoutError):
            log.error("the producer holds: %s", describe_producer(self.app))
        self.health.crashed(error)
        self._exit_leaving_group(f"processing failed: {type(error).__name__}")

    async def drain(self) -> None:
        """Start no new batch, finish the one in flight and commit it, and write the table's
        memtables to disk, so that a restart replays nothing (SIGTERM's first step)."""
        await self.app.owned_consumer.drain()
        self.store.persist()

    async def _validate_batch(self, records: list[InputRecord]) -> None:
        outputs_topic = self.settings.topic(topics.OUTPUTS)
        pending: list[Awaitable[Any]] = []
        for record in records:
            is_output = record.topic == outputs_topic
            try:
                # A scratch Routing: this only validates; the config view applies.
                apply_config(
                    Routing(), is_output, record.key, record.value, self.settings.max_record_bytes
                )
            except InvalidRecordError as error:
                pending.append(
                    await send_dead_letter(
                        self.batches,
                        self.settings.topic(topics.DEAD_LETTERS),
                        record,
                        error,
                        max_bytes=self.settings.max_record_bytes,
                        value=redact(record.value) if is_output else None,
                    )
                )
                continue
            request = (
                SyncRequest(
                    kind="output" if is_output else "connection",
                    id=(record.key or b"").decode("utf-8", "replace"),
                    config=record.source_ref,
                )
                .model_dump_json()
                .encode()
            )
            for partition in range(self.settings.input_partitions):
                pending.append(
                    await self.batches.send(
                        self.settings.topic(topics.SYNC), record.key, request, partition
                    )
                )
        # The sync requests are in Kafka before the config record counts as handled.
        await self.processor.wait_acknowledged(pending)

    async def _after_rebalance(
        self, sender: Any, /, *args: Any, signal: BaseSignalT[Any], **kwargs: Any
    ) -> None:
        # Another worker may have written any partition since it was counted here.
        self.partner_counts.forget()
        self._recount.set()
        # Runs before Faust resumes fetching: if it cannot finish, the worker would sit
        # healthy and idle; a restart is safe (nothing unfinished is committed) and a new
        # process has no stale fetch positions.
        try:
            await asyncio.wait_for(
                rewind_uncommitted(
                    self.app,
                    self.settings.group_id,
                    self.settings.kafka_client_options(),
                    set(self.inputs.topics) | set(self.config_topics.topics),
                ),
                REWIND_TIMEOUT_S,
            )
        except Exception as error:
            log.exception("could not rewind the partitions without a committed offset")
            self.health.crashed(error)
            self._exit_leaving_group("could not rewind the partitions without a committed offset")

    def _exit_leaving_group(self, reason: str) -> None:
        """A fatal exit (code 1) that hands this worker's partitions over at once."""
        self.app.owned_consumer.leave_group_now(LEAVE_TIMEOUT_S)
        exit_now(1, reason)

    async def _update_gauges(self) -> None:
        try:
            await self._observe()
        except Exception:
            # A gauge must never take the worker down (an assignment may change under it).
            log.warning("updating the gauges failed", exc_info=True)

    async def _keep_partner_counts(self) -> None:
        """Count the partitions as soon as the worker is settled after a start or a rebalance
        (while it is not, every second), then publish the counts every interval."""
        interval = self.settings.partner_count_interval_s
        while True:
            self._recount.clear()
            try:
                counted = await self._count_partner_profiles()
            except Exception:
                # A gauge must never take the worker down (an assignment may change under it).
                log.warning("publishing the partner counts failed", exc_info=True)
                counted = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._recount.wait(), interval if counted else min(interval, 1.0)
                )

    async def _count_partner_profiles(self) -> bool:
        """forwarder_partner_profiles: each owned partition not counted since the last
        rebalance reads the counts stored in the table, or, without them, counts its profiles
        (batches run meanwhile: ``count_held``); the batches' writes keep them after
        (``PartnerCounts``) and store them. False when a rebalance stopped it."""
        for partition in range(self.settings.input_partitions):
            await asyncio.sleep(0)  # batches may run between partitions
            if not self.operator_reads.settled():
                return False  # rebalancing: counted again once settled
            if self.store.owns(partition) and not self.partner_counts.known(partition):
                stored = self.store.get(partition, counts_key(partition))
                if stored is not None:
                    self.partner_counts.restore(partition, stored)
                    continue
                started = time.monotonic()
                try:
                    counted = await self.operator_reads.count_held(partition, self.partner_counts)
                except Exception:
                    log.warning("counting the partners' profiles failed", exc_info=True)
                    return False
                if not counted:
                    return False  # revoked or rebalancing meanwhile: counted again once settled
                log.info(
                    "partner counts of partition %d read from the state in %.2f s",
                    partition,
                    time.monotonic() - started,
                )
        counts = self.partner_counts.snapshot()
        for gone in self._partner_labels - counts.keys():
            metrics.PARTNER_PROFILES.remove(*gone)  # a partition moved, a connection ended
        for labels, count in counts.items():
            metrics.PARTNER_PROFILES.labels(*labels).set(count)
        self._partner_labels = set(counts)
        return True

    async def _observe(self) -> None:
        consumer = self.app.consumer
        input_topics = self.inputs.topics
        high_watermarks: dict[tuple[str, int], int | None] = {}
        for tp in consumer.assignment():
            if tp.topic in input_topics:
                high = consumer.highwater(tp)
                high_watermarks[(tp.topic, tp.partition)] = high
                position = await consumer.position(tp)
                if position is not None and high is not None:
                    lag = max(0, high - position)
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        self.health.observe(
            waiting=self.health.waiting(high_watermarks),
            # A rebalance that does not end within the stall timeout is a stall too.
            recovering=bool(self.app.in_recovery),
        )
        if self.settings.store == "memory":
            metrics.TABLE_SIZE.set(len(self.store))

    def run_worker(self) -> int:
        """Run the Faust worker until it stops; returns the process exit code."""
        worker = BoundedWorker(
            self.app,
            drain=self.drain,
            loglevel=self.settings.log_level.upper(),
            shutdown_timeout_s=self.settings.shutdown_timeout_s,
        )
        # Faust's terminal spinner sets the root logger to DEBUG at levels above info, which
        # then builds a record for every debug line (measured: about 7% of the worker's CPU).
        worker.spinner = None
        try:
            worker.execute_from_commandline()
        except SystemExit as stopped:
            return 0 if stopped.code in (None, 0) else 1
        return 0

    def _add_web_views(self) -> None:
        config_view, app = self.config_view, self.app

        health = self.health

        def status(view: View, ready: bool) -> Response:
            problem = health.problem()
            body = {
                "ready": ready and problem is None,
                "outputs": len(config_view.routing.outputs),
                "connections": len(config_view.routing.connections),
                "problem": problem,
            }
            return view.json(body, status=200 if body["ready"] else 503)

        @app.page("/healthz")
        async def healthz(view: View, request: Request) -> Response:
            # Faust serves the web only once tables are recovered; the config must be read too.
            return status(view, config_view.loaded.is_set())

        @app.page("/readyz")
        async def readyz(view: View, request: Request) -> Response:
            # Ready to process: as /healthz, and in a settled group with partitions assigned.
            assigned = bool(app.consumer.assignment())
            settled = not app.rebalancing and assigned
            return status(view, config_view.loaded.is_set() and settled)

        @app.page("/metrics")
        async def metrics(view: View, request: Request) -> Response:
            body, content_type = exposition()
            return view.bytes(body, headers={"Content-Type": content_type})

    def _add_operator_views(self) -> None:
        """Explain and export (streams/operator_reads.py), for the API to forward to."""
        app, reads = self.app, self.operator_reads

        def answer(view: View, status: int, body: dict[str, Any]) -> Response:
            headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}
            body_bytes = orjson.dumps(body)
            return view.bytes(
                body_bytes, status=status, content_type="application/json", headers=headers
            )

        @app.page("/operator/explain")
        async def explain(view: View, request: Request) -> Response:
            return answer(view, *reads.explain(request.query))

        token = self.settings.api_token

        @app.page("/operator/members")
        async def members(view: View, request: Request) -> Response:
            # Identity values: only for the API, which sends the token both are given.
            if token is None:
                detail = "exports need FORWARDER_API_TOKEN on the worker"
                return answer(view, 403, {"detail": detail})
            if not bearer_matches(request.headers.get("Authorization", ""), token):
                return answer(view, 401, {"detail": "a valid bearer token is needed"})
            return answer(view, *await reads.members(request.query))
