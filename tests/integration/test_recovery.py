"""The worker's table survives a restart: its state is read back from the changelog."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from streams.local import Worker, consume, create_topics_async, produce
from tests.integration.test_forwarding import configure, connect, custom_output, member, profile


def test_profile_state_is_recovered_from_the_changelog_after_a_restart(tmp_path: Path) -> None:
    name = f"rec-{uuid.uuid4().hex[:8]}"
    first = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / "first")
    first.start()
    try:
        audience, out = "aud-r", "out-r"
        configure(first, [custom_output(out, ["email"])], [connect("c-r", audience, out)])
        produce(first.topic("profile-updates"), [("p1", profile("p1", {"email": "a@x.com"}))])
        produce(first.topic("audience-memberships"), [("p1", member("p1", audience))])
        assert len(consume(first.topic(f"forward-{out}"), expected=1)) == 1
    finally:
        first.stop()

    # A new process with an empty local store: everything it knows comes from Kafka.
    second = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path / "second")
    second.start()
    try:
        # Already sent: a repeated add changes nothing.
        produce(second.topic("audience-memberships"), [("p1", member("p1", audience))])
        # The identity known before the restart is what the exit removes.
        produce(
            second.topic("audience-memberships"),
            [("p1", member("p1", audience, action="remove", ts=1764400000001))],
        )
        records = consume(second.topic(f"forward-{out}"), expected=2, settle=2)
        assert [(v["action"], v["identities"]) for _, v, _ in records] == [
            ("add", [{"type": "email", "value": "a@x.com", "encoding": "raw"}]),
            ("remove", [{"type": "email", "value": "a@x.com", "encoding": "raw"}]),
        ]
    finally:
        second.stop()


def test_a_worker_refuses_to_start_on_inputs_with_another_partition_count(tmp_path: Path) -> None:
    name = f"parts-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topics_async([f"{name}.profile-updates"], partitions=3))
    worker = Worker(prefix=name + ".", app_id=name, data_dir=tmp_path, partitions=2)
    with pytest.raises(AssertionError, match="exited"):
        worker.start(timeout=60)
    assert f"topic {name}.profile-updates has 3 partitions, the settings want 2" in (
        worker.log_tail()
    )
