"""Which input offsets may be committed: plain bookkeeping, no Kafka, so it can be tested alone.

The worker commits an offset only after the batch that read it has finished, only for a
partition it still owns, and never backwards: a batch ends, ``done`` records the next offset of
each of its partitions; ``take`` hands out what is owned and forgets the rest (a partition that
moved is the new owner's to commit, and if it comes back its records are read again from the
committed offset).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from streams.processor import InputRecord

TopicPartition = tuple[str, int]


def next_offsets(records: Iterable[InputRecord]) -> dict[TopicPartition, int]:
    """Each partition's offset after its last record (a batch holds each partition's records
    in offset order, so the last one wins)."""
    return {(record.topic, record.partition): record.offset + 1 for record in records}


class OffsetBook:
    def __init__(self) -> None:
        self._pending: dict[TopicPartition, int] = {}

    def done(self, records: Iterable[InputRecord]) -> None:
        """A batch finished: each of its partitions may be committed past its last record."""
        pending = self._pending
        for tp, offset in next_offsets(records).items():
            if offset > pending.get(tp, -1):
                pending[tp] = offset

    def take(self, owned: Callable[[TopicPartition], bool]) -> dict[TopicPartition, int]:
        """The offsets to commit now (of owned partitions); the book is empty after."""
        taken = {tp: offset for tp, offset in self._pending.items() if owned(tp)}
        self._pending.clear()
        return taken

    def __bool__(self) -> bool:
        return bool(self._pending)
