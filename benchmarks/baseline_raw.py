"""Baseline: the raw aiokafka passthrough, written as a user would write it.

Batched ``getmany`` over the same partitions the worker reads, orjson decode, a dict update
per event (the state), one ``send`` per event, and the batch's sends awaited together before
its offsets are committed: the at-least-once shape of the forwarder's hot path, minus Faust and
minus the decisions. Batch size and producer settings are the worker's defaults.

Run as its own process (``python -m benchmarks.baseline_raw``), as the worker is.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from benchmarks.harness import (
    CpuSampler,
    Subprocess,
    Throughput,
    Watch,
    check_counts,
    create_topics,
)
from core.settings import Settings
from devtools.local import BOOTSTRAP

_DEFAULTS = Settings.model_fields


async def passthrough(
    inputs: list[str], output: str, group: str, ready_file: Path | None = None
) -> None:
    consumer = AIOKafkaConsumer(
        *inputs,
        bootstrap_servers=BOOTSTRAP,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        linger_ms=_DEFAULTS["producer_linger_ms"].default,
        max_batch_size=_DEFAULTS["producer_batch_bytes"].default,
    )
    await consumer.start()
    await producer.start()
    state: dict[bytes, dict[str, Any]] = {}
    batch_max = _DEFAULTS["batch_max"].default
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=batch_max)
            if ready_file is not None and consumer.assignment():
                # In the group, with partitions: a paced load may start.
                _announce(ready_file)
                ready_file = None
            pending = []
            for messages in batches.values():
                for message in messages:
                    state.setdefault(message.key, {}).update(orjson.loads(message.value))
                    pending.append(
                        await producer.send(output, key=message.key, value=message.value)
                    )
            if pending:
                await asyncio.gather(*pending)
                await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()


def _announce(ready_file: Path) -> None:
    ready_file.touch()


async def measure(
    run_dir: Path, name: str, inputs: list[str], events: int, partitions: int
) -> Throughput:
    """Pass ``events`` preloaded input records through; timed on the output topic."""
    output = f"{name}.out"
    await create_topics([output], partitions=partitions)
    watch = Watch([output], expected=events)
    await watch.start(first_within=60, idle_within=30)
    process = Subprocess(
        "benchmarks.baseline_raw",
        ["--group", name, "--output", output, *inputs],
        run_dir / f"{name}.log",
    )
    cpu = CpuSampler(process.process.pid)
    try:
        arrivals = await watch.result()
        process.check_alive()
    finally:
        cpu.stop()
        process.stop()
    check_counts(arrivals, {output: events}, "raw aiokafka baseline")
    return watch.timed("raw aiokafka passthrough", events, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--group", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--ready-file", type=Path, help="created once partitions are assigned")
    parser.add_argument("inputs", nargs="+")
    args = parser.parse_args()
    uvloop.run(passthrough(args.inputs, args.output, args.group, args.ready_file))


if __name__ == "__main__":
    main()
