"""Scenario (e): 1 worker against 2 workers (one app id) on 8 input partitions.

Both runs start their workers first and wait until every one is ready and the group has
settled, then write the input: timing then covers processing only, not a rebalance caused by
the second worker joining mid-run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from benchmarks import data, deploy
from benchmarks.harness import Throughput, Watch, check_counts, preload
from schemas import topics

PARTITIONS = 8


@dataclass
class ScaleOutResult:
    profiles: int
    partitions: int
    one: Throughput
    two: Throughput
    ratio: float


async def run(run_dir: Path, run_id: str, profiles: int) -> ScaleOutResult:
    one = await measure(run_dir, f"{run_id}-e1", 1, profiles)
    two = await measure(run_dir, f"{run_id}-e2", 2, profiles)
    ratio = two.events_per_s / one.events_per_s if one.events_per_s else 0.0
    return ScaleOutResult(profiles, PARTITIONS, one, two, ratio)


async def measure(run_dir: Path, app_id: str, count: int, profiles: int) -> Throughput:
    workers = [
        deploy.worker(
            run_dir, app_id, partitions=PARTITIONS, data_dir=run_dir / f"{app_id}-{index}"
        )
        for index in range(count)
    ]
    outputs = data.OUTPUT_IDENTITIES
    await deploy.prepare(workers[0], outputs, [(data.AUDIENCE, output_id) for output_id in outputs])
    expected = dict.fromkeys(deploy.outbound_topics(workers[0], list(outputs)), profiles)
    try:
        for worker in workers:
            await asyncio.to_thread(worker.start)
        await deploy.settle(workers)
        watch = Watch(list(expected), sum(expected.values()))
        await watch.start(first_within=60, idle_within=30)
        await preload(
            workers[0].topic(topics.PROFILE_UPDATES),
            data.profile_updates(0, profiles, PARTITIONS),
        )
        await preload(
            workers[0].topic(topics.AUDIENCE_MEMBERSHIPS),
            data.memberships(0, profiles, PARTITIONS),
        )
        arrivals = await watch.result()
    finally:
        for worker in workers:
            worker.stop()
    check_counts(arrivals, expected, f"{count} worker(s)")
    return Throughput(f"{count} worker(s)", 2 * profiles, arrivals.total, arrivals.seconds)
