"""The worker's operator reads, served on its web server: explain one profile for one
connection, and page through what a connection's partner holds.

Only the worker owning a profile's partition answers for it (others say 421, "not mine"), and
none while a rebalance or a table recovery is under way (503 with Retry-After): the store of a
partition that is moving may be stale or half recovered. Reads never write state and yield to
the event loop between chunks, so the fetch loop running the batches is not held up.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from core.partitioner import partition_for
from core.routing import Routing
from schemas.state import load_profile, sent_entry
from streams.explain import explain, held_member
from streams.partner_counts import Held, PartnerCounts
from streams.processor import StateStore, marks_key, state_key
from streams.sync_marks import SyncMarks, caught_up, load_marks

# Profiles read between two yields to the event loop.
READ_CHUNK = 200
# Profiles counted between two yields to the event loop (a few milliseconds).
COUNT_CHUNK = 1000
MAX_PAGE = 10_000
RETRY_AFTER_S = 2
# In every sent entry of a state (and a preview's): states without it hold no send.
SENT_ENTRY = b'"output_id"'

Answer = tuple[int, dict[str, Any]]


def input_partition(mpid: str, partitions: int) -> int:
    """The partition of an mpid key under Kafka's default partitioner (murmur2), as upstream
    producers key the inputs: the partition that holds the profile's state."""
    return partition_for(mpid.encode(), partitions)


@dataclass(frozen=True, slots=True)
class OperatorReads:
    routing: Routing
    store: StateStore
    partitions: int
    # False while the worker rebalances or recovers its table.
    settled: Callable[[], bool]

    def _unsettled(self) -> Answer | None:
        if self.settled():
            return None
        return 503, {"detail": "the worker is rebalancing; retry", "retry_after": RETRY_AFTER_S}

    def explain(self, query: Mapping[str, str]) -> Answer:
        connection_id, mpid = query.get("connection_id"), query.get("mpid")
        if not connection_id or not mpid:
            return 400, {"detail": "connection_id and mpid are required"}
        unsettled = self._unsettled()
        if unsettled is not None:
            return unsettled
        connection = self.routing.find_connection(connection_id)
        if connection is None:
            return 404, {"detail": "no such connection"}
        partition = input_partition(mpid, self.partitions)
        if not self.store.owns(partition):
            return 421, {"detail": "not mine", "partition": partition}
        stored = self.store.get(partition, state_key(partition, mpid))
        state = caught_up(load_profile(stored), self._marks(partition)) if stored else None
        output = self.routing.find_output(connection.output_id)
        return 200, {
            **explain(mpid, state, connection, output, self.routing),
            "partition": partition,
        }

    def _marks(self, partition: int) -> SyncMarks:
        return load_marks(self.store.get(partition, marks_key(partition)))

    async def count_held(self, partition: int, counts: PartnerCounts) -> bool:
        """Count the profiles each (output, connection) holds in one partition, from its state,
        into ``counts``. Batches run between chunks: the count reads a snapshot and ``counts``
        adds what their writes change after it. False (nothing counted) when the partition was
        revoked or a rebalance started meanwhile."""
        held: Held = Counter()
        marks = self._marks(partition)
        scan = self.store.items(partition)
        counts.begin(partition)  # in the snapshot's step: later writes are counted apart
        for index, (_, stored) in enumerate(scan):
            if index and index % COUNT_CHUNK == 0:
                await asyncio.sleep(0)
                if not self.settled() or not self.store.owns(partition):
                    return False
            # A state that holds a send names its output; the test spares parsing the others
            # (unless a sync's mark may have sent it).
            if SENT_ENTRY not in stored and not marks.marks:
                continue
            for connection_id, entry in caught_up(load_profile(stored), marks)["sent"].items():
                held[(sent_entry(entry)["output_id"], connection_id)] += 1
        return counts.establish(partition, held)

    async def members(self, query: Mapping[str, str]) -> Answer:
        """One page of the partner's members in one partition, in key order after ``after``."""
        connection_id = query.get("connection_id")
        try:
            partition = int(query.get("partition", ""))
            limit = min(MAX_PAGE, max(1, int(query.get("limit", "1000"))))
        except ValueError:
            return 400, {"detail": "partition and limit are integers"}
        if not connection_id or not 0 <= partition < self.partitions:
            return 400, {"detail": "connection_id and a partition in range are required"}
        unsettled = self._unsettled()
        if unsettled is not None:
            return unsettled
        if not self.store.owns(partition):
            return 421, {"detail": "not mine", "partition": partition}
        after = query.get("after", "").encode()
        marks = self._marks(partition)
        # A state that the connection's partner holds names the connection, or, sent by a
        # sync's mark, the connection's audience.
        needles = [orjson.dumps(connection_id)]
        for mark in marks.marks:
            if connection_id in mark.connection_ids:
                needles.extend(mark.needles())
        members: list[dict[str, Any]] = []
        last: bytes | None = None
        done = True
        for index, (key, stored) in enumerate(self.store.items(partition, after)):
            if index and index % READ_CHUNK == 0:
                await asyncio.sleep(0)
                if not self.store.owns(partition):
                    return 421, {"detail": "not mine", "partition": partition}
            if len(members) == limit:
                done = False  # a member may follow: the page ends at the last one read
                break
            last = key
            if not any(needle in stored for needle in needles):
                continue
            member = held_member(caught_up(load_profile(stored), marks), connection_id)
            if member is not None:
                members.append(member)
        return 200, {
            "partition": partition,
            "members": members,
            "next_after": None if done else (last or b"").decode(),
        }
