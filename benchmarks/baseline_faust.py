"""Baseline: a bare Faust agent that iterates the same input and does nothing with it.

What it costs is Faust's own per-message consume path (fetching in the consumer thread,
building events, the stream machinery), which every Faust agent pays before its own work. It
has no output to time, so it times itself, from its first event to the expected count, reads
its own CPU time over the same interval (/proc/<pid>/stat, as the harness reads the others')
and writes both to a file.

Run as its own process (``python -m benchmarks.baseline_faust``), with uvloop and the worker's
Faust settings that matter per event: raw codecs, acks from all replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

import faust
import orjson
import uvloop

from benchmarks.harness import ScenarioError, Subprocess, Throughput, cpu_seconds
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
    result = Path(args.result)
    expected: int = args.expected

    async def iterate(stream: Any) -> None:
        count, first, first_cpu = 0, 0.0, 0.0
        async for _ in stream:
            count += 1
            if count == 1:
                first, first_cpu = time.monotonic(), cpu_seconds(os.getpid())
            if count == expected:
                seconds = time.monotonic() - first
                cpu = cpu_seconds(os.getpid()) - first_cpu
                figures = orjson.dumps({"count": count, "seconds": seconds, "cpu_seconds": cpu})
                await asyncio.to_thread(result.write_bytes, figures)

    app.agent(app.topic(*args.inputs), name="iterate")(iterate)
    return app


async def measure(
    run_dir: Path, name: str, inputs: list[str], events: int, partitions: int
) -> Throughput:
    result = run_dir / f"{name}.json"
    args = ["--app-id", name, "--data-dir", str(run_dir / name), "--partitions", str(partitions)]
    args += ["--expected", str(events), "--result", str(result), *inputs]
    process = Subprocess("benchmarks.baseline_faust", args, run_dir / f"{name}.log")
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
    return Throughput(
        "bare Faust agent (iterate only)",
        figures["count"],
        0,
        figures["seconds"],
        figures["cpu_seconds"],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("inputs", nargs="+")
    args = parser.parse_args()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    app = build_app(args)
    faust.Worker(app, loglevel="WARNING").execute_from_commandline()


if __name__ == "__main__":
    main()
