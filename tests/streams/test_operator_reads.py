"""The worker's operator reads over a store of plain dicts: ownership, rebalances, paging."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Mapping

from aiokafka.partitioner import DefaultPartitioner

from schemas.state import ProfileState, dump_profile
from streams.operator_reads import OperatorReads, input_partition
from streams.partner_counts import PartnerCounts
from streams.processor import state_key
from tests.streams.test_forwarding import update
from tests.streams.test_operator_decisions import Profile, member, seed

PARTITIONS = 4


class DictStore:
    def __init__(self, owned: set[int]) -> None:
        self.data: dict[int, dict[bytes, bytes]] = {p: {} for p in range(PARTITIONS)}
        self.owned = owned
        self.writes = 0

    def put(self, state: ProfileState) -> None:
        partition = input_partition(state["mpid"], PARTITIONS)
        self.data[partition][state_key(partition, state["mpid"])] = dump_profile(state)

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data[partition].get(key)

    def items(self, partition: int, after: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(item for item in self.data[partition].items() if item[0] > after))

    def count(self, partition: int) -> int:
        return len(self.data[partition])

    def owns(self, partition: int) -> bool:
        return partition in self.owned

    async def write(self, partition: int, changes: Mapping[bytes, bytes | None]) -> None:
        self.writes += 1


def fixture(owned: set[int], settled: bool = True) -> tuple[OperatorReads, DictStore]:
    routing = seed()
    store = DictStore(owned)
    for n in range(60):
        profile = Profile(routing, f"u-{n}")
        if n % 3:
            member(profile, email=f"{n}@example.com")
        else:
            profile.feed(update(profile.state["mpid"], identities={"email": "x@example.com"}))
        store.put(profile.state)
    reads = OperatorReads(routing, store, PARTITIONS, lambda: settled)
    return reads, store


def test_the_partition_is_kafkas_default_partitioner() -> None:
    # Upstream producers key by mpid with the default partitioner (the README's contract).
    for mpid in ("8675309", "u-1", "ünïcode", "x" * 128):
        expected = DefaultPartitioner()(mpid.encode(), list(range(8)), list(range(8)))
        assert input_partition(mpid, 8) == expected


def test_only_the_owner_explains_and_only_when_settled() -> None:
    mpid = "u-1"
    partition = input_partition(mpid, PARTITIONS)
    reads, store = fixture({partition})
    status, answer = reads.explain({"connection_id": "c-1", "mpid": mpid})
    assert (status, answer["verdict"], answer["partition"]) == (200, "at_partner", partition)
    others, _ = fixture(set(range(PARTITIONS)) - {partition})
    assert others.explain({"connection_id": "c-1", "mpid": mpid})[0] == 421
    moving, _ = fixture({partition}, settled=False)
    assert moving.explain({"connection_id": "c-1", "mpid": mpid})[0] == 503
    assert reads.explain({"connection_id": "nope", "mpid": mpid})[0] == 404
    assert reads.explain({"mpid": mpid})[0] == 400
    assert store.writes == 0


def test_pages_of_members_cover_the_partition_once() -> None:
    reads, store = fixture(set(range(PARTITIONS)))
    seen: list[str] = []
    for partition in range(PARTITIONS):
        after = ""
        while True:
            query = {"connection_id": "c-1", "partition": str(partition), "limit": "3"}
            status, page = asyncio.run(reads.members({**query, "after": after}))
            assert status == 200 and len(page["members"]) <= 3
            seen += [m["mpid"] for m in page["members"]]
            if page["next_after"] is None:
                break
            after = page["next_after"]
    assert sorted(seen) == sorted(f"u-{n}" for n in range(60) if n % 3)
    assert store.writes == 0


def test_a_member_page_of_a_partition_not_owned_is_refused() -> None:
    reads, _ = fixture({0})
    assert asyncio.run(reads.members({"connection_id": "c-1", "partition": "1"}))[0] == 421
    assert asyncio.run(reads.members({"connection_id": "c-1", "partition": "9"}))[0] == 400


def test_the_partner_count_is_what_was_sent_in_the_partition() -> None:
    reads, store = fixture({0, 1})
    for partition in (0, 1):
        expected = Counter(
            ("partner-a", "c-1")
            for n in range(60)
            if n % 3 and input_partition(f"u-{n}", PARTITIONS) == partition
        )
        counts = PartnerCounts()
        assert asyncio.run(reads.count_held(partition, counts))
        held = {(o, c): n for (o, c, p), n in counts.snapshot().items() if p == str(partition)}
        assert expected and held == expected
    assert store.writes == 0
