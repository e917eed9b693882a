from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import native
from devtools.local import Worker


def pytest_configure(config: pytest.Config) -> None:
    # A compiled module older than its source would test old code.
    stale = native.stale()
    if stale:
        pytest.exit(native.stale_message(stale), returncode=4)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests beside the package they test; those on the real broker are the *_kafka.py modules.
    for item in items:
        if item.path.stem.endswith("_kafka"):
            item.add_marker(pytest.mark.kafka)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def prefix() -> str:
    return unique("t") + "."


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker per test module, on topics of its own."""
    name = unique("fw")
    running = Worker(
        prefix=name + ".", app_id=name, data_dir=Path(tmp_path_factory.mktemp("worker"))
    )
    running.start()
    yield running
    running.stop()
