"""Fault scenarios of the sink runners on the real broker and a real partner server: runners of
one output joining and leaving (SIGTERM, SIGKILL) under load, and a partner down for minutes.

Each test prints one summary line (records, faults, losses, duplicates), quoted in README.md.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from devtools.local import free_port
from tests.support.fake_partners import FakePartner
from tests.support.sink_records import outbound_value
from tests.support.sinks import (
    FAST,
    CommitAudit,
    TrackedTopic,
    check_order,
    configure,
    dead_letters,
    health,
    running_sinks,
    start_sink_process,
    wait_processed,
)

SECRET = "tok-faults-0a9b8c7d"
ENV = {"PARTNER_TOKEN": SECRET}
OUTAGE_S = 120.0  # how long the partner is down in the outage scenario


def hook_output(partner: FakePartner, **settings: Any) -> dict[str, Any]:
    return {
        "output_id": "hook",
        "partner": "webhook",
        "accepted_identities": ["email"],
        "settings": {
            **FAST,
            "url": partner.base_url + "/hook",
            "token_env": "PARTNER_TOKEN",
            **settings,
        },
    }


def flip_flops(count: int, profiles: int) -> list[dict[str, Any]]:
    """Profiles added, removed, added again …: order mistakes show as a wrong last action."""
    return [
        outbound_value(
            f"m{i % profiles}", ("add", "remove")[(i // profiles) % 2], seq=i, output_id="hook"
        )
        for i in range(count)
    ]


def check_delivered(values: list[dict[str, Any]], partner: FakePartner) -> tuple[int, int]:
    """Every record delivered; a duplicate is the same record (id and action) again. Returns
    (losses, duplicates)."""
    sent = {(v["record_id"], v["action"]) for v in values}
    applied = [(a.key, a.action) for a in partner.applied]
    assert set(applied) <= sent, "the partner got records nobody sent"
    losses = len(sent - set(applied))
    assert losses == 0, f"{losses} records lost"
    assert partner.problems == []
    check_order(
        [(v["mpid"], v["record_id"], v["action"]) for v in values],
        applied,
    )
    return losses, len(applied) - len(sent)


async def test_runners_joining_and_leaving_under_load_deliver_everything(
    prefix: str, tmp_path: Path
) -> None:
    partner = FakePartner("webhook", SECRET, delay_s=0.02)
    await partner.start()
    out = hook_output(partner, batch_max_records=25, batch_linger_ms=200)
    await configure(prefix, [out], {}, partitions=6)
    values = flip_flops(3000, 50)
    log = tmp_path / "sinks.log"
    runners: dict[str, tuple[asyncio.subprocess.Process, int]] = {}

    async def join(name: str) -> None:
        port = free_port()
        runners[name] = (await start_sink_process(prefix, "hook", port, log, ENV), port)

    # Every 20 chunks (about 4 s) one fault; never more than 3 runners at once.
    schedule = {
        20: ("join", "r3"),
        40: ("SIGTERM", "r1"),
        60: ("join", "r4"),
        80: ("SIGKILL", "r2"),
        100: ("join", "r5"),
    }
    async with TrackedTopic(f"{prefix}forward-hook") as tracked:
        audit = CommitAudit(f"{prefix}app-sink-hook", tracked, lambda: partner_keys(partner))
        auditing = asyncio.create_task(audit.run())
        await join("r1")
        await join("r2")
        try:
            for chunk, start in enumerate(range(0, len(values), 25)):
                action, name = schedule.get(chunk, ("", ""))
                if action == "join":
                    await join(name)
                elif action:
                    runners[name][0].send_signal(getattr(signal, action))
                await tracked.produce(values[start : start + 25])
                await asyncio.sleep(0.2)
            await wait_processed(prefix, "hook", within_s=90)
            await asyncio.sleep(1)  # one more audit round after the last commit
            alive = {name: runners[name] for name in ("r3", "r4", "r5")}
            healths = [await health(port) for _, port in alive.values()]
            still_running = [process.returncode is None for process, _ in alive.values()]
            left = runners["r1"][0].returncode, runners["r2"][0].returncode
        finally:
            auditing.cancel()
            exits = []
            for process, _ in runners.values():
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                exits.append(await asyncio.wait_for(process.wait(), 30))
            await partner.stop()

    assert left == (0, -signal.SIGKILL), log.read_text()[-3000:]
    assert all(still_running) and exits == [0, -signal.SIGKILL, 0, 0, 0]
    assert all(status == 200 for status, _ in healths), healths
    assert all(body["outputs"]["hook"]["status"] == "ok" for _, body in healths), healths
    assert sum(body["outputs"]["hook"]["partitions"] for _, body in healths) == 6
    assert audit.checks > 10 and audit.undelivered_committed == set()
    losses, duplicates = check_delivered(values, partner)
    assert await dead_letters(prefix, 0) == []
    assert "Traceback" not in log.read_text()
    print(
        f"\nsink rebalances: {len(values)} records, faults: 3 joins, 1 SIGTERM, 1 SIGKILL "
        f"(up to 3 runners), losses: {losses}, duplicates: {duplicates}, "
        f"undelivered commits: {len(audit.undelivered_committed)}"
    )


def partner_keys(partner: FakePartner) -> set[str]:
    return {applied.key for applied in partner.applied}


async def test_partner_down_for_minutes_then_back_delivers_everything(prefix: str) -> None:
    partner = FakePartner("webhook", SECRET, retry_after_s=5)
    await partner.start()
    partner.go_down(OUTAGE_S)
    out = hook_output(partner, batch_max_records=50)
    values = flip_flops(600, 40)
    await configure(prefix, [out], {})
    async with (
        TrackedTopic(f"{prefix}forward-hook") as tracked,
        running_sinks(prefix, ["hook"], ENV) as runner,
    ):
        port = runner.sink_settings.web_port
        audit = CommitAudit(f"{prefix}app-sink-hook", tracked, lambda: partner_keys(partner))
        auditing = asyncio.create_task(audit.run(every_s=2))
        try:
            during: list[tuple[int, str]] = []
            for start in range(0, len(values), 50):  # records keep coming during the outage
                await tracked.produce(values[start : start + 50])
                await asyncio.sleep(1)
            while time.monotonic() < partner.down_until - 1:
                status, body = await health(port)
                during.append((status, body["outputs"]["hook"]["status"]))
                await asyncio.sleep(5)
            await wait_processed(prefix, "hook", within_s=60)
            after = await health(port)
        finally:
            auditing.cancel()
    await partner.stop()

    # Down is reported, but the runner is alive: no restart by its supervisor.
    assert during and all(status == 200 for status, _ in during), during
    assert [state for _, state in during].count("partner_down") >= len(during) // 2, during
    assert after[0] == 200 and after[1]["outputs"]["hook"]["status"] == "ok", after
    assert partner.outage_answers > 10
    assert audit.undelivered_committed == set()
    losses, duplicates = check_delivered(values, partner)
    assert await dead_letters(prefix, 0) == []  # nothing dead-lettered for a transient failure
    print(
        f"\nsink partner outage: {len(values)} records, faults: partner down {OUTAGE_S:.0f} s "
        f"({partner.outage_answers} answers of 503/429 with Retry-After), losses: {losses}, "
        f"duplicates: {duplicates}, dead letters: 0"
    )
