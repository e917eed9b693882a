"""Small admin look-ups shared by the worker and the local tooling."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


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
