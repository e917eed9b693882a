"""Forwarder workers for the scenarios: topics, config and `forwarder worker` processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import data
from benchmarks.harness import (
    CpuSampler,
    ScenarioError,
    all_partitions,
    create_topics,
    memory_bytes,
)
from benchmarks.profiling import Profile, Profiler
from core.settings import Settings
from devtools.local import Worker, produce_async
from schemas import topics

# The worker's default: what users run.
PARTITIONS: int = Settings.model_fields["input_partitions"].default
SYNC_SETTLE_S = 3


def worker(
    run_dir: Path,
    app_id: str,
    *,
    store: str,
    partitions: int = PARTITIONS,
    data_dir: Path | None = None,
) -> Worker:
    """A worker on the topics ``<app_id>.*`` (not started)."""
    return Worker(
        prefix=f"{app_id}.",
        app_id=app_id,
        data_dir=data_dir or run_dir / app_id,
        partitions=partitions,
        extra_env={"FORWARDER_STORE": store},
    )


def input_topics(worker: Worker) -> list[str]:
    return [worker.topic(topics.PROFILE_UPDATES), worker.topic(topics.AUDIENCE_MEMBERSHIPS)]


def outbound_topics(worker: Worker, output_ids: Sequence[str]) -> list[str]:
    return [worker.topic(topics.outbound(output_id)) for output_id in output_ids]


async def prepare(
    worker: Worker,
    outputs: dict[str, str],
    connections: Sequence[tuple[str, str]],
) -> None:
    """Create the worker's topics and publish its config before it starts.

    The local broker does not auto-create topics; outbound topics are created here too, so that
    a watch can be positioned on them before the first record is forwarded.
    """
    partitioned = [*input_topics(worker), *outbound_topics(worker, list(outputs))]
    await create_topics(partitioned, partitions=worker.partitions)
    config = [worker.topic(topics.OUTPUTS), worker.topic(topics.CONNECTIONS)]
    await create_topics(config, 1)
    await all_partitions([*partitioned, *config])  # produced to at once
    await produce_async(
        worker.topic(topics.OUTPUTS),
        [(output_id, data.output(output_id, kind)) for output_id, kind in outputs.items()],
    )
    await connect(worker, connections)


async def connect(worker: Worker, connections: Sequence[tuple[str, str]]) -> None:
    """Active connections, as (audience_id, output_id) pairs."""
    await produce_async(
        worker.topic(topics.CONNECTIONS),
        [
            (
                data.connection_id(audience, output_id),
                data.connection(data.connection_id(audience, output_id), audience, output_id),
            )
            for audience, output_id in connections
        ],
    )


@dataclass
class Ready:
    """A worker's start: process start to /healthz ready, the CPU it took, its memory then."""

    seconds: float
    cpu_seconds: float
    rss_bytes: int
    profile: Profile | None = None


class Running:
    """A worker process spawned now, its CPU sampled from that moment; optionally profiled."""

    def __init__(self, worker: Worker, profile_to: Path | None = None) -> None:
        self.worker = worker
        self.spawned = time.monotonic()
        worker.launch()
        assert worker.process is not None
        self.pid = worker.process.pid
        self.cpu = CpuSampler(self.pid)
        self.profiler = Profiler(self.pid, profile_to) if profile_to else None

    async def ready(self, within: float) -> Ready:
        await asyncio.to_thread(self.worker.wait_ready, within)
        now = time.monotonic()
        return Ready(now - self.spawned, self.cpu.between(self.spawned, now), self.rss_bytes())

    def check_alive(self) -> None:
        process = self.worker.process
        if process is not None and process.poll() is not None:
            tail = self.worker.log_tail(30)
            raise ScenarioError(f"worker exited {process.returncode}:\n{tail}")

    def profile(self, to: Path) -> None:
        self.profiler = Profiler(self.pid, to)

    def end_profile(self) -> Profile | None:
        profile = self.profiler.stop() if self.profiler else None
        self.profiler = None
        return profile

    def rss_bytes(self) -> int:
        return memory_bytes(self.pid)

    def peak_rss_bytes(self) -> int:
        return memory_bytes(self.pid, "VmHWM")

    def stop(self) -> None:
        self.cpu.stop()
        self.end_profile()
        self.worker.stop()


async def warm_up(worker: Worker) -> None:
    """Start and stop the worker once before a measured run on the same app id.

    Every config record makes the worker sync each partition; served here on an empty table,
    so that the measured run sees only its input (the group's committed offsets skip them).
    """
    await asyncio.to_thread(worker.start)
    try:
        await asyncio.sleep(SYNC_SETTLE_S)
    finally:
        worker.stop()


async def settle(workers: list[Worker]) -> None:
    """Wait out the sync requests of the config and, with several workers, the rebalance a
    joining worker causes in the others a moment after it is ready."""
    await asyncio.sleep(SYNC_SETTLE_S)
    for running in workers:
        await asyncio.to_thread(running.wait_ready, 120)
