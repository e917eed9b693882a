"""Scenario 2: workers join and leave (SIGTERM) under load, round after round. Each leave must
end the process within 30 s; the partitions that move must lose nothing."""

from __future__ import annotations

import time
from random import Random

import pytest

from tests.faults.harness import SEED, Fleet, Load, make_profiles
from tests.faults.ledger import Outcome, check

ROUNDS = 5
MOST_WORKERS = 4


def test_workers_joining_and_leaving_under_load_lose_nothing(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = Random(SEED + 2)
    fleet.start(2)
    load = Load(fleet, make_profiles(rng, 3000, "reb"), seconds=45)
    load.start()
    faults, seen, left = 0, Outcome(), set[int]()
    for _ in range(ROUNDS):
        # Join: a stopped worker again on its data dir, or a new one.
        # (not a crashed one: restarting it would hide the crash from the check)
        stopped = [w for w in fleet.workers if w.web_port in left]
        if len(fleet.running()) < MOST_WORKERS:
            joining = rng.choice(stopped) if stopped and rng.random() < 0.5 else None
            joining = joining or fleet.new_worker()
            left.discard(joining.web_port)
            fleet.restart(joining, seen)
            faults += 1
        time.sleep(rng.uniform(1.0, 3.0))
        # Leave: SIGTERM, at least two workers stay.
        running = fleet.running()
        if len(running) <= 2:
            continue  # some crashed; the check reports them
        leaving = rng.choice(running)
        left.add(leaving.web_port)
        try:
            leaving.terminate(within=30)
        except AssertionError:  # it was SIGKILLed after 30 s; the round goes on
            seen.problem("SIGTERM did not stop the worker within 30 s", f":{leaving.web_port}")
        faults += 1
        time.sleep(rng.uniform(1.0, 3.0))
    load.finish()
    # The workers this test did not stop must all be running.
    staying = [w for w in fleet.workers if w.web_port not in left]
    check(
        "rebalance",
        fleet.ledger,
        staying,
        faults=faults,
        rounds=ROUNDS,
        capsys=capsys,
        seen=seen,
    )
