"""Scenario 1: workers killed with SIGKILL mid-batch under load, then restarted on their data
dirs. Nothing may be lost; a re-delivery carries the record_id of the first delivery."""

from __future__ import annotations

import time
from random import Random

import pytest

from tests.faults.harness import SEED, Fleet, Load, make_profiles
from tests.faults.ledger import Outcome, check

ROUNDS = 3
# A killed member leaves the group when its session expires: 10 s instead of Faust's 60 s
# (Faust reads BROKER_SESSION_TIMEOUT from the environment), so a round takes seconds.
FAST_SESSION = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}


def test_workers_killed_mid_batch_and_restarted_lose_nothing(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in FAST_SESSION.items():
        monkeypatch.setenv(name, value)
    rng = Random(SEED)
    fleet.start(2)
    load = Load(fleet, make_profiles(rng, 3000, "kill"), seconds=35)
    load.start()
    kills, seen = 0, Outcome()
    for _ in range(ROUNDS):
        time.sleep(rng.uniform(2.0, 5.0))  # while batches are in flight
        running = fleet.running()  # a crashed worker stays down, for the check to see
        if not running:
            break
        victim = rng.choice(running)
        victim.kill()
        kills += 1
        time.sleep(rng.uniform(0.5, 2.0))
        fleet.restart(victim, seen)
    load.finish()
    check(
        "sigkill",
        fleet.ledger,
        fleet.workers,
        faults=kills,
        rounds=ROUNDS,
        capsys=capsys,
        seen=seen,
    )
