"""Which offsets the worker commits: only finished batches, only owned partitions, never back."""

from __future__ import annotations

from streams.offsets import OffsetBook
from streams.processor import InputRecord


def records(topic: str, partition: int, *offsets: int) -> list[InputRecord]:
    return [InputRecord(topic, partition, offset, b"m", b"{}", 0.0) for offset in offsets]


def test_a_finished_batch_is_committed_past_its_last_record_per_partition() -> None:
    book = OffsetBook()
    book.done(records("updates", 0, 4, 5, 6) + records("updates", 1, 0) + records("sync", 0, 9))
    assert book.take(lambda tp: True) == {("updates", 0): 7, ("updates", 1): 1, ("sync", 0): 10}
    assert not book
    assert book.take(lambda tp: True) == {}


def test_nothing_is_committed_for_a_partition_no_longer_owned() -> None:
    book = OffsetBook()
    book.done(records("updates", 0, 1) + records("updates", 1, 1))
    assert book.take(lambda tp: tp == ("updates", 1)) == {("updates", 1): 2}
    # The moved partition is forgotten: if it comes back, its records are read again.
    assert book.take(lambda tp: True) == {}


def test_an_offset_never_goes_back() -> None:
    book = OffsetBook()
    book.done(records("updates", 0, 10, 11))
    book.done(records("updates", 0, 3))  # a re-read after a rebalance
    assert book.take(lambda tp: True) == {("updates", 0): 12}
