"""The worker's producer batches fit the topics it writes: a batch goes whole to one topic, so
start-up lowers FORWARDER_PRODUCER_BATCH_BYTES to the smallest max.message.bytes among them
(a larger batch would be refused, and the worker would stop on it)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from core.kafka_admin import create_topics
from core.settings import Settings
from devtools.local import BOOTSTRAP
from schemas import topics
from streams.app import Forwarder

SMALL_LIMIT = 600_000  # above what FORWARDER_MAX_RECORD_BYTES' default needs (532,480)


def _forwarder(tmp_path: Path, prefix: str) -> Forwarder:
    return Forwarder(Settings(kafka_bootstrap=BOOTSTRAP, topic_prefix=prefix, data_dir=tmp_path))


def test_batches_are_no_larger_than_the_smallest_topic_takes(tmp_path: Path) -> None:
    prefix = f"limits-{uuid.uuid4().hex[:8]}."
    forwarder = _forwarder(tmp_path / "small", prefix)
    dead_letters = forwarder.settings.topic(topics.DEAD_LETTERS)
    partitions = forwarder.settings.input_partitions
    asyncio.run(
        create_topics(
            forwarder.settings.kafka_client_options(),
            [dead_letters],
            partitions,
            1,
            {"max.message.bytes": str(SMALL_LIMIT)},
        )
    )
    asyncio.run(forwarder.create_topics())
    assert forwarder.app.producer.max_batch_size == SMALL_LIMIT


def test_batches_keep_the_setting_when_every_topic_takes_it(tmp_path: Path) -> None:
    forwarder = _forwarder(tmp_path, f"limits-{uuid.uuid4().hex[:8]}.")
    asyncio.run(forwarder.create_topics())
    assert forwarder.app.producer.max_batch_size == 1_000_000
    assert forwarder.settings.producer_batch_bytes == 1_000_000
