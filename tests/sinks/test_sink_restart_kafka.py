"""A `forwarder sink` process killed mid-batch and restarted: nothing lost, order per mpid kept."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import orjson

from devtools.local import free_port
from tests.support.fake_partners import FakePartner
from tests.support.sink_records import outbound_value
from tests.support.sinks import (
    FAST,
    check_order,
    configure,
    dead_letters,
    start_sink_process,
    wait_processed,
)

SECRET = "tok-restart-1a2b3c4d5e"
ENV = {"PARTNER_TOKEN": SECRET}


async def test_killed_sink_loses_nothing_and_keeps_order(prefix: str, tmp_path: Path) -> None:
    partner = FakePartner("webhook", SECRET, faults=["500"], delay_s=0.05)
    await partner.start()
    settings = {
        **FAST,
        "url": partner.base_url + "/hook",
        "token_env": "PARTNER_TOKEN",
        "batch_max_records": 10,
    }
    out = {
        "output_id": "hook",
        "partner": "webhook",
        "accepted_identities": ["email"],
        "settings": settings,
    }
    values = [
        outbound_value(f"m{i % 20}", ("add", "remove")[(i // 20) % 2], seq=i, output_id="hook")
        for i in range(300)
    ]
    await configure(prefix, [out], {"hook": values})
    log, port = tmp_path / "sink.log", free_port()

    first = await start_sink_process(prefix, "hook", port, log, ENV)
    deadline = time.monotonic() + 30
    while partner.requests < 8:
        assert first.returncode is None and time.monotonic() < deadline, log.read_text()
        await asyncio.sleep(0.005)
    # Mid-batch: the partner holds the 8th request (it will apply it), the runner is yet to commit.
    first.send_signal(signal.SIGKILL)
    await first.wait()
    await asyncio.sleep(0.1)  # the partner finishes the request the runner never saw answered
    killed_at = len(partner.applied)

    second = await start_sink_process(prefix, "hook", port, log, ENV)
    try:
        await wait_processed(prefix, "hook", within_s=60)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            metrics = await response.text()
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 30) == 0
        await partner.stop()

    delivered = [applied.key for applied in partner.applied]
    letters = await dead_letters(prefix, 0)
    assert killed_at < len(values)
    assert len(delivered) > len(values)  # the batch in flight at the kill went twice
    assert set(delivered) == {v["record_id"] for v in values}, "records lost"
    assert letters == []
    check_order(
        [(v["mpid"], v["record_id"], v["action"]) for v in values],
        [(applied.key, applied.action) for applied in partner.applied],
    )
    assert partner.problems == []
    assert SECRET not in log.read_text() and SECRET not in metrics
    assert orjson.dumps(letters).decode() == "[]"
