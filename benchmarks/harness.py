"""What every scenario shares: fast preloading, timing output arrivals, CPU of processes.

Throughput is timed from the outside: a consumer in this process reads the output topics and
notes when the first and the last expected record arrive. The same clock and the same method
serve the forwarder and the baselines, so their ratios compare like with like. Beside every
rate goes the CPU time the process under test spent in the same interval (user + system, all
threads, from /proc/<pid>/stat): on a shared machine a rate drifts with the neighbours' load,
CPU per event much less.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from core.kafka_admin import topic_partitions
from devtools.local import BOOTSTRAP, REPO, create_topics_async

# (partition, key, value): preloaded records name their partition, so that a profile's records
# share one partition on both input topics (co-partitioning is all the worker relies on).
Record = tuple[int, bytes, bytes]

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ScenarioError(RuntimeError):
    """A scenario that could not produce a trustworthy figure (wrong counts, a stalled worker)."""


@dataclass
class Throughput:
    """Records through one consumer under test, timed from its first to its last output, and
    the CPU its process spent in that interval."""

    name: str
    events: int
    outbound: int
    seconds: float
    cpu_seconds: float
    events_per_s: float = 0.0
    outbound_per_s: float = 0.0
    cpu_us_per_event: float = 0.0
    # CPU seconds per second: 1.0 is one core busy all the time (below it, the process waited
    # for Kafka or for a core)
    cores: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds > 0:
            self.events_per_s = self.events / self.seconds
            self.outbound_per_s = self.outbound / self.seconds
            self.cores = self.cpu_seconds / self.seconds
        if self.events:
            self.cpu_us_per_event = self.cpu_seconds / self.events * 1e6


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (utime and stime of
    /proc/<pid>/stat, fields 14 and 15, in clock ticks)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class CpuSampler:
    """Samples a process's CPU time every 50 ms from its start, so that the CPU of any interval
    found afterwards (first to last output record) can be read off the samples."""

    def __init__(self, pid: int, every: float = 0.05) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (time.monotonic(), CPU seconds)
        self._task = asyncio.create_task(self._run(every))

    async def _run(self, every: float) -> None:
        while True:
            if not self._sample():
                return
            await asyncio.sleep(every)

    def _sample(self) -> bool:
        try:
            self.samples.append((time.monotonic(), cpu_seconds(self.pid)))
        except (FileNotFoundError, ProcessLookupError):
            return False  # the process is gone
        return True

    def stop(self) -> None:
        """Call before stopping the process: its shutdown is not part of any interval."""
        self._task.cancel()
        self._sample()

    def at(self, moment: float) -> float:
        """CPU seconds at ``moment``, interpolated between the samples around it."""
        if not self.samples:
            raise ScenarioError(f"no CPU sample of pid {self.pid}")
        before = self.samples[0]
        for sample in self.samples:
            if sample[0] >= moment:
                if sample[0] == before[0]:
                    return sample[1]
                share = (moment - before[0]) / (sample[0] - before[0])
                return before[1] + share * (sample[1] - before[1])
            before = sample
        return before[1]

    def between(self, start: float, end: float) -> float:
        return self.at(end) - self.at(start)


async def create_topics(names: list[str], partitions: int) -> None:
    await create_topics_async(names, partitions=partitions)


async def preload(topic: str, records: Iterable[Record]) -> int:
    """Write records in whole batches per partition (no per-record send): the input is
    written before the consumer under test starts, so the preload speed is off the clock."""
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        max_batch_size=1024 * 1024,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=120_000,
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
        self, topics: list[str], expected: int, *, latency_warm_up_s: float | None = None
    ) -> None:
        """With ``latency_warm_up_s``, each record's latency is noted, except for the records
        produced within that long of the first one (counted, but not in the latencies)."""
        self.topics = topics
        self.expected = expected
        self.latency = latency_warm_up_s is not None
        self._warm_up_ms = (latency_warm_up_s or 0.0) * 1000
        self._latency_from_ms: float | None = None
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

    def timed(
        self, name: str, events: int, cpu: CpuSampler, since: float | None = None
    ) -> Throughput:
        """The throughput of what arrived: from the first arrival (or ``since``) to the last."""
        arrivals = self.arrivals
        if arrivals.first is None or arrivals.last is None:
            raise ScenarioError(f"{name}: nothing arrived")
        start = arrivals.first if since is None else since
        return Throughput(
            name, events, arrivals.total, arrivals.last - start, cpu.between(start, arrivals.last)
        )

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
            partitions = await all_partitions(self.topics)
            consumer.assign(partitions)
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
                            stamps = [orjson.loads(m.value)["timestamp_ms"] for m in messages]
                            if self._latency_from_ms is None:
                                self._latency_from_ms = min(stamps) + self._warm_up_ms
                            arrivals.latencies_ms.extend(
                                wall_ms - stamp
                                for stamp in stamps
                                if stamp >= self._latency_from_ms
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


async def all_partitions(names: list[str], within: float = 60) -> list[TopicPartition]:
    """Every partition of the named topics. A topic created a moment ago may be unknown to
    the broker that answers, or have no leader yet: both are waited out, not skipped."""
    deadline = time.monotonic() + within
    while True:
        found = await topic_partitions({"bootstrap_servers": BOOTSTRAP}, names)
        if found is not None and {tp.topic for tp in found} == set(names):
            return found
        if time.monotonic() > deadline:
            raise ScenarioError(f"topics without partitions after {within:.0f} s: {names}")
        await asyncio.sleep(0.2)


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


async def end_offsets(names: list[str]) -> int:
    """Records ever written to the topics (the sum of their partitions' end offsets)."""
    partitions = await all_partitions(names)
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(list(partitions))
    finally:
        await consumer.stop()
    return sum(ends.values())


async def topic_names(prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return [name for name in await admin.list_topics() if name.startswith(prefix)]
    finally:
        await admin.close()


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


def memory_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process from /proc (kB there): VmRSS now, VmHWM its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise ScenarioError(f"no {field} for pid {pid}")


async def delete_topics(prefix: str) -> None:
    """Drop every topic of a run: a full run writes gigabytes to the local broker."""
    names = await topic_names(prefix)
    if not names:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()
