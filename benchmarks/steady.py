"""Steady state: one worker on the default 8 partitions, beside the two baselines on the same
input.

Each profile has one profile update (3 identities, 5 attributes) and one membership add to an
audience connected to 3 outputs, each accepting a different identity type: 2 input events and
3 outbound adds per profile, whichever of its two events the worker reads first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import baseline_faust, baseline_raw, data, deploy
from benchmarks.harness import Throughput, Watch, check_counts, preload
from benchmarks.profiling import Profile
from devtools.local import Worker


@dataclass
class SteadyResult:
    profiles: int
    partitions: int
    store: str
    raw: Throughput
    bare_faust: Throughput
    forwarder: Throughput
    profile: Profile | None
    # the forwarder worker's RSS once it had forwarded every profile
    rss_bytes: int
    # the preloaded input (a later passthrough run reads it again)
    inputs: list[str]
    # The same run on the default memory store, which holds every profile's state in the
    # worker's memory, and its RSS then (not run when ``store`` is the memory store).
    memory_store: Throughput | None = None
    memory_store_rss_bytes: int = 0


async def run(run_dir: Path, run_id: str, profiles: int, store: str, profile: bool) -> SteadyResult:
    worker = deploy.worker(run_dir, f"{run_id}-steady", store=store)
    outputs = data.OUTPUT_IDENTITIES
    await deploy.prepare(worker, outputs, [(data.AUDIENCE, output_id) for output_id in outputs])
    await deploy.warm_up(worker)
    inputs = deploy.input_topics(worker)
    partitions = worker.partitions
    await preload(inputs[0], data.profile_updates(0, profiles, partitions))
    await preload(inputs[1], data.memberships(0, profiles, partitions))
    events = 2 * profiles

    raw = await baseline_raw.measure(run_dir, f"{run_id}-raw", inputs, events, partitions)
    bare = await baseline_faust.measure(run_dir, f"{run_id}-bare", inputs, events, partitions)
    expected = dict.fromkeys(deploy.outbound_topics(worker, list(outputs)), profiles)
    profile_to = run_dir / "steady-profile.txt" if profile else None
    forwarder, samples, rss = await measure_forwarder(worker, events, expected, profile_to)
    result = SteadyResult(profiles, partitions, store, raw, bare, forwarder, samples, rss, inputs)
    if store != "memory":
        memory = deploy.worker(run_dir, f"{run_id}-steady-memory", store="memory")
        await deploy.prepare(memory, outputs, [(data.AUDIENCE, output_id) for output_id in outputs])
        await deploy.warm_up(memory)
        memory_inputs = deploy.input_topics(memory)
        await preload(memory_inputs[0], data.profile_updates(0, profiles, partitions))
        await preload(memory_inputs[1], data.memberships(0, profiles, partitions))
        expected = dict.fromkeys(deploy.outbound_topics(memory, list(outputs)), profiles)
        run, _, result.memory_store_rss_bytes = await measure_forwarder(
            memory, events, expected, None
        )
        result.memory_store = replace(run, name="forwarder, memory store")
    return result


async def measure_forwarder(
    worker: Worker, events: int, expected: dict[str, int], profile_to: Path | None
) -> tuple[Throughput, Profile | None, int]:
    """Start the worker on preloaded input; timed from the first to the last outbound record,
    with the worker's CPU in that interval; and its RSS then."""
    watch = Watch(list(expected), sum(expected.values()))
    await watch.start(first_within=180, idle_within=30)
    running = deploy.Running(worker)
    try:
        await running.ready(120)
        if profile_to:  # from here: the processing, not the start-up
            running.profile(profile_to)
        arrivals = await watch.result()
        profile = running.end_profile()
        rss = running.rss_bytes()
    finally:
        running.stop()
    check_counts(arrivals, expected, "forwarder")
    return watch.timed("forwarder", events, running.cpu), profile, rss
