"""Forwarder workers for the scenarios: topics, config and `forwarder worker` processes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import data
from benchmarks.harness import create_topics, preload
from devtools.local import Worker, produce_async
from schemas import topics

SYNC_SETTLE_S = 3


def worker(
    run_dir: Path,
    app_id: str,
    *,
    partitions: int,
    store: str = "memory",
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
    await create_topics(
        [
            worker.topic(topics.PROFILE_UPDATES),
            worker.topic(topics.AUDIENCE_MEMBERSHIPS),
            *outbound_topics(worker, list(outputs)),
        ],
        partitions=worker.partitions,
    )
    await create_topics([worker.topic(topics.OUTPUTS), worker.topic(topics.CONNECTIONS)], 1)
    await publish_outputs(worker, outputs)
    await connect(worker, connections)


async def publish_outputs(worker: Worker, outputs: dict[str, str]) -> None:
    """Outputs by id, each accepting one identity type."""
    await produce_async(
        worker.topic(topics.OUTPUTS),
        [(output_id, data.output(output_id, kind)) for output_id, kind in outputs.items()],
    )


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


@dataclass
class StoredProfiles:
    """A forwarder deployment whose profiles table changelog already holds ``profiles`` states.

    Writing the changelog directly is how a million profiles fit the time budget: feeding them
    through the worker would take longer than the whole suite may. The values are the
    ProfileState JSON the worker itself writes, under the worker's own table keys (data.py).
    No connection exists yet: connecting ``sync_output`` is scenario (c).
    """

    app_id: str
    profiles: int
    partitions: int
    sync_output: str = "out-sync"


async def store_profiles(run_dir: Path, app_id: str, profiles: int) -> StoredProfiles:
    stored = StoredProfiles(app_id=app_id, profiles=profiles, partitions=1)
    template = worker(run_dir, app_id, partitions=stored.partitions)
    await prepare(template, {stored.sync_output: "email"}, [])
    changelog = f"{app_id}-profiles-changelog"  # Faust's name for the table's changelog
    await create_topics([changelog], partitions=stored.partitions)
    await preload(changelog, data.profile_states(profiles, stored.partitions))
    return stored
