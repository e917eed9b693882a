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
    worker, inputs, expected = await _loaded_worker(run_dir, f"{run_id}-steady", store, profiles)
    partitions = worker.partitions
    events = 2 * profiles

    raw = await baseline_raw.measure(run_dir, f"{run_id}-raw", inputs, events, partitions)
    bare = await baseline_faust.measure(run_dir, f"{run_id}-bare", inputs, events, partitions)
    profile_to = run_dir / "steady-profile.txt" if profile else None
    forwarder, samples, rss = await measure_forwarder(worker, events, expected, profile_to)
    result = SteadyResult(profiles, partitions, store, raw, bare, forwarder, samples, rss, inputs)
    if store != "memory":
        memory, _, memory_expected = await _loaded_worker(
            run_dir, f"{run_id}-steady-memory", "memory", profiles
        )
        measured, _, result.memory_store_rss_bytes = await measure_forwarder(
            memory, events, memory_expected, None
        )
        result.memory_store = replace(measured, name="forwarder, memory store")
    return result


async def _loaded_worker(
    run_dir: Path, app_id: str, store: str, profiles: int
) -> tuple[Worker, list[str], dict[str, int]]:
    """A worker (not started) with its outputs connected, warmed up, and the profiles preloaded
    on its input topics; with those topics and the outbound records each output must get."""
    worker = deploy.worker(run_dir, app_id, store=store)
    outputs = data.OUTPUT_IDENTITIES
    await deploy.prepare(worker, outputs, [(data.AUDIENCE, output_id) for output_id in outputs])
    await deploy.warm_up(worker)
    inputs = deploy.input_topics(worker)
    await preload(inputs[0], data.profile_updates(0, profiles, worker.partitions))
    await preload(inputs[1], data.memberships(0, profiles, worker.partitions))
    return worker, inputs, dict.fromkeys(deploy.outbound_topics(worker, list(outputs)), profiles)


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
