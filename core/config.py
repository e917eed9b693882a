"""Configuration records (outputs, connections): validation and the per-worker config view.

Every worker needs every output and connection, whichever partitions of the inputs it owns.
Rather than a Faust GlobalTable (which has open issues with several workers), each worker reads
the compacted config topics from the start with its own group-less consumer into a ``Routing``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.kafka_admin import topic_partitions
from core.routing import Routing
from core.settings import Settings
from partners.catalog import Output, OutputConfigError, resolve_output
from schemas import topics
from schemas.parsing import InvalidRecordError, check_key, parse
from schemas.records import ConnectionConfig, OutputConfig, SourceRef

log = logging.getLogger(__name__)


def parse_output(key: bytes | None, value: bytes) -> Output:
    config = parse(OutputConfig, value)
    check_key(key, config.output_id, "output_id")
    try:
        return resolve_output(config)
    except OutputConfigError as error:
        raise InvalidRecordError("invalid_config", str(error)) from None


def parse_connection(key: bytes | None, value: bytes) -> ConnectionConfig:
    connection = parse(ConnectionConfig, value)
    check_key(key, connection.connection_id, "connection_id")
    return connection


def apply_config(
    routing: Routing,
    is_output: bool,
    key: bytes | None,
    value: bytes | None,
    max_bytes: int,
    offset: int = 0,
) -> Output | None:
    """Apply one config record (read at ``offset``) to the routing; returns the output it put,
    if any.

    Raises InvalidRecordError for a record that fails validation (the routing is left unchanged).
    """
    if key is None:
        raise InvalidRecordError("missing_key", "config records are keyed by their id")
    if value is not None and len(value) > max_bytes:
        raise InvalidRecordError(
            "too_large",
            f"the record value has {len(value)} bytes, more than the {max_bytes} allowed "
            "(FORWARDER_MAX_RECORD_BYTES)",
        )
    name = key.decode("utf-8", "replace")
    if is_output:
        if value is None:
            routing.delete_output(name)
            return None
        output = parse_output(key, value)
        routing.put_output(output)
        return output
    if value is None:
        routing.delete_connection(name)
    else:
        routing.put_connection(parse_connection(key, value), epoch=offset)
    return None


class ConfigView:
    """Mirrors the config topics into a Routing on every worker."""

    def __init__(
        self,
        settings: Settings,
        routing: Routing,
        on_output: Callable[[Output], Awaitable[object]],
    ) -> None:
        self.settings = settings
        self.routing = routing
        self.outputs_topic = settings.topic(topics.OUTPUTS)
        self.connections_topic = settings.topic(topics.CONNECTIONS)
        self._on_output = on_output
        self.loaded = asyncio.Event()
        # Next offset to apply per config partition, and a wake-up for those waiting on it.
        self._positions: dict[tuple[str, int], int] = {}
        self._advanced = asyncio.Event()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **self.settings.kafka_client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.settings.consumer_max_fetch_bytes,
        )
        await consumer.start()
        try:
            topic_names = [self.outputs_topic, self.connections_topic]
            options = self.settings.kafka_client_options()
            # Polling: leader election of just-created topics signals nothing to wait on.
            while (partitions := await topic_partitions(options, topic_names)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, messages in batches.items():
                    for message in messages:
                        await self._apply(tp.topic, message.key, message.value, message.offset)
                        self._positions[(tp.topic, tp.partition)] = message.offset + 1
                if batches:
                    self._advanced.set()
                    self._advanced = asyncio.Event()
                if not self.loaded.is_set() and all(
                    await asyncio.gather(*(self._reached(consumer, tp, end[tp]) for tp in end))
                ):
                    log.info(
                        "config loaded: %d outputs, %d connections",
                        len(self.routing.outputs),
                        len(self.routing.connections),
                    )
                    self.loaded.set()
        finally:
            await consumer.stop()

    async def applied(self, record: SourceRef) -> None:
        """Wait until the config record at ``record`` is part of the routing."""
        while self._positions.get((record.topic, record.partition), 0) <= record.offset:
            await self._advanced.wait()

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
        position: int = await consumer.position(tp)
        return position >= end

    async def _apply(self, topic: str, key: bytes | None, value: bytes | None, offset: int) -> None:
        try:
            output = apply_config(
                self.routing,
                topic == self.outputs_topic,
                key,
                value,
                self.settings.max_record_bytes,
                offset,
            )
        except InvalidRecordError:
            return  # the config agent dead-letters it; one worker reports, all skip
        if output is not None:
            await self._on_output(output)
