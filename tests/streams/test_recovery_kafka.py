"""The worker's table survives a restart: its state is read back from the changelog."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from devtools.local import Worker, consume, create_topics_async, end_offsets_async, produce
from tests.streams.test_forwarding_kafka import configure, connect, custom_output, member, profile


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_profile_state_is_recovered_from_the_changelog_after_a_restart(
    tmp_path: Path, store: str
) -> None:
    name = f"rec-{uuid.uuid4().hex[:8]}"
    env = {"FORWARDER_STORE": store}
    first = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / "first", extra_env=env)
    first.start()
    try:
        audience, out = "aud-r", "out-r"
        configure(first, [custom_output(out, ["email"])], [connect("c-r", audience, out)])
        produce(first.topic("profile-updates"), [("p1", profile("p1", {"email": "a@x.com"}))])
        produce(first.topic("audience-memberships"), [("p1", member("p1", audience))])
        assert len(consume(first.topic(f"forward-{out}"), expected=1)) == 1
    finally:
        first.stop()

    # A new process with an empty local store: everything it knows comes from Kafka.
    second = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / "second", extra_env=env)
    second.start()
    try:
        # The first worker counted its partitions at start (not an interval later) and its
        # batches stored the counts: the new one publishes them from the table at once, well
        # before the default 60 s interval.
        second.wait_for(
            lambda: (
                second.metric("forwarder_partner_profiles", output_id=out, connection_id="c-r") == 1
            ),
            timeout=20,
        )
        # Already sent: a repeated add changes nothing.
        produce(second.topic("audience-memberships"), [("p1", member("p1", audience))])
        # A new connection's initial sync reads the recovered profile from the store.
        configure(
            second, [custom_output("out-r2", ["email"])], [connect("c-r2", audience, "out-r2")]
        )
        assert len(consume(second.topic("forward-out-r2"), expected=1)) == 1
        # The erasure removes what both outputs were sent, known from before the restart.
        erasure = {"type": "profile_erasure", "mpid": "p1", "request_id": "r", "timestamp_ms": 1}
        produce(second.topic("profile-updates"), [("p1", erasure)])
        email = [{"type": "email", "value": "a@x.com", "encoding": "raw"}]
        for topic in (f"forward-{out}", "forward-out-r2"):
            records = consume(second.topic(topic), expected=2, settle=2)
            assert [(v["action"], v["identities"]) for _, v, _ in records] == [
                ("add", email),
                ("remove", email),
            ]
    finally:
        second.stop()


def test_a_worker_refuses_to_start_on_inputs_with_another_partition_count(tmp_path: Path) -> None:
    name = f"parts-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topics_async([f"{name}.profile-updates"], partitions=3))
    worker = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path, partitions=2)
    with pytest.raises(AssertionError, match="exited"):
        worker.start(timeout=60)
    assert f"topic {name}.profile-updates has 3 partitions, the settings want 2" in (
        worker.log_tail()
    )


@pytest.mark.parametrize(
    ("store", "restart"),
    [("memory", "empty data dir"), ("rocksdb", "empty data dir"), ("rocksdb", "killed")],
)
def test_many_profiles_come_back_with_their_latest_state(
    tmp_path: Path, store: str, restart: str
) -> None:
    """Each profile's changelog holds several versions, spread over many fetched batches: a new
    worker must end with every profile and with the last version of each. Killed (SIGKILL) and
    restarted on its data dir, a RocksDB worker has lost what its memtables held (its writes
    skip the write-ahead log): the changelog from the last persisted offset brings it back."""
    name = f"recn-{uuid.uuid4().hex[:8]}"
    env = {"FORWARDER_STORE": store}
    count, audience = 3_000, "aud-n"
    first = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / "first", extra_env=env)
    first.start()
    try:
        configure(first, [custom_output("out-n", ["email"])], [connect("c-n", audience, "out-n")])
        updates, forwarded = first.topic("profile-updates"), first.topic("forward-out-n")
        produce(
            updates, [(f"p{i}", profile(f"p{i}", {"email": f"old{i}@x.com"})) for i in range(count)]
        )
        members = [(f"p{i}", member(f"p{i}", audience)) for i in range(count)]
        produce(first.topic("audience-memberships"), members)
        consume(forwarded, expected=count, timeout=120)  # each profile's add
        produce(
            updates,
            [
                (f"p{i}", profile(f"p{i}", {"email": f"new{i}@x.com"}, timestamp_ms=1764400000001))
                for i in range(count)
            ],
        )
        consume(forwarded, expected=3 * count, timeout=120)  # and its email's remove and add
    finally:
        first.stop(kill=restart == "killed")

    data_dir = tmp_path / ("first" if restart == "killed" else "second")
    second = Worker(prefix=name + ".", app_id=name, data_dir=data_dir, extra_env=env)
    second.start(timeout=120)
    try:
        configure(
            second,
            [custom_output("out-n2", ["email"])],
            [connect("c-n2", audience, "out-n2")],
        )
        synced = consume(second.topic("forward-out-n2"), expected=count, timeout=120, settle=2)
        emails = {value["mpid"]: value["identities"][0]["value"] for _, value, _ in synced}
        assert emails == {f"p{i}": f"new{i}@x.com" for i in range(count)}
    finally:
        second.stop()


def test_a_sync_killed_midway_reaches_every_member_after_a_restart(tmp_path: Path) -> None:
    """A sync's chunks go out before the chunks ahead of them are acknowledged: a worker killed
    (SIGKILL) in the middle of a sync has sent records whose states it never wrote. Restarted on
    its data dir, it reads the sync request again and must reach every member, a member sent
    twice under one record_id."""
    name = f"recs-{uuid.uuid4().hex[:8]}"
    count, audience = 40_000, "aud-s"
    worker = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / "w", partitions=4)
    worker.start()
    try:
        configure(worker, [custom_output("out-a", ["email"])], [connect("c-a", audience, "out-a")])
        mpids = [f"s{i}" for i in range(count)]
        produce(
            worker.topic("profile-updates"),
            [(m, profile(m, {"email": f"{m}@x.com", "ios_idfa": f"IDFA-{m}"})) for m in mpids],
        )
        produce(worker.topic("audience-memberships"), [(m, member(m, audience)) for m in mpids])
        consume(worker.topic("forward-out-a"), expected=count, timeout=120, settle=0)

        late = worker.topic("forward-out-b")
        output = custom_output("out-b", ["ios_idfa"])
        produce(worker.topic("forwarder-outputs"), [("out-b", output)])
        produce(worker.topic("forwarder-connections"), [("c-b", connect("c-b", audience, "out-b"))])
        consume(late, expected=2_000, timeout=120, settle=0)
        worker.kill()
        sent = sum(asyncio.run(end_offsets_async([late])).values())
        assert sent < count, "the kill came after the sync: nothing left to test"

        worker.start(timeout=120)
        records = consume(late, expected=count, timeout=120, settle=2)
        ids: dict[str, set[str]] = {}
        for _, value, _ in records:
            assert value["action"] == "add"
            ids.setdefault(value["mpid"], set()).add(value["record_id"])
        assert set(ids) == set(mpids), "every member reached the new output"
        assert all(len(found) == 1 for found in ids.values()), "a member sent twice, one id"
    finally:
        worker.stop()


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_marked_sync_is_recovered_from_the_changelog(tmp_path: Path, store: str) -> None:
    """A sync leaves its members' states to its mark (streams/sync_marks.py): a new worker
    with an empty data dir reads the mark from the changelog, so it knows what the sync sent
    and removes it when a member leaves, and counts it."""
    name = f"recm-{uuid.uuid4().hex[:8]}"
    # The counts are published every second, not every minute.
    env = {"FORWARDER_STORE": store, "FORWARDER_PARTNER_COUNT_INTERVAL_S": "1"}
    mpids, audience = ["q1", "q2", "q3"], "aud-m"
    first = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / "first", extra_env=env)
    first.start()
    try:
        configure(first, [custom_output("out-a", ["email"])], [connect("c-a", audience, "out-a")])
        produce(
            first.topic("profile-updates"),
            [(m, profile(m, {"email": f"{m}@x.com"})) for m in mpids],
        )
        produce(first.topic("audience-memberships"), [(m, member(m, audience)) for m in mpids])
        consume(first.topic("forward-out-a"), expected=len(mpids))
        configure(first, [custom_output("out-b", ["email"])], [connect("c-b", audience, "out-b")])
        consume(first.topic("forward-out-b"), expected=len(mpids))
    finally:
        first.stop()

    second = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / "second", extra_env=env)
    second.start()
    try:
        leaving = member("q2", audience, action="remove", ts=1764400000001)
        produce(second.topic("audience-memberships"), [("q2", leaving)])
        records = consume(second.topic("forward-out-b"), expected=len(mpids) + 1, settle=2)
        removes = [(v["mpid"], v["identities"]) for _, v, _ in records if v["action"] == "remove"]
        assert removes == [("q2", [{"type": "email", "value": "q2@x.com", "encoding": "raw"}])]
        second.wait_for(
            lambda: (
                second.metric("forwarder_partner_profiles", output_id="out-b", connection_id="c-b")
                == len(mpids) - 1
            ),
            timeout=20,
        )
    finally:
        second.stop()
