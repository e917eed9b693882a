"""Small admin look-ups shared by the processes and the local tooling, and the wait for the
broker at start."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from core.errors import BrokerUnreachableError, ConfigError, ForwarderError

log = logging.getLogger(__name__)

# Backoff between attempts to reach the broker at start: doubling, capped. An attempt on an
# address that drops packets ends after _ATTEMPT_S, so that each one is logged.
_FIRST_RETRY_S = 0.5
_MAX_RETRY_S = 5.0
_ATTEMPT_S = 10.0


async def wait_for_broker(client_options: dict[str, Any], timeout_s: float) -> None:
    """Return once a broker of the bootstrap list answers a metadata request.

    Tries at once, then with backoff until ``timeout_s`` has passed (at least one attempt),
    logging one line per failed attempt; raises BrokerUnreachableError after the last.
    """
    bootstrap = client_options["bootstrap_servers"]
    deadline = time.monotonic() + timeout_s
    delay = _FIRST_RETRY_S
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        attempt_s = min(max(remaining, _FIRST_RETRY_S), _ATTEMPT_S)
        reason = await _bootstrap_fails(client_options, attempt_s)
        if reason is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.warning("Kafka at %s did not answer (attempt %d: %s)", bootstrap, attempt, reason)
            raise BrokerUnreachableError(
                f"forwarder: no Kafka broker answered at {bootstrap} within {timeout_s:g}s "
                "(FORWARDER_KAFKA_CONNECT_TIMEOUT_S): start one (make kafka-up in a checkout) "
                "or set FORWARDER_KAFKA_BOOTSTRAP to a running one"
            )
        delay = min(delay, remaining)
        log.warning(
            "Kafka at %s did not answer (attempt %d: %s); next try in %.1fs",
            bootstrap,
            attempt,
            reason,
            delay,
        )
        await asyncio.sleep(delay)
        delay = min(delay * 2, _MAX_RETRY_S)


async def _bootstrap_fails(client_options: dict[str, Any], timeout_s: float) -> str | None:
    """None when a metadata request succeeds within ``timeout_s``, else why not."""
    client = AIOKafkaClient(**client_options)
    swallowed = _Swallow()
    client_log = logging.getLogger("aiokafka")  # aiokafka.client's logger
    client_log.addFilter(swallowed)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
    except TimeoutError:
        return f"no answer in {timeout_s:.1f}s"
    except (KafkaError, OSError) as error:
        return swallowed.last or type(error).__name__
    finally:
        client_log.removeFilter(swallowed)
        await client.close()
    return None


class _Swallow(logging.Filter):
    """Keeps aiokafka's own bootstrap errors out of the log (our line per attempt replaces
    them); the last one says why the attempt failed."""

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        self.last = record.getMessage()
        return False


async def topic_partitions(
    client_options: dict[str, Any], topics: list[str]
) -> list[TopicPartition] | None:
    """Every partition of the named topics that exist; None while one has no leader yet.

    A topic created a moment ago may list partitions whose leader is not elected yet; a
    consumer assigned to those would not fetch them until its next metadata refresh.
    """
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    found = [
        (TopicPartition(topic["topic"], partition["partition"]), partition["leader"])
        for topic in described
        if not topic.get("error_code")
        for partition in topic["partitions"]
    ]
    if any(leader < 0 for _, leader in found):
        return None
    return [tp for tp, _ in found]


class TopicsNotReadyError(ForwarderError):
    """Topics that did not become visible with a leader for every partition in time."""


async def wait_for_topics(
    client_options: dict[str, Any], topics: list[str], timeout_s: float = 60.0
) -> list[TopicPartition]:
    """Every partition of the named topics, once each topic is visible and every partition has
    a leader. A topic created a moment ago may be unknown to the broker answering, or list
    partitions without a leader: producing to it then fails, and counting its partitions
    would say 0."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await topic_partitions(client_options, topics)
        if found is not None and {tp.topic for tp in found} >= set(topics):
            return found
        if time.monotonic() > deadline:
            raise TopicsNotReadyError(
                f"forwarder: topics not ready after {timeout_s:.0f} s: {', '.join(sorted(topics))}"
            )
        await asyncio.sleep(0.2)


async def max_message_bytes(client_options: dict[str, Any], topics: list[str]) -> dict[str, int]:
    """Each topic's effective max.message.bytes (its own setting or the broker's default)."""
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in topics]
        )
    finally:
        await admin.close()
    limits: dict[str, int] = {}
    for response in responses:
        for _error, _message, _type, name, entries in response.resources:
            for entry in entries:
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    limits[name] = int(entry[1])
    return limits


# Kafka's error codes a create answers with that mean nothing is wrong.
_CREATED_OR_EXISTS = (0, 36)


class TopicCreateError(ConfigError):
    """The broker refused to create a topic (rights, partition or replication limits)."""


async def create_topics(
    client_options: dict[str, Any],
    names: list[str],
    partitions: int,
    replication_factor: int,
    config: dict[str, str] | None = None,
) -> None:
    """Create the named topics; those that exist already are left as they are."""
    admin = AIOKafkaAdminClient(**client_options)
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(name, partitions, replication_factor, topic_configs=config or {})
                for name in names
            ]
        )
    finally:
        await admin.close()
    refused = [
        f"{error[0]} (Kafka error {error[1]})"
        for error in response.topic_errors
        if error[1] not in _CREATED_OR_EXISTS
    ]
    if refused:
        raise TopicCreateError(
            f"forwarder: the broker refused to create topics {', '.join(refused)}: grant "
            "topic-create rights or create them beforehand (README, Settings)"
        )


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False


async def ensure_topics(
    client_options: dict[str, Any], specs: list[TopicSpec], replication_factor: int
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    for spec in specs:
        config = {"cleanup.policy": "compact"} if spec.compacted else None
        await create_topics(
            client_options, [spec.name], spec.partitions, replication_factor, config
        )


async def track_topics(producer: Any, names: Iterable[str]) -> None:
    """Register topics with the producer's metadata before their first send.

    aiokafka fetches every topic's metadata until one is added to its tracked set, and a send
    to a topic already seen in such a fetch does not add it. The first send to a topic not yet
    seen (a new output's forward topic) then narrows every later refresh to the tracked set:
    the other topics drop out of the metadata, and their batches in flight wait, with no leader
    and no log line, until they expire. Tracking every topic the worker writes keeps them in.
    """
    for name in names:
        await producer.client.add_topic(name)
