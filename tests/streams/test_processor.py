"""The processor's rules without a broker: nothing stored before Kafka acknowledged it, state
written only for owned partitions, size limits, dead letters, sync chunking, erasure."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Awaitable, Iterator, Mapping
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from core.errors import AckTimeoutError
from core.routing import Routing
from partners.catalog import resolve_output
from schemas.state import SPLIT_FROM, ProfileState, load_profile
from streams import operator_reads
from streams import processor as processor_module
from streams.operator_reads import OperatorReads
from streams.partner_counts import PartnerCounts, load_counts
from streams.processor import (
    COMPLETING_MAX,
    InputProcessor,
    InputRecord,
    Limits,
    ProcessorTopics,
    counts_key,
    marks_key,
    state_key,
)
from streams.sync_marks import caught_up, load_marks
from tests.streams.test_forwarding import connection, output, routing_of

PROFILES, MEMBERSHIPS, SYNC = "profile-updates", "audience-memberships", "forwarder-sync"
DEAD, ERASURE = "forwarder-dead-letters", "forwarder-erasure-status"


class Producer:
    """Records every send; acknowledges the queued ones at ``flush``, as the worker's record
    batches do, unless ``hold`` is set."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.hold = False
        self.futures: list[asyncio.Future[None]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        return self.queue(topic, key, value)

    def send_nowait(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any] | None:
        # Every other record takes the waiting path, as a full batch or new topic would.
        return self.queue(topic, key, value) if len(self.sent) % 2 else None

    def queue(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        self.sent.append((topic, key, value))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    async def flush(self) -> None:
        if not self.hold:
            for future in self.futures:
                if not future.done():
                    future.set_result(None)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(value) for sent_topic, _, value in self.sent if sent_topic == topic]


class Store:
    def __init__(self) -> None:
        self.data: dict[int, dict[bytes, bytes]] = {}
        self.owned: set[int] = set(range(8))
        self.writes = 0
        self.written: list[dict[bytes, bytes | None]] = []
        self.acknowledge = asyncio.Event()
        self.acknowledge.set()

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.data.get(partition, {}).get(key)

    def items(self, partition: int, after: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        held = self.data.get(partition, {})
        skipped = (counts_key(partition), marks_key(partition))
        return iter(sorted(i for i in held.items() if i[0] > after and i[0] not in skipped))

    def count(self, partition: int) -> int:
        held = self.data.get(partition, {})
        return len(held) - (counts_key(partition) in held) - (marks_key(partition) in held)

    def owns(self, partition: int) -> bool:
        return partition in self.owned

    async def write(self, partition: int, changes: Mapping[bytes, bytes | None]) -> Awaitable[None]:
        self.writes += 1
        self.written.append(dict(changes))
        return self._acknowledged(partition, dict(changes))

    async def _acknowledged(self, partition: int, changes: dict[bytes, bytes | None]) -> None:
        """Applies the changes once the changelog is acknowledged: when ``acknowledge`` is set
        (at once unless a test clears it)."""
        await self.acknowledge.wait()
        held = self.data.setdefault(partition, {})
        for key, value in changes.items():
            if value is None:
                held.pop(key, None)
            else:
                held[key] = value

    def state(self, partition: int, mpid: str) -> ProfileState | None:
        """The profile's state as every reader sees it: with the syncs its marks stand for."""
        raw = self.get(partition, state_key(partition, mpid))
        if not raw:
            return None
        return caught_up(load_profile(raw), load_marks(self.get(partition, marks_key(partition))))


async def _outbound(output_id: str) -> str:
    return f"forward-{output_id}"


async def _applied(_: object) -> None:
    return None


def make(
    routing: Routing | None = None, limits: Limits | None = None
) -> tuple[InputProcessor, Producer, Store]:
    producer, store = Producer(), Store()
    routing = routing or routing_of(
        [output("ads", ["ios_idfa"]), output("mail", ["email"])],
        [connection("c-ads", "ads"), connection("c-mail", "mail")],
    )
    processor = InputProcessor(
        routing=routing,
        store=store,
        producer=producer,
        topics=ProcessorTopics(PROFILES, SYNC, DEAD, ERASURE, _outbound),
        limits=limits or Limits(max_record_bytes=65_536, max_identity_values=5, ack_timeout_s=5),
        config_applied=_applied,
    )
    return processor, producer, store


async def processed(processor: InputProcessor, records: list[InputRecord]) -> None:
    """One batch, with its state writes acknowledged and stored (what a commit waits for)."""
    await processor.process(records)
    await processor.settle()


async def ads_members(
    mpids: list[str],
) -> tuple[Routing, InputProcessor, Producer, Store]:
    """A processor whose audience goes to one output, ads, with these profiles forwarded."""
    routing = routing_of([output("ads", ["ios_idfa"])], [connection("c-ads", "ads")])
    processor, producer, store = make(routing)
    await processed(processor, [r for m in mpids for r in (profile(m, ios_idfa=m), member(m))])
    return routing, processor, producer, store


offsets = iter(range(10**9))


def record(topic: str, key: str | bytes | None, value: Any, partition: int = 0) -> InputRecord:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    encoded_key = key.encode() if isinstance(key, str) else key
    return InputRecord(topic, partition, next(offsets), encoded_key, raw, 1.0)


def profile(mpid: str, partition: int = 0, **identities: Any) -> InputRecord:
    update = {"type": "profile_update", "mpid": mpid, "timestamp_ms": 1, "identities": identities}
    return record(PROFILES, mpid, update, partition)


def member(mpid: str, ts: int = 2) -> InputRecord:
    event = {"mpid": mpid, "audience_id": "aud-42", "action": "add", "timestamp_ms": ts}
    return record(MEMBERSHIPS, mpid, event)


async def test_a_member_is_forwarded_and_its_state_stored() -> None:
    processor, producer, store = make()
    await processed(processor, [profile("m1", ios_idfa="A", email="a@x.io"), member("m1")])
    ads, mail = producer.on("forward-ads"), producer.on("forward-mail")
    assert [[(i["type"], i["value"]) for i in r["identities"]] for r in ads] == [
        [("ios_idfa", "A")]
    ]
    assert [[(i["type"], i["value"]) for i in r["identities"]] for r in mail] == [
        [("email", "a@x.io")]
    ]
    state = store.state(0, "m1")
    assert state is not None and set(state["sent"]) == {"c-ads", "c-mail"}
    assert store.writes == 1  # one write per partition per batch


async def test_nothing_is_stored_before_kafka_acknowledged_the_sends() -> None:
    processor, producer, store = make()
    producer.hold = True
    batch = asyncio.create_task(processor.process([profile("m1", ios_idfa="A"), member("m1")]))
    await asyncio.sleep(0.05)
    assert producer.on("forward-ads") and store.state(0, "m1") is None
    for future in producer.futures:
        future.set_result(None)
    await batch
    await processor.settle()
    assert store.state(0, "m1") is not None


async def test_the_next_batch_reads_the_states_whose_writes_are_still_in_flight() -> None:
    processor, producer, store = make()
    store.acknowledge.clear()
    await processor.process([profile("m1", ios_idfa="A", email="a@x.io"), member("m1")])
    assert store.state(0, "m1") is None  # its changelog is not acknowledged yet
    changed = {"type": "profile_update", "mpid": "m1", "timestamp_ms": 3}
    # The batch runs at once: it does not wait for the first one's acknowledgements.
    await processor.process(
        [record(PROFILES, "m1", {**changed, "identities": {"email": "b@x.io"}})]
    )
    # Decided from the first batch's state: a remove of what it sent, then an add.
    assert [(r["action"], r["identities"][0]["value"]) for r in producer.on("forward-mail")] == [
        ("add", "a@x.io"),
        ("remove", "a@x.io"),
        ("add", "b@x.io"),
    ]
    await asyncio.sleep(0.05)
    assert store.writes == 1  # its own state write waits for the first one's, in order
    store.acknowledge.set()
    await processor.settle()
    assert store.writes == 2
    state = store.state(0, "m1")
    assert state is not None and state["identities"]["email"] == ["b@x.io"]


async def test_state_writes_that_are_never_acknowledged_fail_the_settle() -> None:
    limits = Limits(max_record_bytes=65_536, max_identity_values=5, ack_timeout_s=0.1)
    processor, _, store = make(limits=limits)
    store.acknowledge.clear()
    await processor.process([profile("m1", ios_idfa="A"), member("m1")])
    with pytest.raises(AckTimeoutError):
        await processor.settle()
    assert store.state(0, "m1") is None


async def test_an_acknowledgement_that_never_comes_fails_the_batch_without_storing() -> None:
    limits = Limits(max_record_bytes=65_536, max_identity_values=5, ack_timeout_s=0.1)
    processor, producer, store = make(limits=limits)
    producer.hold = True
    with pytest.raises(AckTimeoutError):
        await processor.process([profile("m1", ios_idfa="A"), member("m1")])
    assert store.state(0, "m1") is None


async def test_at_most_completing_max_batches_wait_for_their_acknowledgements() -> None:
    processor, _, store = make()
    store.acknowledge.clear()
    for n in range(COMPLETING_MAX):
        await processor.process([profile(f"m{n}", ios_idfa="A"), member(f"m{n}")])
    waiting = asyncio.create_task(processor.process([profile("last", ios_idfa="B")]))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    store.acknowledge.set()
    await waiting
    await processor.settle()
    assert store.writes == COMPLETING_MAX + 1
    assert all(store.state(0, f"m{n}") for n in range(COMPLETING_MAX))


async def test_state_of_a_partition_revoked_during_the_batch_is_not_written() -> None:
    processor, _, store = make()
    store.owned = {1}
    await processed(
        processor, [profile("m1", ios_idfa="A"), member("m1"), profile("m2", partition=1)]
    )
    assert store.state(0, "m1") is None  # the new owner reads the batch again
    assert store.state(1, "m2") is not None


async def test_an_oversized_record_is_dead_lettered_whole_within_the_limit() -> None:
    limits = Limits(max_record_bytes=65_536, max_identity_values=5, ack_timeout_s=5)
    processor, producer, _ = make(limits=limits)
    huge = b'{"type": "profile_update", "mpid": "m1", "x": "' + b"\xff" * 1_000_000 + b'"}'
    batch = [record(PROFILES, "m1", huge), profile("m2", ios_idfa="B"), member("m2")]
    await processed(processor, batch)
    [letter] = producer.on(DEAD)
    assert letter["error"]["kind"] == "too_large"
    assert letter["value_truncated"] is True
    assert letter["value_length"] == len(huge)
    assert letter["value_sha256"] == hashlib.sha256(huge).hexdigest()
    assert all(len(value) <= limits.max_record_bytes for _, _, value in producer.sent)
    assert producer.on("forward-ads")  # the next records went on


async def test_too_many_identity_values_are_dead_lettered() -> None:
    processor, producer, store = make()
    await processed(processor, [profile("m1", email=[f"{n}@x.io" for n in range(6)])])
    [letter] = producer.on(DEAD)
    assert letter["error"]["kind"] == "too_large"
    assert "identities.email" in letter["error"]["message"]
    assert store.state(0, "m1") is None


async def test_a_state_that_would_outgrow_the_limit_is_refused_and_kept() -> None:
    processor, producer, store = make()
    big = "v" * 40_000
    first = {"type": "profile_update", "mpid": "m1", "timestamp_ms": 1, "attributes": {"a": big}}
    second = {"type": "profile_update", "mpid": "m1", "timestamp_ms": 2, "attributes": {"b": big}}
    await processed(processor, [record(PROFILES, "m1", first)])
    await processed(processor, [record(PROFILES, "m1", second)])
    [letter] = producer.on(DEAD)
    assert letter["error"]["kind"] == "too_large"
    state = store.state(0, "m1")
    assert state is not None and set(state["attributes"]) == {"a"}


async def test_bad_records_become_dead_letters_and_processing_continues() -> None:
    processor, producer, _ = make()
    await processed(
        processor,
        [
            record(PROFILES, "m1", b"{not json"),
            record(MEMBERSHIPS, "other", orjson.loads(member("m1").value or b"")),
            record(PROFILES, "m1", None),
            profile("m2", ios_idfa="B"),
            member("m2"),
        ],
    )
    kinds = [letter["error"]["kind"] for letter in producer.on(DEAD)]
    assert kinds == ["invalid_json", "key_mismatch", "missing_value"]
    assert [r["mpid"] for r in producer.on("forward-ads")] == ["m2"]


async def test_an_erasure_deletes_the_state_and_reports_per_output() -> None:
    processor, producer, store = make()
    await processed(processor, [profile("m1", ios_idfa="A"), member("m1")])
    erasure = {"type": "profile_erasure", "mpid": "m1", "timestamp_ms": 3, "request_id": "r1"}
    await processed(processor, [record(PROFILES, "m1", erasure)])
    assert store.state(0, "m1") is None
    assert {status["output_id"] for status in producer.on(ERASURE)} == {"ads", "mail"}


@pytest.mark.parametrize(("marks_max", "writes"), [(0, 4), (16, 1)])
async def test_a_sync_reconciles_every_member_in_chunks(
    monkeypatch: pytest.MonkeyPatch, marks_max: int, writes: int
) -> None:
    monkeypatch.setattr(processor_module, "SYNC_CHUNK", 3)
    members = [f"m{n}" for n in range(10)]
    routing, processor, producer, store = await ads_members(members)
    processor.limits = dataclasses.replace(processor.limits, sync_marks_max=marks_max)
    routing.put_output(resolve_output(output("push", ["ios_idfa"])))
    routing.put_connection(connection("c-push", "push"))
    writes_before = store.writes
    config = {"topic": "forwarder-connections", "partition": 0, "offset": 0}
    request = {"kind": "connection", "id": "c-push", "config": config}
    await processed(processor, [record(SYNC, "c-push", request)])
    assert sorted(r["mpid"] for r in producer.on("forward-push")) == sorted(members)
    # 10 members in chunks of 3, each writing its states; or one mark standing for them all.
    assert store.writes - writes_before == writes
    assert all("c-push" in (store.state(0, m) or {})["sent"] for m in members)


async def test_a_syncs_chunks_go_out_unacknowledged_and_write_nothing_until_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(processor_module, "SYNC_CHUNK", 3)
    members = [f"m{n}" for n in range(6)]
    routing, processor, producer, store = await ads_members(members)
    routing.put_output(resolve_output(output("push", ["ios_idfa"])))
    routing.put_connection(connection("c-push", "push"))
    processor.limits = Limits(max_record_bytes=65_536, max_identity_values=5, ack_timeout_s=0.2)
    writes_before = store.writes
    producer.hold = True  # no send is acknowledged
    config = {"topic": "forwarder-connections", "partition": 0, "offset": 0}
    request = {"kind": "connection", "id": "c-push", "config": config}
    with pytest.raises(AckTimeoutError):
        await processed(processor, [record(SYNC, "c-push", request)])
    # Both chunks were sent without waiting; neither wrote a state that says so.
    assert sorted(r["mpid"] for r in producer.on("forward-push")) == members
    assert store.writes == writes_before
    assert not any("c-push" in (store.state(0, m) or {})["sent"] for m in members)


async def test_one_scan_serves_the_sync_requests_of_a_partition_in_a_batch() -> None:
    routing, processor, producer, store = await ads_members(["m1", "m2"])
    for name in ("push", "tv"):
        routing.put_output(resolve_output(output(name, ["ios_idfa"])))
        routing.put_connection(connection(f"c-{name}", name))
    scans: list[int] = []
    items = store.items
    store.items = lambda partition: scans.append(partition) or items(partition)  # type: ignore[method-assign]
    config = {"topic": "forwarder-connections", "partition": 0, "offset": 0}
    requests = [
        record(SYNC, f"c-{name}", {"kind": "connection", "id": f"c-{name}", "config": config})
        for name in ("push", "tv")
    ]
    await processed(processor, [requests[0], profile("m9", partition=1), requests[1]])
    assert scans == [0]
    assert sorted(r["mpid"] for r in producer.on("forward-push")) == ["m1", "m2"]
    assert sorted(r["mpid"] for r in producer.on("forward-tv")) == ["m1", "m2"]


async def test_a_syncs_progress_ends_at_the_profiles_checked_after_starting_from_an_estimate() -> (
    None
):
    members = [f"m{n}" for n in range(7)]
    routing, processor, producer, store = await ads_members(members)
    routing.put_output(resolve_output(output("progress", ["ios_idfa"])))
    routing.put_connection(connection("c-progress", "progress"))
    store.count = lambda partition: 50  # type: ignore[method-assign]  # RocksDB's estimate
    config = {"topic": "forwarder-connections", "partition": 0, "offset": 0}
    request = {"kind": "connection", "id": "c-progress", "config": config}
    await processed(processor, [record(SYNC, "c-progress", request)])
    labels = {"connection_id": "c-progress"}
    assert REGISTRY.get_sample_value("forwarder_sync_profiles", labels) == len(members)
    assert REGISTRY.get_sample_value("forwarder_sync_profiles_done", labels) == len(members)
    assert sorted(r["mpid"] for r in producer.on("forward-progress")) == members


@pytest.mark.parametrize("more_ads_connections", [0, SPLIT_FROM])
async def test_the_partner_counts_kept_by_the_batches_match_a_fresh_count_of_the_state(
    more_ads_connections: int,
) -> None:
    """Also for profiles held by enough connections to be stored in parts."""
    more = [f"c-ads-{n}" for n in range(more_ads_connections)]
    routing = routing_of(
        [output("ads", ["ios_idfa"]), output("mail", ["email"])],
        [connection(c, "ads") for c in ["c-ads", *more]] + [connection("c-mail", "mail")],
    )
    processor, _, store = make(routing)
    reads = OperatorReads(routing, store, partitions=8, settled=lambda: True)
    counts = processor.partner_counts
    assert await reads.count_held(0, counts)
    members = [f"m{n}" for n in range(6)]
    await processed(
        processor,
        [r for m in members for r in (profile(m, ios_idfa=m, email=f"{m}@x.io"), member(m))],
    )
    stored = store.get(0, state_key(0, "m0"))
    assert stored is not None and (stored[:1] == b"\x1e") is bool(more)
    assert counts.snapshot() == {
        ("ads", "c-ads", "0"): 6,
        ("mail", "c-mail", "0"): 6,
        **{("ads", c, "0"): 6 for c in more},
    }
    # A lost identity, an erasure and a left audience take profiles away; a sync adds some.
    erasure = {"type": "profile_erasure", "mpid": "m1", "timestamp_ms": 3, "request_id": "r1"}
    left = {"mpid": "m2", "audience_id": "aud-42", "action": "remove", "timestamp_ms": 4}
    lost_email = {"type": "profile_update", "timestamp_ms": 5, "identities": {"email": None}}
    new_idfa = {"type": "profile_update", "timestamp_ms": 5, "identities": {"ios_idfa": "n"}}
    await processed(
        processor,
        [
            record(PROFILES, "m0", {**lost_email, "mpid": "m0"}),
            record(PROFILES, "m3", {**new_idfa, "mpid": "m3"}),
            record(PROFILES, "m1", erasure),
            record(MEMBERSHIPS, "m2", left),
        ],
    )
    routing.put_output(resolve_output(output("push", ["ios_idfa"])))
    routing.put_connection(connection("c-push", "push"))
    config = {"topic": "forwarder-connections", "partition": 0, "offset": 0}
    request = {"kind": "connection", "id": "c-push", "config": config}
    await processed(processor, [record(SYNC, "c-push", request)])
    fresh = PartnerCounts()
    assert await reads.count_held(0, fresh)
    assert counts.snapshot() == fresh.snapshot()
    assert fresh.snapshot()[("push", "c-push", "0")] == 4
    assert fresh.snapshot()[("ads", "c-ads", "0")] == 4


def stored_counts(store: Store, partition: int) -> dict[tuple[str, str, str], int] | None:
    raw = store.get(partition, counts_key(partition))
    if raw is None:
        return None
    return {(o, c, str(partition)): n for (o, c), n in load_counts(raw).items()}


async def test_the_partner_counts_are_stored_with_the_states_and_a_new_owner_restores_them() -> (
    None
):
    routing = routing_of(
        [output("ads", ["ios_idfa"]), output("mail", ["email"])],
        [connection("c-ads", "ads"), connection("c-mail", "mail")],
    )
    processor, _, store = make(routing)
    reads = OperatorReads(routing, store, partitions=8, settled=lambda: True)
    assert await reads.count_held(0, processor.partner_counts)
    members = [f"m{n}" for n in range(5)]
    await processed(
        processor,
        [r for m in members for r in (profile(m, ios_idfa=m, email=f"{m}@x.io"), member(m))],
    )
    left = {"mpid": "m1", "audience_id": "aud-42", "action": "remove", "timestamp_ms": 4}
    await processed(processor, [record(MEMBERSHIPS, "m1", left)])
    expected = {("ads", "c-ads", "0"): 4, ("mail", "c-mail", "0"): 4}
    assert processor.partner_counts.snapshot() == stored_counts(store, 0) == expected
    # A profile update that changes no partner's holding leaves the stored counts alone.
    renamed = {"type": "profile_update", "mpid": "m2", "timestamp_ms": 5, "attributes": {"a": 1}}
    await processed(processor, [record(PROFILES, "m2", renamed)])
    assert counts_key(0) not in store.written[-1]
    # The partition's next owner (or this worker after a restart) reads them as they are.
    restored = PartnerCounts()
    restored.restore(0, store.get(0, counts_key(0)) or b"")
    fresh = PartnerCounts()
    assert await reads.count_held(0, fresh)
    assert restored.snapshot() == fresh.snapshot() == expected


async def test_a_change_written_before_the_partition_is_counted_is_not_missed_by_a_restore() -> (
    None
):
    """A restarted worker handles events before it counts its partitions: the counts stored by
    the worker before must not come back without those events' changes."""
    routing, before, _, store = await ads_members([])
    reads = OperatorReads(routing, store, partitions=8, settled=lambda: True)
    assert await reads.count_held(0, before.partner_counts)
    await processed(before, [r for m in ("m1", "m2") for r in (profile(m, ios_idfa=m), member(m))])
    assert stored_counts(store, 0) == {("ads", "c-ads", "0"): 2}
    restarted, _, _ = make(routing)
    restarted.store = store
    left = {"mpid": "m1", "audience_id": "aud-42", "action": "remove", "timestamp_ms": 4}
    await processed(restarted, [record(MEMBERSHIPS, "m1", left)])
    # What the restarted worker's count then reads: the stored counts, or, without them, the
    # state.
    count = PartnerCounts()
    stored = store.get(0, counts_key(0))
    if stored is not None:
        count.restore(0, stored)
    else:
        assert await reads.count_held(0, count)
    assert count.snapshot() == {("ads", "c-ads", "0"): 1}


async def test_counts_read_from_the_profiles_are_stored_by_the_next_batch_whatever_it_touches() -> (
    None
):
    routing, processor, _, store = await ads_members([f"m{n}" for n in range(3)])
    assert stored_counts(store, 0) is None  # not counted here yet: nothing to store
    reads = OperatorReads(routing, store, partitions=8, settled=lambda: True)
    assert await reads.count_held(0, processor.partner_counts)
    await processed(processor, [profile("other", partition=3, ios_idfa="X")])
    assert stored_counts(store, 0) == {("ads", "c-ads", "0"): 3}
    writes = store.writes
    await processed(processor, [profile("other", partition=3, ios_idfa="Y")])
    assert store.writes == writes + 1  # partition 3's state only: 0's counts are stored


async def test_a_partner_count_adds_the_writes_applied_while_it_reads_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(operator_reads, "COUNT_CHUNK", 5)  # many yields to the batches
    seeded = [f"m{n:04}" for n in range(300)]
    routing, processor, _, store = await ads_members(seeded)
    reads = OperatorReads(routing, store, partitions=8, settled=lambda: True)
    store.acknowledge.clear()
    left = {"audience_id": "aud-42", "action": "remove", "timestamp_ms": 4}
    await processor.process(
        [record(MEMBERSHIPS, m, {**left, "mpid": m}) for m in seeded[:10]]
        + [r for m in ("n1", "n2", "n3") for r in (profile(m, ios_idfa=m), member(m))]
    )
    counts = processor.partner_counts
    counting = asyncio.create_task(reads.count_held(0, counts))
    await asyncio.sleep(0)  # the count reads from a snapshot without the batch's writes
    store.acknowledge.set()
    await processor.settle()  # the batch's writes are applied while the count reads on
    assert not counting.done()
    assert await counting
    fresh = PartnerCounts()
    assert await reads.count_held(0, fresh)
    assert counts.snapshot() == fresh.snapshot() == {("ads", "c-ads", "0"): 300 - 10 + 3}


async def test_a_partner_count_that_a_rebalance_interrupts_keeps_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(operator_reads, "COUNT_CHUNK", 5)
    routing, processor, _, store = await ads_members([f"m{n:04}" for n in range(100)])
    settled = True
    reads = OperatorReads(routing, store, partitions=8, settled=lambda: settled)
    counts = processor.partner_counts
    counting = asyncio.create_task(reads.count_held(0, counts))
    await asyncio.sleep(0)
    settled = False  # a rebalance starts: another worker may write the partition
    assert not await counting
    assert not counts.known(0) and counts.snapshot() == {}
