"""Offsets are committed only once a batch's state writes are acknowledged: the writes are
pipelined (the next batch runs while Kafka acknowledges them), and a commit in between would
let a crash skip a batch whose state was never written."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from devtools.local import BOOTSTRAP, Worker, committed_offsets_async, consume, produce
from tests.streams.test_forwarding_kafka import configure, connect, custom_output, member, profile

INPUTS = ("profile-updates", "audience-memberships")


async def _topic_configs(topic: str, configs: dict[str, str] | None = None) -> dict[str, str]:
    """The configs set on a topic; with ``configs``, replaced by exactly those first."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        if configs is not None:
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
        [described] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)]
        )
        # (name, value, read_only, source, sensitive, synonyms); source 1: set on the topic
        return {entry[0]: entry[1] for entry in described.resources[0][4] if entry[3] == 1}
    finally:
        await admin.close()


def _committed(worker: Worker) -> int:
    """The sum of the group's committed input offsets (partitions never committed count 0)."""
    topics = [worker.topic(name) for name in INPUTS]
    offsets = asyncio.run(committed_offsets_async(worker.prefix + worker.app_id, topics))
    return sum(max(0, offset) for offset in offsets.values())


def _wait_committed(worker: Worker, total: int, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while (committed := _committed(worker)) < total:
        assert time.monotonic() < deadline, f"committed {committed} of {total}"
        time.sleep(0.5)


def test_a_batch_whose_state_write_fails_is_not_committed_and_is_sent_again(
    tmp_path: Path,
) -> None:
    name = f"cw-{uuid.uuid4().hex[:8]}"
    env = {"FORWARDER_STORE": "rocksdb"}
    # One partition: the updates below arrive in one fetch, so no later batch of this worker
    # notices the failed write before a commit interval (2.8 s) has passed: only a commit that
    # waits for the state writes in flight does.
    worker = Worker(
        prefix=name + ".", app_id=name, data_dir=tmp_path / "data", partitions=1, extra_env=env
    )
    changelog = worker.topic(f"{name}-profiles-changelog")
    mpids = [f"p{n}" for n in range(20)]
    worker.start()
    try:
        configure(worker, [custom_output("out", ["email"])], [connect("c", "aud", "out")])
        produce(worker.topic("audience-memberships"), [(m, member(m, "aud")) for m in mpids])
        _wait_committed(worker, len(mpids))

        # Every changelog write now fails (its records are larger than the topic takes), while
        # the outbound records still go out.
        before = asyncio.run(_topic_configs(changelog))
        asyncio.run(_topic_configs(changelog, {**before, "max.message.bytes": "100"}))
        produce(
            worker.topic("profile-updates"),
            [(m, profile(m, {"email": f"{m}@x.io"})) for m in mpids],
        )
        consume(worker.topic("forward-out"), expected=len(mpids))
        assert worker.process is not None
        assert worker.process.wait(timeout=30) == 1, worker.log_tail()
        assert "processing failed" in worker.log_tail()
        assert _committed(worker) == len(mpids)  # not the updates
    finally:
        worker.stop()

    asyncio.run(_topic_configs(changelog, before))
    worker.start()
    try:
        again = consume(worker.topic("forward-out"), expected=2 * len(mpids), settle=3)
        # The new run sent every add of the uncommitted batch again, under the same ids.
        sent: defaultdict[str, list[str]] = defaultdict(list)
        for _, value, _ in again:
            sent[value["mpid"]].append(value["record_id"])
        assert sorted(sent) == sorted(mpids)
        assert all(len(ids) == 2 and ids[0] == ids[1] for ids in sent.values()), sent
        _wait_committed(worker, 2 * len(mpids))
    finally:
        worker.stop()
