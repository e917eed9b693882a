"""Profiles each partner holds (forwarder_partner_profiles), kept as the state changes.

A partition's counts are kept by each batch's state writes, and stored in the table with them
(one record per partition, written in the same changelog batch as the states it counts), so a
restarted worker or a partition's new owner reads them at once. Every rebalance forgets them
here (the partition may have been written elsewhere) and the next count reads the stored ones;
a partition without them (written before they were stored) is counted from its profiles once.
"""

from __future__ import annotations

from collections import Counter

import orjson

from schemas.state import ProfileState, SentEntry, sent_entry

# (output_id, connection_id)
Held = Counter[tuple[str, str]]


def held_change(before: ProfileState | None, after: ProfileState | None, into: Held) -> None:
    """Add to ``into`` what a profile's state change does to the profiles each partner holds."""
    sent_before = before["sent"] if before is not None else {}
    sent_after = after["sent"] if after is not None else {}
    if sent_before is sent_after:  # unchanged states share their dicts
        return
    # A decision copies the entries it leaves alone: the same objects, skipped at once.
    for connection_id, entry in sent_after.items():
        held = sent_before.get(connection_id)
        if held is entry:
            continue
        output_id = _output_of(entry)
        if held is None or _output_of(held) != output_id:
            into[(output_id, connection_id)] += 1
    for connection_id, entry in sent_before.items():
        now = sent_after.get(connection_id)
        if now is entry:
            continue
        output_id = _output_of(entry)
        if now is None or _output_of(now) != output_id:
            into[(output_id, connection_id)] -= 1


def _output_of(entry: SentEntry) -> str:
    # sent_entry's check, inline: calling it (another compiled module) for every entry cost
    # 0.5 to 1.5 µs more per event in benchmarks.micro.
    return (sent_entry(entry) if isinstance(entry, bytes) else entry)["output_id"]


def dump_counts(held: Held) -> bytes:
    """The stored form of a partition's counts (the positive ones, in a fixed order)."""
    rows = sorted((output_id, connection_id, n) for (output_id, connection_id), n in held.items())
    return orjson.dumps({"v": 1, "held": [row for row in rows if row[2] > 0]})


def load_counts(raw: bytes) -> Held:
    return Counter(
        {(output_id, connection_id): n for output_id, connection_id, n in orjson.loads(raw)["held"]}
    )


class PartnerCounts:
    def __init__(self) -> None:
        self._by_partition: dict[int, Held] = {}
        # Partitions being read from a snapshot of their state: the changes written since.
        self._since_snapshot: dict[int, Held] = {}
        # Counted partitions whose counts the table holds as they are here.
        self._stored: set[int] = set()

    def known(self, partition: int) -> bool:
        return partition in self._by_partition

    def begin(self, partition: int) -> None:
        """A count of the partition's state starts from a snapshot taken in this same step:
        the changes written from now on are kept apart, to be added to it."""
        self._since_snapshot[partition] = Counter()

    def establish(self, partition: int, held: Held) -> bool:
        """The partition's counts as read from the snapshot ``begin`` marked; False (nothing
        kept) when a rebalance forgot the partition meanwhile."""
        since = self._since_snapshot.pop(partition, None)
        if since is None:
            return False
        held.update(since)
        self._by_partition[partition] = held
        self._stored.discard(partition)
        return True

    def restore(self, partition: int, stored: bytes) -> None:
        """The counts the table holds for the partition, read in this step: they include every
        applied write, and the writes applied later add to them."""
        self._since_snapshot.pop(partition, None)
        self._by_partition[partition] = load_counts(stored)
        self._stored.add(partition)

    def to_store(self, partition: int, change: Held | None) -> bytes | None:
        """The counts record to write with a batch's state writes that change the partition's
        counts by ``change``, or None: not counted yet, or stored and unchanged. Exact only once
        every earlier write is applied (the processor settles before writing)."""
        held = self._by_partition.get(partition)
        if held is None or (partition in self._stored and not any((change or {}).values())):
            return None
        return dump_counts(held + change if change else held)

    def outdates_stored(self, partition: int, change: Held | None) -> bool:
        """Whether a write changing the partition's counts by ``change`` must delete the counts
        the table holds: they would miss the change while the partition is not counted here,
        and a count restored from them later would stay wrong; without them, the next count
        reads the state."""
        return partition not in self._by_partition and any((change or {}).values())

    def unstored(self) -> list[int]:
        """Counted partitions whose counts the table does not hold yet."""
        return [partition for partition in self._by_partition if partition not in self._stored]

    def stored(self, partition: int) -> None:
        """A write carrying the partition's counts is applied."""
        if partition in self._by_partition:
            self._stored.add(partition)

    def apply(self, partition: int, change: Held) -> None:
        """A written batch's change; ignored until the partition's count begins."""
        held = self._by_partition.get(partition)
        if held is None:
            held = self._since_snapshot.get(partition)
        if held is not None:
            held.update(change)

    def forget(self) -> None:
        self._by_partition.clear()
        self._since_snapshot.clear()
        self._stored.clear()

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        """(output_id, connection_id, partition) -> profiles held, for the counted partitions."""
        return {
            (output_id, connection_id, str(partition)): count
            for partition, held in self._by_partition.items()
            for (output_id, connection_id), count in held.items()
            if count > 0
        }
