"""What every scenario shares: fast preloading, timing output arrivals, processes under test.

Throughput is timed from the outside: a consumer in this process reads the output topics and
notes when the first and the last expected record arrive. The same clock and the same method
serve the forwarder and the baselines, so their ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from core.kafka_admin import topic_partitions
from devtools.local import BOOTSTRAP, REPO, create_topics_async

# (partition, key, value): preloaded records name their partition, so that a profile's records
# share one partition on both input topics (co-partitioning is all the worker relies on).
Record = tuple[int, bytes, bytes]


class ScenarioError(RuntimeError):
    """A scenario that could not produce a trustworthy figure (wrong counts, a stalled worker)."""


@dataclass
class Throughput:
    """Records through one consumer under test, timed from its first to its last output."""

    name: str
    events: int
    outbound: int
    seconds: float
    events_per_s: float = 0.0
    outbound_per_s: float = 0.0

    def __post_init__(self) -> None:
        self.events_per_s = self.events / self.seconds if self.seconds > 0 else 0.0
        self.outbound_per_s = self.outbound / self.seconds if self.seconds > 0 else 0.0


async def create_topics(names: list[str], partitions: int) -> None:
    await create_topics_async(names, partitions=partitions)


async def preload(topic: str, records: Iterable[Record]) -> int:
    """Write records with whole batches per partition (no per-record send): the input is
    written before the consumer under test starts, so the preload speed is off the clock."""
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, acks="all", max_batch_size=512 * 1024, request_timeout_ms=60000
    )
    await producer.start()
    count = 0
    try:
        batches: dict[int, Any] = {}  # partition -> aiokafka BatchBuilder
        pending: list[asyncio.Future[object]] = []
        for partition, key, value in records:
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:
                pending.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[partition] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            count += 1
        for partition, batch in batches.items():
            if batch.record_count():
                pending.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


@dataclass
class Arrivals:
    """What a watched set of topics received, and when (time.monotonic, wall ms for latency)."""

    counts: dict[str, int] = field(default_factory=dict)
    first: float | None = None
    last: float | None = None
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def seconds(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last is not None else 0.0


class Watch:
    """Reads topics from their start and notes arrivals until an expected count is reached.

    Started before the process under test so that arrival times are read live, not in bulk.
    """

    def __init__(
        self, topics: list[str], expected: int, *, latency: bool = False, from_end: bool = False
    ) -> None:
        self.topics = topics
        self.expected = expected
        self.latency = latency
        self.from_end = from_end
        self.arrivals = Arrivals(counts=dict.fromkeys(topics, 0))
        self.ready = asyncio.Event()
        self._task: asyncio.Task[Arrivals] | None = None

    async def start(self, first_within: float, idle_within: float, settle: float = 1.0) -> None:
        self._task = asyncio.create_task(self._run(first_within, idle_within, settle))
        ready = asyncio.create_task(self.ready.wait())
        await asyncio.wait([self._task, ready], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            self._task.result()  # raises what went wrong

    async def result(self) -> Arrivals:
        assert self._task is not None
        return await self._task

    async def _run(self, first_within: float, idle_within: float, settle: float) -> Arrivals:
        """Stops ``settle`` s after the expected count (to catch extras), after ``first_within``
        s without any record, or after ``idle_within`` s without a new one."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=BOOTSTRAP,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        arrivals = self.arrivals
        try:
            partitions = await topic_partitions({"bootstrap_servers": BOOTSTRAP}, self.topics)
            while partitions is None:  # created a moment ago: leaders not elected yet
                await asyncio.sleep(0.2)
                partitions = await topic_partitions({"bootstrap_servers": BOOTSTRAP}, self.topics)
            consumer.assign(partitions)
            if self.from_end:
                await consumer.seek_to_end(*partitions)
            else:
                await consumer.seek_to_beginning(*partitions)
            for tp in partitions:
                await consumer.position(tp)
            self.ready.set()
            started = time.monotonic()
            settle_until: float | None = None
            while True:
                batches = await consumer.getmany(timeout_ms=50, max_records=20000)
                now = time.monotonic()
                if batches:
                    wall_ms = time.time() * 1000
                    if arrivals.first is None:
                        arrivals.first = now
                    arrivals.last = now
                    for tp, messages in batches.items():
                        arrivals.counts[tp.topic] += len(messages)
                        if self.latency:
                            arrivals.latencies_ms.extend(
                                wall_ms - orjson.loads(m.value)["timestamp_ms"] for m in messages
                            )
                if settle_until is None and arrivals.total >= self.expected:
                    settle_until = now + settle
                if settle_until is not None and now >= settle_until:
                    return arrivals
                if arrivals.last is None and now - started > first_within:
                    return arrivals
                if arrivals.last is not None and now - arrivals.last > idle_within:
                    return arrivals
        finally:
            await consumer.stop()


def check_counts(arrivals: Arrivals, expected: dict[str, int], what: str) -> None:
    """Fail loudly when an output topic got more or fewer records than the scenario implies."""
    wrong = {
        topic: (arrivals.counts.get(topic, 0), want)
        for topic, want in expected.items()
        if arrivals.counts.get(topic, 0) != want
    }
    if wrong:
        detail = ", ".join(
            f"{topic}: got {got}, expected {want}" for topic, (got, want) in wrong.items()
        )
        raise ScenarioError(f"{what}: wrong outbound counts ({detail})")


class Subprocess:
    """A process under test other than the forwarder worker: `python -m <module> <args>`."""

    def __init__(self, module: str, args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self.module = module
        log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            raise ScenarioError(f"{self.module} exited {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (VmRSS is in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ScenarioError(f"no VmRSS for pid {pid}")


async def delete_topics(prefix: str) -> None:
    """Drop every topic of a run: a full run writes about a gigabyte to the local broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
