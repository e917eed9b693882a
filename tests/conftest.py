from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from core import native
from devtools.local import BOOTSTRAP, Worker

_TOPICS_BEFORE = pytest.StashKey[set[str]]()
_TOPICS_SAID = pytest.StashKey[str]()


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


def pytest_collection_finish(session: pytest.Session) -> None:
    # The local broker keeps its data dir between runs, and a full run leaves about 290 topics
    # of its own (830 partitions, 200 MB): those the session adds are dropped at its end.
    if any(item.get_closest_marker("kafka") for item in session.items):
        try:
            session.stash[_TOPICS_BEFORE] = asyncio.run(_topic_names())
        except Exception as error:  # no broker: the kafka tests say so themselves
            _say(session, f"the session's topics will be kept: {error!r}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    before = session.stash.get(_TOPICS_BEFORE, None)
    if before is not None:
        try:
            dropped = asyncio.run(_drop_topics_created_since(before))
            _say(session, f"topics this session created, dropped: {len(dropped)}")
        except Exception as error:
            _say(session, f"the session's topics were not all dropped: {error!r}")


@asynccontextmanager
async def _admin() -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=30_000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def _topic_names() -> set[str]:
    async with _admin() as admin:
        return set(await admin.list_topics())


async def _drop_topics_created_since(before: set[str]) -> set[str]:
    """Drop the topics not in ``before`` (none of Kafka's own); returns them."""
    async with _admin() as admin:
        names = await admin.list_topics()
        added = {name for name in names if name not in before and not name.startswith("__")}
        if added:
            await admin.delete_topics(sorted(added))
        return added


def _say(session: pytest.Session, line: str) -> None:
    session.config.stash[_TOPICS_SAID] = line


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    said = config.stash.get(_TOPICS_SAID, None)
    if said is not None:
        terminalreporter.write_line(said)


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
