"""The producer keeps the metadata of every topic the worker writes (``track_topics`` in
core/kafka_admin.py): a first send to a new topic must not strand the records waiting for
another one.

This is the wedge the hostile-records fault test met about once in five CI runs: a new output's
forward topic was written for the first time while records for the dead-letter topic waited,
and those never got a leader again."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from core.kafka_admin import create_topics, track_topics, wait_for_topics
from devtools.local import BOOTSTRAP

OPTIONS = {"bootstrap_servers": BOOTSTRAP}
# Longer than the test waits for an acknowledgement: the waiting batch is still in the
# accumulator when the new topic's first send narrows the metadata.
LINGER_MS = 3000
WAIT_S = 10.0


async def _send_while_a_new_topic_appears(track: bool) -> bool:
    """Whether a record for an existing topic is acknowledged after a new topic's first send."""
    run = uuid.uuid4().hex[:8]
    existing, new = f"meta-{run}-existing", f"meta-{run}-new"
    await create_topics(OPTIONS, [existing], 2, 1)
    await wait_for_topics(OPTIONS, [existing])
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, linger_ms=LINGER_MS, request_timeout_ms=15_000
    )
    await producer.start()
    try:
        if track:
            await track_topics(producer, [existing])
        else:  # as a send to it would: seen in the full fetch, not tracked
            assert producer.client.cluster.partitions_for_topic(existing) is None
            await producer.client.force_metadata_update()
        waiting = await producer.send(existing, b"v", key=b"k")
        await create_topics(OPTIONS, [new], 2, 1)
        await wait_for_topics(OPTIONS, [new])
        if track:
            await track_topics(producer, [new])
        other = await producer.send(new, b"v", key=b"k")
        try:
            await asyncio.wait_for(asyncio.gather(waiting, other), WAIT_S)
        except TimeoutError:
            return False
        return True
    finally:
        await producer.stop()


def test_without_tracking_a_new_topic_strands_the_records_of_another() -> None:
    # The hazard itself, so that an aiokafka upgrade that fixes it shows up here.
    assert not asyncio.run(_send_while_a_new_topic_appears(track=False))


@pytest.mark.parametrize("round_", range(2))
def test_tracked_topics_keep_their_metadata_when_a_new_one_is_written(round_: int) -> None:
    assert asyncio.run(_send_while_a_new_topic_appears(track=True))
