"""The sink runner: consume an output's topic, deliver batches, commit what the partner took.

One ``OutputSink`` per output, each with its own consumer in the group
``<prefix><app_id>-sink-<output_id>`` (several runners share an output's partitions). Its loop:
take a batch (by count, bytes and time), deliver it (sinks/delivery.py), write dead letters, and
only then commit the batch's offsets. A crash before the commit redelivers the batch: records
are delivered at least once, never lost. While the partner is down the sink waits with its
partitions paused, polling only to stay in the group.

Rebalances, as Kafka Streams handles them: offsets are committed only for partitions this
runner owns. A revoke drops the records not yet started, then waits (``revoke_timeout_s``) for
the batch in flight to be accepted and committed; past that it cancels the batch uncommitted,
and the partitions' next owner delivers it again. A stop does the same. One output's loop
failing stops only that output (it leaves its group, so other runners take its partitions);
/healthz then answers 503.
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
from aiokafka.errors import IllegalStateError, KafkaError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config import ConfigView
from core.dead_letters import dead_letter
from core.errors import ConfigError, ForwarderError
from core.prometheus import exposition
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
    revoke_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Longest a revoke or a stop waits for the batch in flight to be accepted "
        "and committed; past it the batch is dropped uncommitted and delivered again.",
    )
    stall_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Health fails when records have waited this long without a batch "
        "completing (a partner being retried does not count).",
    )


class SinkConfigError(ConfigError):
    """An output the runner cannot deliver: unknown, invalid settings, no adapter, no secret."""


class SinksFailedError(ForwarderError):
    """Every output's loop of the process died: nothing is left running."""


# The group waits this much longer than a revoke may take for the member to rejoin, so that a
# slow revoke costs neither its membership nor the commit of its batch.
REBALANCE_MARGIN_S = 10.0


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
        sink_settings: SinkSettings,
    ) -> None:
        self.settings = settings
        self.revoke_timeout_s = sink_settings.revoke_timeout_s
        self.stall_timeout_s = sink_settings.stall_timeout_s
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
            group_id=f"{settings.group_id}-sink-{output.output_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.max_records,
            rebalance_timeout_ms=int((self.revoke_timeout_s + REBALANCE_MARGIN_S) * 1000),
        )
        self.delivery = Delivery(
            output.output_id,
            adapter,
            delivery_settings,
            TokenBucket(rate_limit(delivery_settings, partner.rate_limit)),
            self.wait,
        )
        # The partitions this runner owns: records of others are never started.
        self.owned: set[TopicPartition] = set()
        # Fetched but not yet batched messages (a batch stops at its count or bytes).
        self.carry: deque[Message] = deque()
        # The batch being collected, and the one in flight: a revoke drops the first and waits
        # for the second, so that the next owner of a partition never sends a record while this
        # runner still sends an older one.
        self.collecting: list[Message] = []
        self.in_flight: asyncio.Task[None] | None = None
        # The last time a batch completed or nothing was waiting: health's stall clock.
        self.progress_at = time.monotonic()
        self.failure: str | None = None

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))

    async def stop(self) -> None:
        await self.consumer.stop()
        await self.adapter.close()

    async def run(self) -> None:
        while True:
            batch = await self.collect()
            self.in_flight = asyncio.create_task(self.process(batch))
            try:
                # A revoke may cancel the batch; that ends the batch, not this loop.
                await asyncio.wait([self.in_flight])
            finally:
                self.in_flight.cancel()  # this loop cancelled: its batch stops too
            if not self.in_flight.cancelled():
                self.in_flight.result()
                self.progress_at = time.monotonic()
            self.in_flight = None

    async def collect(self) -> list[Message]:
        """The next batch: up to max_records and max_bytes, within linger of its first record."""
        deadline: float | None = None
        while True:
            if not self.carry:
                if not self.collecting:
                    self.progress_at = time.monotonic()  # nothing waiting here
                    deadline = None  # a revoke may have emptied the batch
                timeout = 1.0 if deadline is None else max(0.0, deadline - time.monotonic())
                fetched = await self.consumer.getmany(
                    timeout_ms=int(timeout * 1000),
                    max_records=self.max_records - len(self.collecting),
                )
                self.keep(fetched)
            size = sum(len(m.value or b"") for m in self.collecting)
            while self.carry and len(self.collecting) < self.max_records:
                message_size = len(self.carry[0].value or b"")
                if self.collecting and size + message_size > self.max_bytes:
                    return self.take()
                self.collecting.append(self.carry.popleft())
                size += message_size
            if not self.collecting:
                continue
            if deadline is None:
                deadline = time.monotonic() + self.linger_s
            if len(self.collecting) >= self.max_records or time.monotonic() >= deadline:
                return self.take()

    def keep(self, fetched: Mapping[TopicPartition, list[Message]]) -> None:
        """Carry the fetched records of owned partitions.

        Records of a revoked assignment, fetched before the new one, are dropped: fetching
        restarts from the committed offsets. aiokafka calls on_partitions_assigned before
        any record of a new assignment can arrive, so nothing owned is dropped.
        """
        # Offset order within each partition is the per-mpid order: kept as fetched.
        self.carry.extend(
            m for tp, messages in fetched.items() if tp in self.owned for m in messages
        )

    def take(self) -> list[Message]:
        batch, self.collecting = self.collecting, []
        return batch

    def drop(self, partitions: set[TopicPartition]) -> None:
        """Forget the records of these partitions not started yet: their next owner has them."""
        self.owned -= partitions
        self.carry = deque(m for m in self.carry if _partition(m) not in partitions)
        self.collecting = [m for m in self.collecting if _partition(m) not in partitions]

    async def release(self, partitions: set[TopicPartition]) -> None:
        """Give partitions up: drop what is not started, settle the batch in flight."""
        self.drop(partitions)
        batch = self.in_flight
        if batch is None or batch.done():
            return
        done, _ = await asyncio.wait([batch], timeout=self.revoke_timeout_s)
        if done:
            return
        # Cancelled between two steps or mid-request: uncommitted, so delivered again (at least
        # once); the next owner's copy goes after anything this one sent.
        batch.cancel()
        await asyncio.wait([batch])
        log.warning(
            "output %s: batch not accepted within %.1fs of a revoke; left uncommitted for the "
            "partitions' next owner",
            self.output.output_id,
            self.revoke_timeout_s,
        )
        metrics.BATCHES_ABANDONED.labels(self.output.output_id).inc()

    async def process(self, batch: list[Message]) -> None:
        # Revoked between collection and start: not started here.
        batch = [m for m in batch if _partition(m) in self.owned]
        if not batch:
            return
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
        await self.commit(batch)

    async def commit(self, batch: list[Message]) -> None:
        """Commit the delivered batch's offsets of the partitions still assigned.

        A failure (the group moved on) is no crash: the partitions' owner delivers the records
        again from the last commit.
        """
        assigned = self.consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for message in batch:
            tp = _partition(message)
            if tp in assigned:
                offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (KafkaError, IllegalStateError) as error:
            log.warning(
                "output %s: commit failed (%s); the records will be delivered again",
                self.output.output_id,
                error,
            )
            metrics.COMMIT_FAILURES.labels(self.output.output_id).inc()

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
                max_bytes=self.settings.max_record_bytes,
            )
            sends.append(
                await self.producer.send(self.dead_letters_topic, key=message.key, value=letter)
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
                # Nothing comes from paused partitions; anything else is kept, never skipped.
                self.keep(
                    await self.consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000) + 1)
                )
        finally:
            self.consumer.resume(*(tp for tp in paused if tp in self.consumer.assignment()))

    def waiting(self) -> bool:
        """Records fetched and not yet through: in the carry, being collected or in flight."""
        return bool(self.carry or self.collecting or self.in_flight)

    def status(self) -> str:
        """dead (the loop failed), partner_down (retrying: waits, but alive), stalled (records
        waiting and no batch done for stall_timeout_s), or ok."""
        if self.failure is not None:
            return "dead"
        if self.delivery.retrying:
            return "partner_down"
        if self.waiting() and time.monotonic() - self.progress_at > self.stall_timeout_s:
            return "stalled"
        return "ok"

    def health(self) -> dict[str, Any]:
        return {
            "status": self.status(),
            "error": self.failure,
            "partitions": len(self.consumer.assignment()) if self.failure is None else 0,
            "retrying": self.delivery.retrying,
            "seconds_since_progress": round(time.monotonic() - self.progress_at, 3),
            "seconds_since_last_delivery": metrics.LAST_DELIVERY.seconds_since(
                self.output.output_id
            ),
        }


def _partition(message: Message) -> TopicPartition:
    return TopicPartition(message.topic, message.partition)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: OutputSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Returns once the batch in flight is committed or dropped: only then does the group
        # hand the partitions over.
        await self.sink.release(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Fetching restarts from the committed offsets of these partitions.
        self.sink.owned = set(assigned)


def build_sink(
    settings: Settings,
    output: Output,
    producer: AIOKafkaProducer,
    session: aiohttp.ClientSession,
    environ: Mapping[str, str],
    sink_settings: SinkSettings,
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
    return OutputSink(
        settings, output, partner, adapter, delivery_settings, producer, sink_settings
    )


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
        """Run until ``stop`` is set or every sink failed (SinksFailedError); raises
        SinkConfigError before starting."""
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
                build_sink(
                    self.settings, output, producer, session, self.environ, self.sink_settings
                )
                for output in outputs
            ]
            for sink in self.sinks:
                await sink.start()
                stack.push_async_callback(sink.stop)
            await self._serve_web(stack)
            loops = [asyncio.create_task(self._supervise(sink)) for sink in self.sinks]
            stopping = asyncio.create_task(stop.wait())
            self.ready = True
            log.info("sinks running: %s", ", ".join(self.output_ids))
            try:
                # A loop that ends has died (logged, on /healthz); the others go on.
                running: list[asyncio.Task[Any]] = list(loops)
                while running and not stopping.done():
                    await asyncio.wait([stopping, *running], return_when=asyncio.FIRST_COMPLETED)
                    running = [loop for loop in running if not loop.done()]
                # A stop settles each batch in flight as a revoke does.
                await asyncio.gather(*(s.release(set(s.owned)) for s in self.sinks))
            finally:
                self.ready = False
                for task in [stopping, *loops]:
                    task.cancel()
                await asyncio.gather(stopping, *loops, return_exceptions=True)
            if not stop.is_set():
                raise SinksFailedError(
                    "forwarder sink: every output's sink failed; see the errors above"
                )

    async def _supervise(self, sink: OutputSink) -> None:
        """Run one output's loop; a failure ends that output only (health says so)."""
        try:
            await sink.run()
        except Exception as error:
            sink.failure = f"{type(error).__name__}: {error}"
            log.exception("output %s: sink failed; the other outputs go on", sink.output.output_id)
            # Leaving the group hands the output's partitions to its other runners.
            await sink.consumer.stop()

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
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", _metrics)
        web_runner = web.AppRunner(app, access_log=None)
        await web_runner.setup()
        stack.push_async_callback(web_runner.cleanup)
        site = web.TCPSite(web_runner, self.sink_settings.web_host, self.sink_settings.web_port)
        await site.start()

    def _state(self) -> tuple[bool, dict[str, Any]]:
        outputs = {sink.output.output_id: sink.health() for sink in self.sinks}
        alive = all(output["status"] in ("ok", "partner_down") for output in outputs.values())
        return alive, {"ready": self.ready, "alive": alive, "outputs": outputs}

    async def _healthz(self, request: web.Request) -> web.Response:
        """Liveness: 503 once an output's loop died or stalled, not while a partner is down."""
        alive, body = self._state()
        return web.json_response(body, status=200 if alive else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        """Readiness: every sink joined its group, and alive (the server starts after the
        joins, and a stop clears it)."""
        alive, body = self._state()
        return web.json_response(body, status=200 if alive and self.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


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
