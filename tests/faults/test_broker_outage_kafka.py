"""Scenario 3: the broker stops for about 10 s mid-stream and comes back. The workers must
ride it out (or come back healthy) and lose nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from random import Random

import pytest

from devtools.local import Broker
from tests.faults.harness import SEED, Fleet, Load, make_profiles
from tests.faults.ledger import check

OUTAGE_S = 10.0


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A broker of this test's own: stopping it disturbs no other test."""
    own = Broker()
    own.up()
    try:
        yield own
    finally:
        own.down(wipe=True)


def test_a_broker_outage_mid_stream_loses_nothing(
    tmp_path: Path, broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = Random(SEED + 3)
    fleet = Fleet(tmp_path, bootstrap=broker.bootstrap)
    try:
        fleet.start(2)
        load = Load(fleet, make_profiles(rng, 1500, "out"), seconds=20)
        load.start()
        time.sleep(rng.uniform(5.0, 8.0))
        broker.down()  # a controlled shutdown; its data stays
        time.sleep(OUTAGE_S)
        broker.up()
        load.finish()
        check("broker-outage", fleet.ledger, fleet.workers, faults=1, rounds=1, capsys=capsys)
    finally:
        fleet.stop()
