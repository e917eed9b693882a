"""The sink runner: consume an output's topic, deliver batches, commit what the partner took.

One ``OutputSink`` per output, each with its own consumer in the group
``<app_id>-sink-<output_id>`` (several runners share an output's partitions). Its loop: take a
batch (by count, bytes and time), deliver it (sinks/delivery.py), write dead letters, and
only then commit the batch's offsets. A crash before the commit redelivers the batch: records
are delivered at least once, never lost. While the partner is down the sink waits with its
partitions paused, polling only to stay in the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config import ConfigView
from core.dead_letters import dead_letter
from core.errors import ConfigError
from core.routing import Routing
from core.settings import Settings
from partners.adapters import ADAPTERS, adapter_settings
from partners.adapters.base import Adapter, AdapterContext, AdapterSettings
from partners.catalog import CATALOG, Output, Partner
from partners.secrets import Secrets
from schemas import topics
from schemas.parsing import InvalidRecordError, parse
from schemas.records import OutboundRecord, SourceRef
from sinks import metrics
from sinks.delivery import Delivery, Refusal, TokenBucket, rate_limit

log = logging.getLogger(__name__)


class SinkSettings(BaseSettings):
    """The sink runner's own settings, from FORWARDER_SINK_* (Kafka ones are the worker's)."""

    model_config = SettingsConfigDict(env_prefix="FORWARDER_SINK_", extra="ignore")

    web_host: str = Field("127.0.0.1", description="Interface of the health/metrics server.")
    web_port: int = Field(6067, ge=1, le=65535)
    config_timeout_s: float = Field(60.0, gt=0, description="Longest wait to read the outputs.")


class SinkConfigError(ConfigError):
    """An output the runner cannot deliver: unknown, invalid settings, no adapter, no secret."""


class Message(Protocol):
    """The fields of aiokafka's ConsumerRecord the sink reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class OutputSink:
    def __init__(
        self,
        settings: Settings,
        output: Output,
        partner: Partner,
        adapter: Adapter[Any],
        delivery_settings: AdapterSettings,
        producer: AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        self.output = output
        self.topic = settings.topic(topics.outbound(output.output_id))
        self.dead_letters_topic = settings.topic(topics.DEAD_LETTERS)
        self.adapter = adapter
        self.producer = producer
        self.max_records = min(
            delivery_settings.batch_max_records or partner.batch_limit, partner.batch_limit
        )
        self.max_bytes = delivery_settings.batch_max_bytes
        self.linger_s = delivery_settings.batch_linger_ms / 1000
        self.consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(),
            group_id=f"{settings.app_id}-sink-{output.output_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.max_records,
        )
        self.delivery = Delivery(
            output.output_id,
            adapter,
            delivery_settings,
            TokenBucket(rate_limit(delivery_settings, partner.rate_limit)),
            self.wait,
        )
        # Fetched but not yet batched messages (a batch stops at its count or bytes).
        self.carry: deque[Message] = deque()
        # Held while a batch is in flight: a rebalance waits for its commit, so that the next
        # owner of a partition never sends a record while this runner still sends an older one.
        self.busy = asyncio.Lock()

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.adapter.close()

    async def run(self) -> None:
        while True:
            batch = await self.collect()
            async with self.busy:
                await self.process(batch)

    async def collect(self) -> list[Message]:
        """The next batch: up to max_records and max_bytes, within linger of its first record."""
        batch: list[Message] = []
        size = 0
        deadline: float | None = None
        while True:
            if not self.carry:
                timeout = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
                fetched = await self.consumer.getmany(
                    timeout_ms=int(timeout * 1000), max_records=self.max_records - len(batch)
                )
                # Offset order within each partition is the per-mpid order: kept as fetched.
                self.carry.extend(m for messages in fetched.values() for m in messages)
            while self.carry and len(batch) < self.max_records:
                message_size = len(self.carry[0].value or b"")
                if batch and size + message_size > self.max_bytes:
                    return batch
                batch.append(self.carry.popleft())
                size += message_size
            if not batch:
                continue
            if deadline is None:
                deadline = time.monotonic() + self.linger_s
            if len(batch) >= self.max_records or time.monotonic() >= deadline:
                return batch

    async def process(self, batch: list[Message]) -> None:
        metrics.BATCH_RECORDS.labels(self.output.output_id).observe(len(batch))
        records: list[OutboundRecord] = []
        positions: list[int] = []
        refused: dict[int, Refusal] = {}
        for position, message in enumerate(batch):
            try:
                records.append(parse(OutboundRecord, message.value))
                positions.append(position)
            except InvalidRecordError as error:
                refused[position] = Refusal(error.kind, error.message)
        for index, refusal in (await self.delivery.deliver(records)).items():
            refused[positions[index]] = refusal
        await self.dead_letter(batch, refused)
        offsets: dict[TopicPartition, int] = {}
        for message in batch:
            tp = TopicPartition(message.topic, message.partition)
            offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
        await self.consumer.commit(offsets)

    async def dead_letter(self, batch: list[Message], refused: Mapping[int, Refusal]) -> None:
        now_ms = int(time.time() * 1000)
        sends = []
        for position, refusal in refused.items():
            message = batch[position]
            letter = dead_letter(
                SourceRef(topic=message.topic, partition=message.partition, offset=message.offset),
                message.key,
                message.value,
                refusal.kind,
                refusal.message,
                now_ms,
            )
            sends.append(
                await self.producer.send(
                    self.dead_letters_topic,
                    key=message.key,
                    value=letter.model_dump_json().encode(),
                )
            )
            metrics.DEAD_LETTERED.labels(self.output.output_id, refusal.kind).inc()
        await asyncio.gather(*sends)

    async def wait(self, seconds: float) -> None:
        """Wait with the partitions paused, polling so that the group keeps this member."""
        if seconds <= 0:
            return
        deadline = time.monotonic() + seconds
        paused = self.consumer.assignment()
        self.consumer.pause(*paused)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                await self.consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000) + 1)
        finally:
            self.consumer.resume(*(tp for tp in paused if tp in self.consumer.assignment()))

    def health(self) -> dict[str, Any]:
        return {
            "partitions": len(self.consumer.assignment()),
            "retrying": self.delivery.retrying,
            "seconds_since_last_delivery": metrics.LAST_DELIVERY.seconds_since(
                self.output.output_id
            ),
        }


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: OutputSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.sink.busy:
            # The next owner starts from the committed offsets: what was fetched is its now.
            self.sink.carry = deque(
                m for m in self.sink.carry if TopicPartition(m.topic, m.partition) not in revoked
            )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


def build_sink(
    settings: Settings,
    output: Output,
    producer: AIOKafkaProducer,
    session: aiohttp.ClientSession,
    environ: Mapping[str, str],
) -> OutputSink:
    partner = CATALOG[output.partner]
    if partner.adapter is None:
        raise SinkConfigError(
            f"forwarder sink: output {output.output_id}: partner {partner.name!r} has no "
            f"built-in sink; consume {settings.topic(topics.outbound(output.output_id))} directly"
        )
    kind = ADAPTERS[partner.adapter]
    try:
        delivery_settings = adapter_settings(kind, output)
        secrets = Secrets.from_env(delivery_settings.secret_env_names(), environ)
    except (ValueError, LookupError) as error:
        raise SinkConfigError(f"forwarder sink: {error}") from None
    adapter = kind.build(delivery_settings, AdapterContext(output, partner, secrets, session))
    return OutputSink(settings, output, partner, adapter, delivery_settings, producer)


class SinkRunner:
    """Several outputs' sinks in one process, with /healthz, /readyz and /metrics."""

    def __init__(
        self,
        settings: Settings,
        sink_settings: SinkSettings,
        output_ids: list[str],
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.settings = settings
        self.sink_settings = sink_settings
        self.output_ids = list(dict.fromkeys(output_ids))
        self.environ = environ
        self.routing = Routing()
        self.sinks: list[OutputSink] = []
        self.ready = False

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set or a sink fails; raises SinkConfigError before starting."""
        config = ConfigView(self.settings, self.routing, self._on_output)
        async with contextlib.AsyncExitStack() as stack:
            config_task = asyncio.create_task(config.run())
            stack.callback(config_task.cancel)
            try:
                await asyncio.wait_for(config.loaded.wait(), self.sink_settings.config_timeout_s)
            except TimeoutError:
                raise SinkConfigError(
                    f"forwarder sink: could not read {self.settings.topic(topics.OUTPUTS)} "
                    f"in {self.sink_settings.config_timeout_s}s"
                ) from None
            outputs = [self._output(output_id) for output_id in self.output_ids]
            producer = AIOKafkaProducer(
                **self.settings.kafka_client_options(), acks="all", enable_idempotence=True
            )
            await producer.start()
            stack.push_async_callback(producer.stop)
            session = await stack.enter_async_context(aiohttp.ClientSession())
            self.sinks = [
                build_sink(self.settings, output, producer, session, self.environ)
                for output in outputs
            ]
            for sink in self.sinks:
                await sink.start()
                stack.push_async_callback(sink.stop)
            await self._serve_web(stack)
            tasks: list[asyncio.Task[Any]] = [asyncio.create_task(s.run()) for s in self.sinks]
            tasks.append(asyncio.create_task(stop.wait()))
            self.ready = True
            log.info("sinks running: %s", ", ".join(self.output_ids))
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self.ready = False
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # a failed sink stops the process, for its supervisor to restart

    def _output(self, output_id: str) -> Output:
        output = self.routing.outputs.get(output_id)
        if output is None:
            raise SinkConfigError(
                f"forwarder sink: output {output_id} is not on "
                f"{self.settings.topic(topics.OUTPUTS)} "
                f"(or its record is invalid): create it first with "
                f"`forwarder outputs create --id {output_id} --partner ...`"
            )
        return output

    async def _on_output(self, output: Output) -> None:
        if self.ready and output.output_id in self.output_ids:
            log.warning("output %s changed; restart its sink to apply", output.output_id)

    async def _serve_web(self, stack: contextlib.AsyncExitStack) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        # The server starts once every sink has joined its group: alive and ready are one.
        app.router.add_get("/readyz", self._healthz)
        app.router.add_get("/metrics", _metrics)
        web_runner = web.AppRunner(app, access_log=None)
        await web_runner.setup()
        stack.push_async_callback(web_runner.cleanup)
        site = web.TCPSite(web_runner, self.sink_settings.web_host, self.sink_settings.web_port)
        await site.start()

    async def _healthz(self, request: web.Request) -> web.Response:
        body = {
            "ready": self.ready,
            "outputs": {sink.output.output_id: sink.health() for sink in self.sinks},
        }
        return web.json_response(body, status=200 if self.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def run_sinks(output_ids: list[str], settings: Settings) -> int:
    """The ``forwarder sink`` command: run until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await SinkRunner(settings, SinkSettings(), output_ids).run(stop)

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(main())
    return 0
