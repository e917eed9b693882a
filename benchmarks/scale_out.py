"""Scale-out (not in the default run): 1 worker against 2 workers (one app id) on the default
8 partitions.

Both runs start their workers first and wait until every one is ready and the group has
settled, then write the input: timing then covers processing only, not a rebalance caused by
the second worker joining mid-run. CPU is the sum over the workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks import data, deploy
from benchmarks.harness import Throughput, Watch, check_counts, preload


@dataclass
class ScaleOutResult:
    profiles: int
    partitions: int
    one: Throughput
    two: Throughput
    ratio: float


async def run(run_dir: Path, run_id: str, profiles: int, store: str) -> ScaleOutResult:
    one = await measure(run_dir, f"{run_id}-scale1", 1, profiles, store)
    two = await measure(run_dir, f"{run_id}-scale2", 2, profiles, store)
    ratio = two.events_per_s / one.events_per_s if one.events_per_s else 0.0
    return ScaleOutResult(profiles, deploy.PARTITIONS, one, two, ratio)


async def measure(run_dir: Path, app_id: str, count: int, profiles: int, store: str) -> Throughput:
    workers = [
        deploy.worker(run_dir, app_id, store=store, data_dir=run_dir / f"{app_id}-{index}")
        for index in range(count)
    ]
    outputs = data.OUTPUT_IDENTITIES
    await deploy.prepare(workers[0], outputs, [(data.AUDIENCE, output_id) for output_id in outputs])
    expected = dict.fromkeys(deploy.outbound_topics(workers[0], list(outputs)), profiles)
    running: list[deploy.Running] = []
    try:
        for worker in workers:
            running.append(deploy.Running(worker))
            await running[-1].ready(120)
        await deploy.settle(workers)
        watch = Watch(list(expected), sum(expected.values()))
        await watch.start(first_within=60, idle_within=30)
        inputs = deploy.input_topics(workers[0])
        await preload(inputs[0], data.profile_updates(0, profiles, deploy.PARTITIONS))
        await preload(inputs[1], data.memberships(0, profiles, deploy.PARTITIONS))
        arrivals = await watch.result()
    finally:
        for started in running:
            started.stop()
    check_counts(arrivals, expected, f"{count} worker(s)")
    each = [watch.timed(f"{count} worker(s)", 2 * profiles, started.cpu) for started in running]
    cpu = sum(throughput.cpu_seconds for throughput in each)
    return Throughput(f"{count} worker(s)", 2 * profiles, arrivals.total, arrivals.seconds, cpu)
