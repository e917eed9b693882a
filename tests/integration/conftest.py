from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local import Worker

pytestmark = pytest.mark.kafka


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
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
