"""Helpers of the sink tests: topics, an in-process runner, and the checks every test makes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core.kafka_admin import topic_partitions
from core.settings import Settings
from devtools.local import (
    BOOTSTRAP,
    REPO,
    consume_async,
    create_topics_async,
    free_port,
    produce_async,
)
from sinks.runner import SinkRunner, SinkSettings

FAST = {  # retry and batch timings that keep the tests short
    "request_timeout_s": 0.5,
    "retry_initial_s": 0.05,
    "retry_max_s": 0.2,
    "batch_linger_ms": 50,
}


def settings_for(prefix: str) -> Settings:
    return Settings(kafka_bootstrap=BOOTSTRAP, topic_prefix=prefix, app_id=f"{prefix}app")


async def configure(
    prefix: str,
    outputs: list[dict[str, Any]],
    records: Mapping[str, list[dict[str, Any]]],
    partitions: int = 2,
) -> None:
    """Create the topics, publish the outputs and each output's records (keyed by mpid)."""
    await create_topics_async(
        [f"{prefix}forwarder-outputs", f"{prefix}forwarder-dead-letters"]
        + [f"{prefix}forward-{output['output_id']}" for output in outputs],
        partitions=partitions,
    )
    await produce_async(
        f"{prefix}forwarder-outputs", [(output["output_id"], output) for output in outputs]
    )
    for output_id, values in records.items():
        await produce_async(f"{prefix}forward-{output_id}", [(v["mpid"], v) for v in values])


@contextlib.asynccontextmanager
async def running_sinks(
    prefix: str, output_ids: list[str], environ: Mapping[str, str], **sink_settings: Any
) -> AsyncIterator[SinkRunner]:
    runner = SinkRunner(
        settings_for(prefix),
        SinkSettings(web_port=free_port(), config_timeout_s=20, **sink_settings),
        output_ids,
        environ,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    deadline = time.monotonic() + 20
    while not runner.ready:
        if task.done():
            task.result()
        assert time.monotonic() < deadline, "sink runner not ready"
        await asyncio.sleep(0.05)
    try:
        yield runner
    finally:
        stop.set()
        await task


async def wait_processed(prefix: str, output_id: str, within_s: float = 40) -> None:
    """Until the sink committed every record of the output's topic (delivered or dead-lettered)."""
    topic = f"{prefix}forward-{output_id}"
    group = f"{settings_for(prefix).group_id}-sink-{output_id}"
    options = {"bootstrap_servers": BOOTSTRAP}
    partitions = None
    for _ in range(100):  # a new topic's partitions have a leader within seconds
        partitions = await topic_partitions(options, [topic])
        if partitions is not None:
            break
        await asyncio.sleep(0.2)
    assert partitions is not None, f"{topic} has partitions without a leader"
    probe = AIOKafkaConsumer(**options)
    admin = AIOKafkaAdminClient(**options)
    await probe.start()
    await admin.start()
    try:
        ends = await probe.end_offsets(partitions)
        deadline = time.monotonic() + within_s
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            if all(tp in committed and committed[tp].offset >= end for tp, end in ends.items()):
                return
            assert time.monotonic() < deadline, f"{output_id}: committed {committed}, end {ends}"
            await asyncio.sleep(0.2)
    finally:
        await probe.stop()
        await admin.close()


async def scrape(port: int, path: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return await response.text()


async def dead_letters(prefix: str, expected: int) -> list[dict[str, Any]]:
    found = await consume_async(f"{prefix}forwarder-dead-letters", expected, 20, 0.5)
    return [value for _, value, _ in found]


def check_order(sent: list[tuple[str, str, str]], applied: list[tuple[str, str]]) -> None:
    """Per profile, what the partner applied follows the topic order: first applications in
    order, and the last thing applied is the profile's last record that was not refused.

    ``sent``: (profile, key, action) in topic order; ``applied``: (key, action) as applied.
    """
    profile_of = {key: profile for profile, key, _ in sent}
    position = {(key, action): i for i, (_, key, action) in enumerate(sent)}
    firsts: dict[str, list[int]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    last: dict[str, tuple[str, str]] = {}
    for key, action in applied:
        profile = profile_of[key]
        if (key, action) not in seen:
            seen.add((key, action))
            firsts[profile].append(position[(key, action)])
        last[profile] = (key, action)
    for profile, positions in firsts.items():
        assert positions == sorted(positions), f"{profile}: applied out of order {positions}"
    for profile, (key, action) in last.items():
        expected = max(
            (i, k, a) for i, (p, k, a) in enumerate(sent) if p == profile and (k, a) in seen
        )
        assert (key, action) == expected[1:], f"{profile}: ends on {action}, not {expected[2]}"


async def start_sink_process(
    prefix: str, output_id: str, port: int, log: Path, environ: Mapping[str, str]
) -> asyncio.subprocess.Process:
    """A real `forwarder sink` process, its output appended to ``log``."""
    env = {
        **os.environ,
        "FORWARDER_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "FORWARDER_TOPIC_PREFIX": prefix,
        "FORWARDER_APP_ID": f"{prefix}app",
        "FORWARDER_SINK_WEB_PORT": str(port),
        "FORWARDER_LOG_LEVEL": "info",
        **environ,
    }
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "forwarder.cli", "sink", "--output", output_id,
            env=env, cwd=REPO, stdout=out, stderr=out,
        )  # fmt: skip


async def health(port: int) -> tuple[int, dict[str, Any]]:
    """/healthz of the sink runner on ``port``: status and body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as response,
    ):
        return response.status, orjson.loads(await response.read())


class TrackedTopic:
    """Produces records to a topic and remembers where each landed: (partition, offset) ->
    record_id, so that committed offsets can be checked against what the partner received."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks="all")
        self.at: dict[tuple[int, int], str] = {}

    async def __aenter__(self) -> TrackedTopic:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def produce(self, values: list[dict[str, Any]]) -> None:
        futures = [
            await self.producer.send(self.topic, key=v["mpid"].encode(), value=orjson.dumps(v))
            for v in values
        ]
        for value, metadata in zip(values, await asyncio.gather(*futures), strict=True):
            self.at[(metadata.partition, metadata.offset)] = value["record_id"]


class CommitAudit:
    """Checks, while the sinks run, that every committed offset covers delivered records only:
    the committed offsets are read first, what the partner applied after, so a record below a
    committed offset and not applied was committed before its delivery."""

    def __init__(self, group: str, tracked: TrackedTopic, delivered: Callable[[], set[str]]):
        self.group = group
        self.tracked = tracked
        self.delivered = delivered
        self.undelivered_committed: set[str] = set()
        self.checks = 0

    async def check(self, admin: AIOKafkaAdminClient) -> None:
        committed: dict[TopicPartition, Any] = await admin.list_consumer_group_offsets(self.group)
        ends = {tp.partition: meta.offset for tp, meta in committed.items()}
        delivered = self.delivered()
        self.undelivered_committed |= {
            record_id
            for (partition, offset), record_id in list(self.tracked.at.items())
            if offset < ends.get(partition, 0) and record_id not in delivered
        }
        self.checks += 1

    async def run(self, every_s: float = 0.5) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        try:
            while True:
                await self.check(admin)
                await asyncio.sleep(every_s)
        finally:
            await admin.close()
