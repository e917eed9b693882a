"""Profiles each partner holds (forwarder_partner_profiles), kept as the state changes.

A partition's counts are read from its state once it is settled on this worker, then kept by
each batch's state writes: a full read of every profile per interval cost a million-profile
worker seconds of CPU a minute. Every rebalance forgets them (the partition may have been
written elsewhere), and the next count reads them again.
"""

from __future__ import annotations

from collections import Counter

from schemas.state import ProfileState

# (output_id, connection_id)
Held = Counter[tuple[str, str]]


def held_change(before: ProfileState | None, after: ProfileState | None, into: Held) -> None:
    """Add to ``into`` what a profile's state change does to the profiles each partner holds."""
    sent_before = before["sent"] if before is not None else {}
    sent_after = after["sent"] if after is not None else {}
    if sent_before is sent_after:  # unchanged states share their dicts
        return
    for connection_id, entry in sent_after.items():
        held = sent_before.get(connection_id)
        if held is None or held["output_id"] != entry["output_id"]:
            into[(entry["output_id"], connection_id)] += 1
    for connection_id, entry in sent_before.items():
        now = sent_after.get(connection_id)
        if now is None or now["output_id"] != entry["output_id"]:
            into[(entry["output_id"], connection_id)] -= 1


class PartnerCounts:
    def __init__(self) -> None:
        self._by_partition: dict[int, Held] = {}
        # Partitions being read from a snapshot of their state: the changes written since.
        self._since_snapshot: dict[int, Held] = {}

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
        return True

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

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        """(output_id, connection_id, partition) -> profiles held, for the counted partitions."""
        return {
            (output_id, connection_id, str(partition)): count
            for partition, held in self._by_partition.items()
            for (output_id, connection_id), count in held.items()
            if count > 0
        }
