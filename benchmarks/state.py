"""Scenario (d): resident memory of a worker holding N profiles, and its recovery time.

For each table store: a worker with an empty data dir starts on the stored profiles'
changelog; recovery is the time from its start to /healthz 200 (Faust serves the web once
tables are recovered), RSS is read from /proc once it is ready; then 100 stale membership
events show that the profiles are really there. A worker started with no state,
on the same store, gives the fixed part of both, so that a run with fewer than a million
profiles can be extrapolated per profile.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks import data, deploy
from benchmarks.harness import ScenarioError, preload, rss_bytes
from benchmarks.profiling import Profile, Profiler
from devtools.local import Worker
from schemas import topics

STORES = ("memory", "rocksdb")
TARGET = 1_000_000
SAMPLE = 100


@dataclass
class StoreResult:
    store: str
    profiles: int
    empty_start_s: float
    empty_rss_bytes: int
    recovery_s: float
    rss_bytes: int
    # the figures for TARGET profiles: measured when profiles == TARGET, else linear
    target_recovery_s: float
    target_rss_bytes: float
    profile: Profile | None = None


async def run(run_dir: Path, run_id: str, stored: deploy.StoredProfiles) -> list[StoreResult]:
    results = []
    for index, store in enumerate(STORES):
        empty = deploy.worker(run_dir, f"{run_id}-d-empty-{store}", partitions=1, store=store)
        await deploy.prepare(empty, {}, [])
        empty_start_s, empty_rss, _ = await start_measured(empty, 120)
        empty.stop()

        worker = deploy.worker(
            run_dir,
            stored.app_id,
            partitions=stored.partitions,
            store=store,
            data_dir=run_dir / f"{stored.app_id}-{store}",
        )
        profile_to = run_dir / f"recovery-{store}.txt"
        recovery_s, rss, profile = await start_measured(worker, 900, profile_to)
        try:
            await check_recovered(worker, stored, range(index * SAMPLE, (index + 1) * SAMPLE))
        finally:
            worker.stop()
        per_profile_s = (recovery_s - empty_start_s) / stored.profiles
        per_profile_bytes = (rss - empty_rss) / stored.profiles
        results.append(
            StoreResult(
                store=store,
                profiles=stored.profiles,
                empty_start_s=empty_start_s,
                empty_rss_bytes=empty_rss,
                recovery_s=recovery_s,
                rss_bytes=rss,
                target_recovery_s=empty_start_s + per_profile_s * TARGET,
                target_rss_bytes=empty_rss + per_profile_bytes * TARGET,
                profile=profile,
            )
        )
    return results


async def start_measured(
    worker: Worker, ready_within: float, profile_to: Path | None = None
) -> tuple[float, int, Profile | None]:
    """Seconds from process start to ready, the resident memory once settled, and a profile
    of the start-up (the recovery) when asked."""
    started = time.monotonic()
    starting = asyncio.create_task(asyncio.to_thread(worker.start, ready_within))
    profiler = None
    if profile_to is not None:
        # the pid is set by Worker.start in its thread, the moment it spawns the process
        while worker.process is None and not starting.done():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if worker.process is not None:
            profiler = Profiler(worker.process.pid, profile_to)
    try:
        await starting
    finally:
        profile = profiler.stop() if profiler else None
    seconds = time.monotonic() - started
    await asyncio.sleep(2)  # buffers of the start-up (fetches, recovery) settle
    assert worker.process is not None
    return seconds, rss_bytes(worker.process.pid), profile


async def check_recovered(worker: Worker, stored: deploy.StoredProfiles, samples: range) -> None:
    """A membership remove older than the stored membership is dropped as stale only if the
    profile was recovered (a profile unknown to the worker would take it as new)."""
    await preload(
        worker.topic(topics.AUDIENCE_MEMBERSHIPS),
        ((n % stored.partitions, data.mpid(n), data.stale_membership(n)) for n in samples),
    )
    deadline = time.monotonic() + 60
    stale = 0.0
    while time.monotonic() < deadline:
        stale = stale_drops(await asyncio.to_thread(worker.metrics))
        if stale >= len(samples):
            break
        await asyncio.sleep(0.5)
    if stale != len(samples):
        raise ScenarioError(
            f"recovered-state check: {stale:.0f} of {len(samples)} old removes dropped as stale"
        )


def stale_drops(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("forwarder_records_dropped_total{") and 'reason="stale_event"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0
