"""The worker's own Kafka record batches, read back by aiokafka's reader (the one consumers
and the sink runner use) without a broker: the checksum holds, and every record comes back
with its key, value (null included: the changelog's deletes), offset and the batch's time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiokafka.record.default_records import DefaultRecordBatch
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.record_batches import HEADER_BYTES, KafkaRecordBatch

Record = tuple[bytes | None, bytes | None]


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _fill(loop: asyncio.AbstractEventLoop, records: list[Record], max_bytes: int) -> list[bytes]:
    """The records in as few batches of at most ``max_bytes`` as they fill, encoded."""
    built: list[bytes] = []
    batch = KafkaRecordBatch(max_bytes, loop.create_future())
    for key, value in records:
        if not batch.add(key, value):
            assert batch.count > 0, "an empty batch takes any record"
            built.append(batch._build())
            batch = KafkaRecordBatch(max_bytes, loop.create_future())
            assert batch.add(key, value)
    built.append(batch._build())
    return built


def _read(built: list[bytes]) -> list[Record]:
    read: list[Record] = []
    for buffer in built:
        batch = DefaultRecordBatch(buffer)
        assert batch.validate_crc()
        assert batch.magic == 2 and batch.compression_type == 0
        offsets = [record.offset for record in batch]
        assert offsets == list(range(len(offsets)))
        read.extend((record.key, record.value) for record in DefaultRecordBatch(buffer))
    return read


nullable_bytes = st.none() | st.binary(max_size=300) | st.binary(min_size=16_000, max_size=20_000)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(nullable_bytes, nullable_bytes), min_size=1, max_size=40))
def test_any_records_read_back_as_they_were_queued(records: list[Record]) -> None:
    loop = asyncio.new_event_loop()
    try:
        assert _read(_fill(loop, records, 4096)) == records
    finally:
        loop.close()


def test_a_batch_carries_its_start_time_and_the_producers_state(
    loop: asyncio.AbstractEventLoop,
) -> None:
    before = int(time.time() * 1000)
    batch = KafkaRecordBatch(1 << 20, loop.create_future())
    assert batch.add(b"k-1", b"v-1") and batch.add(None, b"v-2") and batch.add(b"k-3", None)
    batch._set_producer_state(4711, 3, 120)
    built = batch._build()
    assert batch._build() is built, "built once: the producer may ask again on a retry"
    assert batch.closed() and not batch.add(b"k-4", b"v-4")
    assert len(built) == batch.size
    read = DefaultRecordBatch(built)
    assert read.validate_crc()
    assert (read.producer_id, read.producer_epoch, read.base_sequence) == (4711, 3, 120)
    assert before <= read.first_timestamp == read.max_timestamp <= int(time.time() * 1000)
    assert read.last_offset_delta == 2
    records = list(DefaultRecordBatch(built))
    assert [(r.key, r.value) for r in records] == [(b"k-1", b"v-1"), (None, b"v-2"), (b"k-3", None)]
    assert {r.timestamp for r in records} == {read.first_timestamp}
    assert all(r.headers == [] for r in records)


def test_a_full_batch_refuses_the_next_record_but_takes_a_first_one_of_any_size(
    loop: asyncio.AbstractEventLoop,
) -> None:
    batch = KafkaRecordBatch(HEADER_BYTES + 100, loop.create_future())
    assert batch.add(b"k", b"x" * 5000), "an empty batch takes a record larger than the limit"
    assert not batch.add(b"k", b"y"), "the next one starts another batch"
    small = KafkaRecordBatch(HEADER_BYTES + 100, loop.create_future())
    while small.add(b"k", b"z" * 10):
        pass
    assert small.count > 1 and small.size <= HEADER_BYTES + 100
    assert len(small._build()) == small.size
