"""Scenario 5: a worker whose batch fails (here: Kafka does not acknowledge its sends in time)
exits at once with the batch uncommitted, and leaves the group as it goes, so that the other
worker takes its partitions over at once rather than after the session timeout. Nothing is
lost."""

from __future__ import annotations

import time
from random import Random

import pytest

from tests.faults.harness import SEED, Fleet, Load, make_profiles
from tests.faults.ledger import check

# The failing worker's session outlives the check's wait: only its leave can hand over in time.
SESSION_S = 150
CHECK_TIMEOUT_S = 60.0
# Shorter than any acknowledgement on this broker: the failing worker's first batch fails.
ACK_TIMEOUT_S = "0.001"


def test_a_worker_failing_its_batch_hands_its_partitions_over_at_once(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.start(1)
    failing = fleet.new_worker()
    failing.extra_env.update(
        {
            "FORWARDER_ACK_TIMEOUT_S": ACK_TIMEOUT_S,
            "BROKER_SESSION_TIMEOUT": str(SESSION_S),
            "BROKER_REQUEST_TIMEOUT": str(SESSION_S + 10),
        }
    )
    failing.launch()
    load = Load(fleet, make_profiles(Random(SEED), 1500, "fatal"), seconds=10)
    load.start()
    deadline = time.monotonic() + 90
    while failing.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    load.finish()
    assert not failing.alive(), "the worker with the tiny ack timeout did not fail"
    assert failing.process is not None and failing.process.returncode == 1
    log = failing.log_tail(200)
    assert "Kafka did not acknowledge" in log
    assert "the producer holds: waiting:" in log  # the diagnosis an operator starts from
    survivor = fleet.workers[0]
    check(
        "fatal-exit",
        fleet.ledger,
        [survivor],
        faults=1,
        rounds=1,
        capsys=capsys,
        timeout=CHECK_TIMEOUT_S,
    )
