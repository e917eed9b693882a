"""Small admin look-ups shared by the worker and the local tooling."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType


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


class TopicsNotReadyError(RuntimeError):
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
                f"topics not ready after {timeout_s:.0f} s: {', '.join(sorted(topics))}"
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


class TopicCreateError(RuntimeError):
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
        str(error[0]) for error in response.topic_errors if error[1] not in _CREATED_OR_EXISTS
    ]
    if refused:
        raise TopicCreateError(f"could not create topics: {', '.join(refused)}")


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
