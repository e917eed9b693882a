"""`make bench`: run the scenarios on the local broker and write docs/benchmarks/.

python -m benchmarks.run                 the full suite (about 15 minutes on 2 cores)
python -m benchmarks.run --quick         small counts, for development
python -m benchmarks.run --only a,b      some scenarios ((b) runs (a) first: its load is
                                         half of (a)'s maximum)
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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

from benchmarks import data, deploy, initial_sync, latency, scale_out, state, steady
from benchmarks.harness import delete_topics
from benchmarks.report import Results, write
from devtools.local import BOOTSTRAP, REPO

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    steady_profiles: int
    latency_seconds: int
    stored_profiles: int
    scale_profiles: int
    sync_wait_s: int


# The counts (100,000 profiles in (a), 1,000,000 stored) do not fit 15 minutes at the
# forwarder's current rates on 2 cores; the report states the counts run and extrapolates.
FULL = Sizes(
    steady_profiles=20_000,
    latency_seconds=20,
    stored_profiles=100_000,
    scale_profiles=10_000,
    sync_wait_s=30,
)
QUICK = Sizes(
    steady_profiles=5_000,
    latency_seconds=5,
    stored_profiles=20_000,
    scale_profiles=5_000,
    sync_wait_s=15,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small counts, for development")
    parser.add_argument("--only", default="a,b,c,d,e", help="scenarios, e.g. a,b (default all)")
    parser.add_argument("--stored-profiles", type=int, help="profiles stored for (c) and (d)")
    parser.add_argument("--steady-profiles", type=int, help="profiles sent through (a)")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy during (a)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "benchmarks", help="report folder"
    )
    args = parser.parse_args(argv)
    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not args.only <= set("abcde"):
        parser.error("--only takes scenario letters a to e")
    return args


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


async def attempt(results: Results, letter: str, scenario: Awaitable[T]) -> T | None:
    """A failed scenario is reported, loudly, and the others still run."""
    log(f"scenario ({letter}) ...")
    started = time.monotonic()
    try:
        outcome = await scenario
    except Exception as error:
        results.errors[letter] = f"{type(error).__name__}: {error}"
        log(f"scenario ({letter}) FAILED: {error}")
        return None
    log(f"scenario ({letter}) done in {time.monotonic() - started:.0f} s")
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
        },
        sizes=asdict(sizes),
    )
    started = time.monotonic()
    only = args.only | ({"a"} if "b" in args.only else set())
    data.check_templates()
    try:
        if "a" in only:
            results.steady = await attempt(
                results,
                "a",
                steady.run(run_dir, run_id, sizes.steady_profiles, profile=not args.no_profile),
            )
        if "b" in only:
            if results.steady is None:
                results.errors["b"] = "needs the maximum rate from (a), which failed"
            else:
                half = results.steady.forwarder.events_per_s / 2
                results.latency = await attempt(
                    results, "b", latency.run(run_dir, run_id, half, sizes.latency_seconds)
                )
        if only & {"c", "d"}:
            log(f"storing {sizes.stored_profiles:,} profiles for (c) and (d) ...")
            stored = await deploy.store_profiles(run_dir, f"{run_id}-cd", sizes.stored_profiles)
            if "d" in only:
                results.state = await attempt(results, "d", state.run(run_dir, run_id, stored))
            if "c" in only:
                results.initial_sync = await attempt(
                    results, "c", initial_sync.run(run_dir, stored, sizes.sync_wait_s)
                )
        if "e" in only:
            results.scale_out = await attempt(
                results, "e", scale_out.run(run_dir, run_id, sizes.scale_profiles)
            )
    finally:
        await delete_topics(run_id)
    results.minutes = (time.monotonic() - started) / 60
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.stored_profiles:
        sizes = Sizes(**{**asdict(sizes), "stored_profiles": args.stored_profiles})
    if args.steady_profiles:
        sizes = Sizes(**{**asdict(sizes), "steady_profiles": args.steady_profiles})
    with tempfile.TemporaryDirectory(prefix="bench-") as run_dir:
        results = asyncio.run(suite(args, sizes, Path(run_dir)))
    write(results, args.out)
    log(f"report: {args.out / 'report.md'} ({results.minutes:.1f} minutes)")
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
