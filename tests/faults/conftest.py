from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Fleet


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Workers of a group of their own on the shared broker, stopped after the test."""
    workers = Fleet(tmp_path)
    try:
        yield workers
    finally:
        workers.stop()
