"""Latency at a steady offered load of half the maximum measured in the steady state.

New profiles are offered at a constant rate, each as a profile update and a membership add
stamped with their produce time (``timestamp_ms``, which the worker carries into every
outbound record); latency is an outbound record's arrival here minus that stamp. Keys go to
their partitions by Kafka's default partitioner, as a user's producer sends them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from benchmarks import data, deploy
from benchmarks.harness import Subprocess, Throughput, Watch, check_counts
from devtools.local import BOOTSTRAP, Worker
from schemas import topics

# Offered at the same rate before the measured seconds, out of the percentiles: a process's
# first seconds (the first writes to fresh partitions, the load generator's own first sends)
# are not its steady state.
WARM_UP_S = 3.0
# Sends between two prunings of the acknowledged ones.
UNACKNOWLEDGED_CHECK = 2000


@dataclass
class LatencyResult:
    offered_events_per_s: float
    seconds: float
    outbound: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    # the 1st to 99th percentiles, for the chart
    percentiles_ms: list[float]
    # what the worker did at that load, with its CPU per event
    forwarder: Throughput


async def run(
    run_dir: Path, run_id: str, store: str, events_per_s: float, seconds: float
) -> LatencyResult:
    worker = deploy.worker(run_dir, f"{run_id}-latency", store=store)
    outputs = data.OUTPUT_IDENTITIES
    await deploy.prepare(worker, outputs, [(data.AUDIENCE, output_id) for output_id in outputs])
    profiles = max(1, int(events_per_s * seconds / 2))
    warm_up = int(events_per_s * WARM_UP_S / 2)
    expected = dict.fromkeys(deploy.outbound_topics(worker, list(outputs)), warm_up + profiles)
    running = deploy.Running(worker)
    try:
        await running.ready(120)
        await deploy.settle([worker])
        # What this process holds so far (the earlier scenarios' data) out of the collector's
        # full scans: their pauses would delay the arrivals read here, and count as latency.
        gc.freeze()
        watch = Watch(list(expected), sum(expected.values()), latency_warm_up_s=WARM_UP_S)
        await watch.start(first_within=60, idle_within=30)
        await offered(run_dir, worker, warm_up + profiles, events_per_s)
        arrivals = await watch.result()
    finally:
        running.stop()
    check_counts(arrivals, expected, "latency run")
    cuts = statistics.quantiles(arrivals.latencies_ms, n=100, method="inclusive")
    return LatencyResult(
        offered_events_per_s=events_per_s,
        seconds=seconds,
        outbound=arrivals.total,
        p50_ms=cuts[49],
        p99_ms=cuts[98],
        max_ms=max(arrivals.latencies_ms),
        percentiles_ms=cuts,
        forwarder=watch.timed("forwarder at half load", 2 * (warm_up + profiles), running.cpu),
    )


async def offered(run_dir: Path, worker: Worker, profiles: int, events_per_s: float) -> None:
    """Offer the load from a process of its own: in this one, the producer and the consumer
    measuring the latency would share one interpreter lock, and at thousands of events a
    second each would hold the other's records back."""
    args = [worker.topic(topics.PROFILE_UPDATES), worker.topic(topics.AUDIENCE_MEMBERSHIPS)]
    process = Subprocess(
        "benchmarks.latency", [*args, str(profiles), str(events_per_s)], run_dir / "offer.log"
    )
    try:
        within = 2 * profiles / events_per_s + 120
        if await asyncio.wait_for(asyncio.to_thread(process.process.wait), within) != 0:
            process.check_alive()  # raises with the log's tail
    finally:
        process.stop()


async def offer(updates: str, memberships: str, profiles: int, events_per_s: float) -> None:
    """Two events per profile, paced against the clock (not by sleeping a fixed step)."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", linger_ms=0)
    await producer.start()
    try:
        for topic in (updates, memberships):
            await producer.partitions_for(topic)  # metadata before the clock starts
        gc.freeze()
        pending: list[asyncio.Future[Any]] = []
        start = time.monotonic()
        for n in range(profiles):
            delay = start + 2 * n / events_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now_ms = int(time.time() * 1000)
            key = data.mpid(n)
            pending.append(
                await producer.send(updates, key=key, value=data.profile_update(n, now_ms))
            )
            pending.append(
                await producer.send(
                    memberships, key=key, value=data.membership(n, timestamp_ms=now_ms)
                )
            )
            if len(pending) >= UNACKNOWLEDGED_CHECK:
                pending = unacknowledged(pending)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def unacknowledged(pending: list[asyncio.Future[Any]]) -> list[asyncio.Future[Any]]:
    """The sends not acknowledged yet (a failed one raises). Holding every send's future to the
    end made this process's full garbage collections grow to 160 ms pauses, during which its
    stamped records waited unsent: measured as the worker's latency."""
    for sent in pending:
        if sent.done():
            sent.result()
    return [sent for sent in pending if not sent.done()]


def main() -> None:
    parser = argparse.ArgumentParser(description="Offer the latency run's load.")
    parser.add_argument("updates")
    parser.add_argument("memberships")
    parser.add_argument("profiles", type=int)
    parser.add_argument("events_per_s", type=float)
    args = parser.parse_args()
    asyncio.run(offer(args.updates, args.memberships, args.profiles, args.events_per_s))


if __name__ == "__main__":
    main()
