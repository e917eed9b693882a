"""Scenario (a): steady state through one worker, beside the three baselines on the same input.

Each profile has one profile update (3 identities, 5 attributes) and one membership add to an
audience connected to 3 outputs, each accepting a different identity type: 2 input events and
3 outbound adds per profile, whichever of its two events the worker reads first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from benchmarks import baseline_faust, baseline_raw, data, deploy
from benchmarks.harness import Throughput, Watch, check_counts, preload
from benchmarks.profiling import Profile, Profiler
from devtools.local import Worker
from schemas import topics

PARTITIONS = 1


@dataclass
class SteadyResult:
    profiles: int
    raw: Throughput
    bare_faust: Throughput
    table_send: Throughput
    forwarder: Throughput
    profile: Profile | None


async def run(run_dir: Path, run_id: str, profiles: int, profile: bool) -> SteadyResult:
    worker = deploy.worker(run_dir, f"{run_id}-a", partitions=PARTITIONS)
    outputs = data.OUTPUT_IDENTITIES
    await deploy.prepare(worker, outputs, [(data.AUDIENCE, output_id) for output_id in outputs])
    await deploy.warm_up(worker)
    inputs = [worker.topic(topics.PROFILE_UPDATES), worker.topic(topics.AUDIENCE_MEMBERSHIPS)]
    await preload(inputs[0], data.profile_updates(0, profiles, PARTITIONS))
    await preload(inputs[1], data.memberships(0, profiles, PARTITIONS))
    events = 2 * profiles

    raw = await baseline_raw.measure(run_dir, f"{run_id}-raw", inputs, events)
    bare = await baseline_faust.measure_iterate(
        run_dir, f"{run_id}-bare", inputs, events, PARTITIONS
    )
    table_send = await baseline_faust.measure_table_send(
        run_dir, f"{run_id}-tablesend", inputs, events, PARTITIONS
    )
    expected = dict.fromkeys(deploy.outbound_topics(worker, list(outputs)), profiles)
    profile_to = run_dir / "steady-profile.txt" if profile else None
    forwarder, samples = await measure_forwarder([worker], events, expected, profile_to)
    return SteadyResult(profiles, raw, bare, table_send, forwarder, samples)


async def measure_forwarder(
    workers: list[Worker],
    events: int,
    expected: dict[str, int],
    profile_to: Path | None = None,
) -> tuple[Throughput, Profile | None]:
    """Start the workers on preloaded input; timed from the first to the last outbound record."""
    watch = Watch(list(expected), sum(expected.values()))
    await watch.start(first_within=180, idle_within=30)
    try:
        for worker in workers:
            await asyncio.to_thread(worker.start)
        assert workers[0].process is not None
        profiler = Profiler(workers[0].process.pid, profile_to) if profile_to else None
        try:
            arrivals = await watch.result()
        finally:
            samples = profiler.stop() if profiler else None
    finally:
        for worker in workers:
            worker.stop()
    check_counts(arrivals, expected, "forwarder")
    return Throughput("forwarder", events, arrivals.total, arrivals.seconds), samples
