"""A million profiles on the RocksDB store: load, memory, restart, recovery, initial sync.

Everything is measured at the full count, nothing extrapolated:

1. Load: 1,000,000 profiles (a profile update and a membership add each, 2,000,000 input
   events) go through a worker with an empty data dir, as users' producers would send them,
   into an audience connected to 3 outputs (3,000,000 adds). Timed from the worker's readiness
   until the last add is in Kafka.
2. Memory: RSS once loaded; the goal takes the highest peak (VmHWM) of the processes that held
   the million profiles.
3. Restart on the surviving data dir: the same worker stopped and started again; ready is
   process start to /healthz ready.
4. Recovery from an empty data dir: a worker on a new data dir rebuilds the table from the
   changelog.
5. Initial sync: a 4th output connected to the audience all these profiles are members of;
   timed from the connection record's publish to the last add's arrival, every member checked.

After each start, 100 profiles get a membership remove older than their held membership: each
must be dropped as stale (the worker's metrics count them), which shows the profiles are there.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import data, deploy
from benchmarks.harness import (
    ScenarioError,
    Throughput,
    Watch,
    check_counts,
    end_offsets,
    preload,
    topic_names,
)
from benchmarks.profiling import Profile
from devtools.local import Worker
from schemas import topics

STORE = "rocksdb"
SAMPLE = 100
# A stall, not a slow worker, fails the load: no new outbound record for this long.
STALL_S = 180
SETTLE_S = 2
READY_WITHIN_S = 1800


@dataclass
class MillionResult:
    """Filled step by step, so that a failing step keeps the figures of the ones before it."""

    profiles: int
    partitions: int
    store: str = STORE
    load: Throughput | None = None
    loaded_rss_bytes: int = 0
    restart: deploy.Ready | None = None
    empty: deploy.Ready | None = None
    # records the empty-data-dir recovery replayed (the changelogs' end offsets)
    changelog_records: int = 0
    sync: Throughput | None = None
    sync_first_after_s: float = 0.0
    sync_profile: Profile | None = None
    # the highest VmHWM of the worker processes that held the profiles
    peak_rss_bytes: int = 0


async def run(
    run_dir: Path,
    run_id: str,
    result: MillionResult,
    *,
    recovery: bool,
    sync: bool,
    profile: bool,
) -> None:
    def profile_to(name: str) -> Path | None:
        return run_dir / f"{name}-profile.txt" if profile else None

    app_id = f"{run_id}-million"
    loader = deploy.worker(run_dir, app_id, store=STORE, partitions=result.partitions)
    connected = data.OUTPUT_IDENTITIES
    outputs = {**connected, data.SYNC_OUTPUT[0]: data.SYNC_OUTPUT[1]}
    await deploy.prepare(loader, outputs, [(data.AUDIENCE, output_id) for output_id in connected])
    inputs = deploy.input_topics(loader)
    await preload(inputs[0], data.profile_updates(0, result.profiles, result.partitions))
    await preload(inputs[1], data.memberships(0, result.profiles, result.partitions))

    running = deploy.Running(loader)
    try:
        await running.ready(READY_WITHIN_S)
        outbound = deploy.outbound_topics(loader, list(connected))
        result.load = await load(running, outbound, result.profiles)
        result.loaded_rss_bytes = running.rss_bytes()
        if recovery:
            result.peak_rss_bytes = running.peak_rss_bytes()
            running.stop()
            running = deploy.Running(loader, profile_to("restart"))
            result.restart = await started(running, result, range(SAMPLE))
            result.peak_rss_bytes = max(result.peak_rss_bytes, running.peak_rss_bytes())
            running.stop()
            result.changelog_records = await changelog_records(app_id)
            empty_dir = run_dir / f"{app_id}-empty"
            empty = deploy.worker(
                run_dir, app_id, store=STORE, partitions=result.partitions, data_dir=empty_dir
            )
            running = deploy.Running(empty, profile_to("empty"))
            result.empty = await started(running, result, range(SAMPLE, 2 * SAMPLE))
        if sync:
            await initial_sync(running, profile_to("sync"), result)
        result.peak_rss_bytes = max(result.peak_rss_bytes, running.peak_rss_bytes())
    finally:
        running.stop()


async def load(running: deploy.Running, outbound: list[str], profiles: int) -> Throughput:
    """Wait until every profile has gone out once to each connected output (what Kafka holds,
    polled without consuming it); timed from readiness."""
    start = time.monotonic()
    expected = len(outbound) * profiles
    sent = await end_offsets(outbound)
    progress = (sent, start)
    while sent < expected:
        running.check_alive()
        await asyncio.sleep(0.5)
        sent = await end_offsets(outbound)
        now = time.monotonic()
        if sent > progress[0]:
            progress = (sent, now)
        elif now - progress[1] > STALL_S:
            raise ScenarioError(f"load: {sent:,} of {expected:,} adds, none for {STALL_S} s")
    end = time.monotonic()
    await asyncio.sleep(SETTLE_S)  # extras (duplicates) would show by now
    sent = await end_offsets(outbound)
    if sent != expected:
        raise ScenarioError(f"load: {sent:,} outbound records, expected {expected:,}")
    cpu = running.cpu.between(start, end)
    return Throughput("load, 3 connections", 2 * profiles, sent, end - start, cpu)


async def started(running: deploy.Running, result: MillionResult, samples: range) -> deploy.Ready:
    ready = await running.ready(READY_WITHIN_S)
    ready.profile = running.end_profile()
    await check_recovered(running.worker, result.partitions, samples)
    return ready


async def changelog_records(app_id: str) -> int:
    """What a recovery from an empty data dir replays: the app's table changelogs."""
    changelogs = [name for name in await topic_names(app_id) if name.endswith("-changelog")]
    return await end_offsets(changelogs) if changelogs else 0


async def check_recovered(worker: Worker, partitions: int, samples: range) -> None:
    """A membership remove older than the held membership is dropped as stale only if the
    profile is there (a profile unknown to the worker would take it as new)."""
    await preload(
        worker.topic(topics.AUDIENCE_MEMBERSHIPS),
        ((n % partitions, data.mpid(n), data.stale_membership(n)) for n in samples),
    )
    deadline = time.monotonic() + 60
    stale = 0.0
    while time.monotonic() < deadline:
        stale = await asyncio.to_thread(
            worker.metric, "forwarder_records_dropped_total", reason="stale_event"
        )
        if stale >= len(samples):
            return
        await asyncio.sleep(0.5)
    raise ScenarioError(
        f"recovered-state check: {stale:.0f} of {len(samples)} old removes dropped as stale"
    )


async def initial_sync(
    running: deploy.Running, profile_to: Path | None, result: MillionResult
) -> None:
    worker = running.worker
    output_id = data.SYNC_OUTPUT[0]
    topic = deploy.outbound_topics(worker, [output_id])[0]
    watch = Watch([topic], result.profiles)
    await watch.start(first_within=120, idle_within=60)
    if profile_to:
        running.profile(profile_to)
    connected = time.monotonic()
    await deploy.connect(worker, [(data.AUDIENCE, output_id)])
    arrivals = await watch.result()
    result.sync_profile = running.end_profile()
    check_counts(arrivals, {topic: result.profiles}, "initial sync")
    assert arrivals.first is not None
    result.sync_first_after_s = arrivals.first - connected
    result.sync = watch.timed("initial sync", result.profiles, running.cpu, since=connected)
