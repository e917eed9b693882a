"""Latency at a steady offered load of half the maximum measured in the steady state.

New profiles are offered at a constant rate, each as a profile update and a membership add
stamped with their produce time (``timestamp_ms``, which the worker carries into every
outbound record); latency is an outbound record's arrival here minus that stamp. Keys go to
their partitions by Kafka's default partitioner, as a user's producer sends them.

The raw aiokafka passthrough (benchmarks/baseline_raw.py) is offered the same load on topics
of its own, in the same run: what a plain consumer-producer loop's latency is on this machine
at that rate (it forwards each input record as it is, ``timestamp_ms`` included). And Kafka
alone: the same load read by the measuring consumer straight from the topics it is offered
to, with no process in between, which is what the measurement itself adds.
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
from benchmarks.harness import (
    CpuSampler,
    ScenarioError,
    Subprocess,
    Throughput,
    Watch,
    check_counts,
    create_topics,
)
from devtools.local import BOOTSTRAP
from schemas import topics

# Offered at the same rate before the measured seconds, out of the percentiles: a process's
# first seconds (the first writes to fresh partitions, the load generator's own first sends)
# are not its steady state.
WARM_UP_S = 3.0
# Sends between two prunings of the acknowledged ones.
UNACKNOWLEDGED_CHECK = 2000


@dataclass
class LatencyResult:
    """One process's latency under the offered load."""

    offered_events_per_s: float
    seconds: float
    outbound: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    # the 1st to 99th percentiles, for the chart
    percentiles_ms: list[float]
    # what the process did at that load, with its CPU per event (None: Kafka alone)
    process: Throughput | None


@dataclass
class _Load:
    """The offered load: profiles in the warm-up, then in the measured seconds."""

    events_per_s: float
    seconds: float

    @property
    def profiles(self) -> int:
        warm_up = int(self.events_per_s * WARM_UP_S / 2)
        return warm_up + max(1, int(self.events_per_s * self.seconds / 2))


async def run(
    run_dir: Path, run_id: str, store: str, events_per_s: float, seconds: float
) -> LatencyResult:
    """The forwarder worker under the load."""
    load = _Load(events_per_s, seconds)
    worker = deploy.worker(run_dir, f"{run_id}-latency", store=store)
    outputs = data.OUTPUT_IDENTITIES
    await deploy.prepare(worker, outputs, [(data.AUDIENCE, output_id) for output_id in outputs])
    expected = dict.fromkeys(deploy.outbound_topics(worker, list(outputs)), load.profiles)
    running = deploy.Running(worker)
    try:
        await running.ready(120)
        await deploy.settle([worker])
        watch = await _watching(expected)
        await offered(run_dir, deploy.input_topics(worker), load)
        arrivals = await watch.result()
    finally:
        running.stop()
    check_counts(arrivals, expected, "latency run")
    process = watch.timed("forwarder at half load", 2 * load.profiles, running.cpu)
    return _result(load, arrivals.latencies_ms, arrivals.total, process)


async def run_raw(run_dir: Path, run_id: str, events_per_s: float, seconds: float) -> LatencyResult:
    """The raw aiokafka passthrough under the same load."""
    load = _Load(events_per_s, seconds)
    name = f"{run_id}-latency-raw"
    inputs = [f"{name}.{topics.PROFILE_UPDATES}", f"{name}.{topics.AUDIENCE_MEMBERSHIPS}"]
    output = f"{name}.out"
    await create_topics([*inputs, output], partitions=deploy.PARTITIONS)
    ready = run_dir / f"{name}.ready"
    process = Subprocess(
        "benchmarks.baseline_raw",
        ["--group", name, "--output", output, "--ready-file", str(ready), *inputs],
        run_dir / f"{name}.log",
    )
    cpu = CpuSampler(process.process.pid)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            process.check_alive()
            if time.monotonic() > deadline:
                raise ScenarioError("the raw passthrough got no partitions within 60 s")
            await asyncio.sleep(0.1)
        watch = await _watching({output: 2 * load.profiles})
        await offered(run_dir, inputs, load)
        arrivals = await watch.result()
        process.check_alive()
    finally:
        cpu.stop()
        process.stop()
    check_counts(arrivals, {output: 2 * load.profiles}, "raw latency run")
    timed = watch.timed("raw passthrough at half load", 2 * load.profiles, cpu)
    return _result(load, arrivals.latencies_ms, arrivals.total, timed)


async def run_kafka_alone(
    run_dir: Path, run_id: str, events_per_s: float, seconds: float
) -> LatencyResult:
    """The same load read straight from the topics it is offered to: the latency of the load
    generator, the broker and the measuring consumer on this machine at that rate."""
    load = _Load(events_per_s, seconds)
    name = f"{run_id}-latency-kafka"
    inputs = [f"{name}.{topics.PROFILE_UPDATES}", f"{name}.{topics.AUDIENCE_MEMBERSHIPS}"]
    await create_topics(inputs, partitions=deploy.PARTITIONS)
    expected = dict.fromkeys(inputs, load.profiles)
    watch = await _watching(expected)
    await offered(run_dir, inputs, load)
    arrivals = await watch.result()
    check_counts(arrivals, expected, "Kafka-alone latency run")
    return _result(load, arrivals.latencies_ms, arrivals.total, None)


async def _watching(expected: dict[str, int]) -> Watch:
    # What this process holds so far (the earlier scenarios' data) out of the collector's
    # full scans: their pauses would delay the arrivals read here, and count as latency.
    gc.freeze()
    watch = Watch(list(expected), sum(expected.values()), latency_warm_up_s=WARM_UP_S)
    await watch.start(first_within=60, idle_within=30)
    return watch


def _result(
    load: _Load, latencies_ms: list[float], outbound: int, process: Throughput | None
) -> LatencyResult:
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return LatencyResult(
        offered_events_per_s=load.events_per_s,
        seconds=load.seconds,
        outbound=outbound,
        p50_ms=cuts[49],
        p99_ms=cuts[98],
        max_ms=max(latencies_ms),
        percentiles_ms=cuts,
        process=process,
    )


async def offered(run_dir: Path, inputs: list[str], load: _Load) -> None:
    """Offer the load from a process of its own: in this one, the producer and the consumer
    measuring the latency would share one interpreter lock, and at thousands of events a
    second each would hold the other's records back."""
    profiles, events_per_s = load.profiles, load.events_per_s
    process = Subprocess(
        "benchmarks.latency", [*inputs, str(profiles), str(events_per_s)], run_dir / "offer.log"
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
