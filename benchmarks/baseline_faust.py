"""Baselines (2) and (3): what Faust itself costs per event, with uvloop as the worker uses.

``iterate``: an agent that only iterates its stream. It has no output to time, so it times
itself, from its first event to the expected count, and writes the figure to a file.
``table-send``: an agent doing one table write and one topic.send per event, timed on its
output topic like the forwarder.

Run as its own process (``python -m benchmarks.baseline_faust``), with the worker's Faust
settings that matter per event: raw codecs, memory store, acks from all replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import faust
import orjson
import uvloop

from benchmarks.harness import (
    ScenarioError,
    Subprocess,
    Throughput,
    Watch,
    check_counts,
    create_topics,
)
from devtools.local import BOOTSTRAP


def build_app(args: argparse.Namespace) -> faust.App:
    app = faust.App(
        args.app_id,
        broker=f"kafka://{BOOTSTRAP}",
        store="memory://",
        datadir=args.data_dir,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        web_enabled=False,
        autodiscover=False,
    )
    inputs = app.topic(*args.inputs)
    if args.mode == "iterate":
        result = Path(args.result)
        expected: int = args.expected

        async def iterate(stream: Any) -> None:
            count, first = 0, 0.0
            async for _ in stream:
                count += 1
                if count == 1:
                    first = time.monotonic()
                if count == expected:
                    seconds = time.monotonic() - first
                    figures = orjson.dumps({"count": count, "seconds": seconds})
                    await asyncio.to_thread(result.write_bytes, figures)

        app.agent(inputs, name="iterate")(iterate)
    else:
        table = app.Table(
            "state", partitions=args.partitions, default=None, key_type=bytes, value_type=bytes
        )
        output = app.topic(args.output)

        async def table_send(stream: Any) -> None:
            async for key, value in stream.items():
                table[key] = value
                await output.send(key=key, value=value)

        app.agent(inputs, name="table-send")(table_send)
    return app


async def measure_iterate(
    run_dir: Path, name: str, inputs: list[str], events: int, partitions: int
) -> Throughput:
    result = run_dir / f"{name}.json"
    process = _start(
        run_dir, name, inputs, partitions, "iterate", ["--result", str(result)], events
    )
    try:
        deadline = time.monotonic() + 60 + events / 1000
        while not result.exists():
            process.check_alive()
            if time.monotonic() > deadline:
                raise ScenarioError(f"bare Faust agent: {events} events not read in time")
            await asyncio.sleep(0.2)
    finally:
        process.stop()
    figures = orjson.loads(result.read_bytes())
    return Throughput("Faust agent, iterate only", figures["count"], 0, figures["seconds"])


async def measure_table_send(
    run_dir: Path, name: str, inputs: list[str], events: int, partitions: int
) -> Throughput:
    output = f"{name}.out"
    await create_topics([output], partitions=partitions)
    watch = Watch([output], expected=events)
    await watch.start(first_within=60, idle_within=30)
    process = _start(run_dir, name, inputs, partitions, "table-send", ["--output", output], events)
    try:
        arrivals = await watch.result()
        process.check_alive()
    finally:
        process.stop()
    check_counts(arrivals, {output: events}, "Faust table-write-and-send baseline")
    return Throughput(
        "Faust agent, 1 table write + 1 send", events, arrivals.total, arrivals.seconds
    )


def _start(
    run_dir: Path,
    name: str,
    inputs: list[str],
    partitions: int,
    mode: str,
    extra: list[str],
    events: int,
) -> Subprocess:
    args = ["--app-id", name, "--data-dir", str(run_dir / name), "--partitions", str(partitions)]
    args += ["--expected", str(events), *extra, mode, *inputs]
    return Subprocess("benchmarks.baseline_faust", args, run_dir / f"{name}.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--expected", type=int, default=0)
    parser.add_argument("--result", default="")
    parser.add_argument("--output", default="")
    parser.add_argument("mode", choices=["iterate", "table-send"])
    parser.add_argument("inputs", nargs="+")
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = build_app(args)
    faust.Worker(app, loglevel="WARNING").execute_from_commandline()


if __name__ == "__main__":
    main()
