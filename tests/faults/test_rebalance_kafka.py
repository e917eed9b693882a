"""Scenario 2: workers join and leave (SIGTERM) under load, round after round. Each leave must
end the process within 30 s; the partitions that move must lose nothing."""

from __future__ import annotations

import time
from pathlib import Path
from random import Random

import pytest

from tests.faults.harness import SEED, Fleet, Load, make_profiles
from tests.faults.ledger import check

ROUNDS = 5
MOST_WORKERS = 4


def test_workers_joining_and_leaving_under_load_lose_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = Random(SEED + 2)
    fleet = Fleet(tmp_path)
    try:
        fleet.start(2)
        load = Load(fleet, make_profiles(rng, 3000, "reb"), seconds=45)
        load.start()
        faults = 0
        for _ in range(ROUNDS):
            # Join: a stopped worker again on its data dir, or a new one.
            stopped = [w for w in fleet.workers if not w.alive()]
            if len(fleet.running()) < MOST_WORKERS:
                joining = rng.choice(stopped) if stopped and rng.random() < 0.5 else None
                (joining or fleet.new_worker()).start(timeout=120)
                faults += 1
            time.sleep(rng.uniform(1.0, 3.0))
            # Leave: SIGTERM, at least two workers stay.
            leaving = rng.choice(fleet.running())
            leaving.terminate(within=30)
            faults += 1
            time.sleep(rng.uniform(1.0, 3.0))
        load.finish()
        survivors = fleet.running()
        assert len(survivors) >= 2
        check("rebalance", fleet.ledger, survivors, faults=faults, rounds=ROUNDS, capsys=capsys)
    finally:
        fleet.stop()
