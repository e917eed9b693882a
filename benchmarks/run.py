"""`make bench`: run the scenarios on the local broker and write docs/benchmarks/.

python -m benchmarks.run                  the full suite (under 20 minutes on 2 cores once the
                                          worker meets its goals)
python -m benchmarks.run --quick          tiny counts, a smoke run; writes var/bench-quick/
python -m benchmarks.run --only NAMES     some scenarios, comma-separated: steady, latency
                                          (runs steady first: its load is half of steady's
                                          maximum), recovery and sync (these two share one
                                          million-profile load), scale-out (not in the
                                          default run)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

from benchmarks import baseline_raw, data, deploy, latency, million, scale_out, steady
from benchmarks.harness import delete_topics
from benchmarks.report import Results, write
from core import native
from devtools.local import BOOTSTRAP, REPO

T = TypeVar("T")

SCENARIOS = ("steady", "latency", "recovery", "sync", "scale-out")
DEFAULT = "steady,latency,recovery,sync"


@dataclass(frozen=True)
class Sizes:
    steady_profiles: int
    latency_seconds: int
    million_profiles: int
    scale_profiles: int


FULL = Sizes(
    steady_profiles=100_000,
    latency_seconds=20,
    million_profiles=1_000_000,
    scale_profiles=50_000,
)
QUICK = Sizes(
    steady_profiles=2_000, latency_seconds=3, million_profiles=5_000, scale_profiles=2_000
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts, a smoke run")
    parser.add_argument("--only", default=DEFAULT, help=f"scenarios (default {DEFAULT})")
    parser.add_argument(
        "--store",
        choices=["rocksdb", "memory"],
        default="rocksdb",
        help="table store of the steady, latency and scale-out workers (recovery and sync "
        "always use RocksDB)",
    )
    parser.add_argument("--steady-profiles", type=int, help="profiles through steady state")
    parser.add_argument("--million-profiles", type=int, help="profiles for recovery and sync")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy")
    parser.add_argument("--out", type=Path, help="report folder (default docs/benchmarks)")
    args = parser.parse_args(argv)
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not args.only <= set(SCENARIOS):
        parser.error(f"--only takes {', '.join(SCENARIOS)}")
    if args.out is None:
        args.out = REPO / ("var/bench-quick" if args.quick else "docs/benchmarks")
    return args


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def attempt(results: Results, name: str, scenario: Awaitable[T]) -> T | None:
    """A failed scenario is reported, loudly, and the others still run."""
    log(f"{name} ...")
    started = time.monotonic()
    try:
        outcome = await scenario
    except Exception as error:
        results.errors[name] = f"{type(error).__name__}: {error}"
        log(f"{name} FAILED: {error}")
        return None
    log(f"{name} done in {time.monotonic() - started:.0f} s")
    return outcome


async def suite(args: argparse.Namespace, sizes: Sizes, run_dir: Path) -> Results:
    run_id = f"bench-{int(time.time())}"
    results = Results(
        run_id=run_id,
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        quick=args.quick,
        machine={
            "cores": os.cpu_count(),
            "memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3,
            "python": platform.python_version(),
            "faust": version("faust-streaming"),
            "aiokafka": version("aiokafka"),
            "bootstrap": BOOTSTRAP,
            # The workers run from this tree: its hot path compiled (make native) or not.
            "compiled": [source for source in native.COMPILED if native.extensions(source)],
        },
        sizes=asdict(sizes),
        store=args.store,
        partitions=deploy.PARTITIONS,
    )
    started = time.monotonic()
    only = args.only | ({"steady"} if "latency" in args.only else set())
    profile = not args.no_profile
    data.check_templates()
    try:
        if "steady" in only:
            results.steady = await attempt(
                results,
                "steady",
                steady.run(run_dir, run_id, sizes.steady_profiles, args.store, profile),
            )
        if "latency" in only:
            if results.steady is None:
                results.errors["latency"] = "needs the maximum rate of steady, which failed"
            else:
                half = results.steady.forwarder.events_per_s / 2
                results.latency = await attempt(
                    results,
                    "latency",
                    latency.run(run_dir, run_id, args.store, half, sizes.latency_seconds),
                )
                results.latency_raw = await attempt(
                    results,
                    "latency-raw",
                    latency.run_raw(run_dir, run_id, half, sizes.latency_seconds),
                )
                results.latency_kafka = await attempt(
                    results,
                    "latency-kafka",
                    latency.run_kafka_alone(run_dir, run_id, half, sizes.latency_seconds),
                )
        if only & {"recovery", "sync"}:
            results.million = million.MillionResult(sizes.million_profiles, deploy.PARTITIONS)
            scenario = million.run(
                run_dir,
                run_id,
                results.million,
                recovery="recovery" in only,
                sync="sync" in only,
                profile=profile,
            )
            await attempt(results, "million", scenario)
            if results.million.sync is not None and results.steady is not None:
                results.sync_raw = await attempt(
                    results,
                    "sync-raw",
                    baseline_raw.measure(
                        run_dir,
                        f"{run_id}-raw-sync",
                        results.steady.inputs,
                        2 * results.steady.profiles,
                        results.steady.partitions,
                    ),
                )
        if "scale-out" in only:
            results.scale_out = await attempt(
                results,
                "scale-out",
                scale_out.run(run_dir, run_id, sizes.scale_profiles, args.store),
            )
    finally:
        await delete_topics(run_id)
    results.minutes = (time.monotonic() - started) / 60
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.steady_profiles:
        sizes = replace(sizes, steady_profiles=args.steady_profiles)
    if args.million_profiles:
        sizes = replace(sizes, million_profiles=args.million_profiles)
    with tempfile.TemporaryDirectory(prefix="bench-") as run_dir:
        results = asyncio.run(suite(args, sizes, Path(run_dir)))
    write(results, args.out)
    log(f"report: {args.out / 'report.md'} ({results.minutes:.1f} minutes)")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
