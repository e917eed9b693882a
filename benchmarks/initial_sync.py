"""Scenario (c): initial sync, connecting an output to an audience of N members.

A worker recovers N stored members, then a connection from their audience to a new output
becomes active; every member should get one add. Timed from the connection record's publish
to the last add's arrival. A worker that sends nothing within a short wait does not implement
initial sync yet, which the report says rather than waiting out the budget.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import data, deploy
from benchmarks.harness import Watch, check_counts
from benchmarks.profiling import Profile, Profiler


@dataclass
class InitialSyncResult:
    members: int
    implemented: bool
    outbound: int
    seconds: float
    outbound_per_s: float
    first_after_s: float
    profile: Profile | None = None


async def run(
    run_dir: Path, stored: deploy.StoredProfiles, first_within: float
) -> InitialSyncResult:
    worker = deploy.worker(
        run_dir,
        stored.app_id,
        partitions=stored.partitions,
        data_dir=run_dir / f"{stored.app_id}-sync",
    )
    topic = deploy.outbound_topics(worker, [stored.sync_output])[0]
    await asyncio.to_thread(worker.start, 900)
    try:
        watch = Watch([topic], stored.profiles, from_end=True)
        await watch.start(first_within=first_within, idle_within=30)
        assert worker.process is not None
        profiler = Profiler(worker.process.pid, run_dir / "sync-profile.txt")
        connected = time.monotonic()
        try:
            await deploy.connect(worker, [(data.AUDIENCE, stored.sync_output)])
            arrivals = await watch.result()
        finally:
            profile = profiler.stop()
    finally:
        worker.stop()
    if arrivals.first is None:
        return InitialSyncResult(stored.profiles, False, 0, 0.0, 0.0, 0.0)
    check_counts(arrivals, {topic: stored.profiles}, "initial sync")
    assert arrivals.last is not None
    seconds = arrivals.last - connected
    return InitialSyncResult(
        members=stored.profiles,
        implemented=True,
        outbound=arrivals.total,
        seconds=seconds,
        outbound_per_s=arrivals.total / seconds,
        first_after_s=arrivals.first - connected,
        profile=profile,
    )
