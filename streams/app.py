"""The Faust application: topics, the profiles table, the agents and the web endpoints."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable
from typing import Any, cast

import faust
from faust import Stream
from faust.types import StreamT
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.config import ConfigView, apply_config
from core.dead_letters import redact
from core.kafka_admin import TopicSpec, ensure_topics, topic_partitions
from core.routing import Routing
from core.settings import Settings
from partners.catalog import Output
from schemas import topics
from schemas.parsing import InvalidRecordError
from schemas.records import SyncRequest
from streams import metrics
from streams.processor import InputProcessor, ProcessorTopics, send_dead_letter, source_of

log = logging.getLogger(__name__)


class TopicLayoutError(SystemExit):
    """An existing topic whose partition count breaks co-partitioning: start-up stops."""


class Forwarder:
    """Builds and holds one worker's Faust app and the state around it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = faust.App(
            settings.app_id,
            broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
            broker_credentials=_credentials(settings),
            store="rocksdb://" if settings.store == "rocksdb" else "memory://",
            datadir=str(settings.data_dir),
            topic_partitions=settings.input_partitions,
            topic_replication_factor=settings.replication_factor,
            topic_allow_declare=True,
            consumer_auto_offset_reset="earliest",
            key_serializer="raw",
            value_serializer="raw",
            producer_acks=-1,
            # Outbound records are sent a batch at a time, then awaited: let them share requests.
            producer_linger_ms=settings.producer_linger_ms,
            producer_max_batch_size=settings.producer_batch_bytes,
            web_enabled=True,
            web_bind=settings.web_host,
            web_host=settings.web_host,
            web_port=settings.web_port,
            autodiscover=False,
        )
        self.routing = Routing()
        self._outbound_topics: set[str] = set()
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
        )
        self.processor = InputProcessor(
            routing=self.routing,
            profiles=self.profiles,
            topics=ProcessorTopics(
                profiles=settings.topic(topics.PROFILE_UPDATES),
                sync=settings.topic(topics.SYNC),
                dead_letters=settings.topic(topics.DEAD_LETTERS),
                erasure_status=settings.topic(topics.ERASURE_STATUS),
                outbound=self.outbound_topic,
            ),
            send=self.send,
            config_applied=self.config_view.applied,
        )

        # concurrency stays 1: offsets are committed in order only for one task per partition.
        self.app.agent(self.inputs, name="forward")(self._forward)
        self.app.agent(self.config_topics, name="validate-config")(self._validate_config)
        self.app.task(self._run_config_view)
        self.app.timer(interval=5.0)(self._update_gauges)
        self._add_web_views()

    async def create_topics(self) -> None:
        """Create the missing topics of ``required_topics`` and check the existing ones'
        partition counts; run before the worker starts."""
        options = self.settings.kafka_client_options()
        await ensure_topics(options, self.required_topics(), self.settings.replication_factor)
        copartitioned = self.copartitioned_topics()
        names = [spec.name for spec in copartitioned]
        # Polling: a topic created a moment ago has no leader to describe yet.
        while (found := await topic_partitions(options, names)) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        counts = Counter(tp.topic for tp in found)
        for spec in copartitioned:
            if counts[spec.name] != spec.partitions:
                raise TopicLayoutError(
                    f"forwarder: topic {spec.name} has {counts[spec.name]} partitions, the "
                    f"settings want {spec.partitions} (FORWARDER_INPUT_PARTITIONS); "
                    "co-partitioned topics and the changelog must agree"
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

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        """Produce through Faust's producer (so its commit flushes it), skipping Topic.send's
        per-message machinery; returns the acknowledgement future."""
        acknowledged: Awaitable[Any] = await self.app.producer.send(
            topic, key, value, partition=None, timestamp=None, headers=None
        )
        return acknowledged

    async def outbound_topic(self, output_id: str) -> str:
        """The forward-<output_id> topic's name, created on first use."""
        name = self.settings.topic(topics.outbound(output_id))
        if name not in self._outbound_topics:
            await ensure_topics(
                self.settings.kafka_client_options(),
                [TopicSpec(name, self.settings.outbound_partitions)],
                self.settings.replication_factor,
            )
            self._outbound_topics.add(name)
        return name

    async def _on_output(self, output: Output) -> None:
        await self.outbound_topic(output.output_id)

    async def _run_config_view(self) -> None:
        await self.config_view.run()

    async def _forward(self, stream: StreamT[Any]) -> None:
        await self.config_view.loaded.wait()
        batch_within = self.settings.batch_within_ms / 1000
        # take_events is on Stream, not yet on the StreamT interface.
        batches = cast(Stream[Any], stream).take_events(
            self.settings.batch_max, within=batch_within
        )
        async for events in batches:
            await self.processor.process(events)

    async def _validate_config(self, stream: StreamT[Any]) -> None:
        """Dead-letter bad config records and ask every partition to sync after good ones.

        One worker owns each config partition, so each record is reported and synced once.
        """
        outputs_topic = self.settings.topic(topics.OUTPUTS)
        async for event in stream.events():
            message = event.message
            source = source_of(event)
            is_output = message.topic == outputs_topic
            try:
                # A scratch Routing: this only validates; the config view applies.
                apply_config(Routing(), is_output, message.key, message.value)
            except InvalidRecordError as error:
                value = redact(message.value) if is_output else message.value
                await send_dead_letter(
                    self.send,
                    self.settings.topic(topics.DEAD_LETTERS),
                    source,
                    message.key,
                    value,
                    error,
                )
                continue
            request = SyncRequest(
                kind="output" if is_output else "connection",
                id=message.key.decode("utf-8", "replace"),
                config=source,
            )
            for partition in range(self.settings.input_partitions):
                await self.sync_requests.send(
                    key=message.key,
                    value=request.model_dump_json().encode(),
                    partition=partition,
                    force=True,  # now, not at the config offset's commit: syncs start sooner
                )

    async def _update_gauges(self) -> None:
        consumer = self.app.consumer
        input_topics = self.inputs.topics
        for tp in consumer.assignment():
            if tp.topic in input_topics:
                position = await consumer.position(tp)
                highwater = consumer.highwater(tp)  # None until the first fetch after a rebalance
                if position is not None and highwater is not None:
                    lag = max(0, highwater - position)
                    metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)
        if self.settings.store == "memory":
            metrics.TABLE_SIZE.set(len(self.profiles))

    def _add_web_views(self) -> None:
        config_view, app = self.config_view, self.app

        def status(view: View, ready: bool) -> Response:
            body = {
                "ready": ready,
                "outputs": len(config_view.routing.outputs),
                "connections": len(config_view.routing.connections),
            }
            return view.json(body, status=200 if ready else 503)

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
            return view.bytes(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    context = settings.ssl_context()
    if settings.sasl_mechanism:
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
