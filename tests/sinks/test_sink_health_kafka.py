"""/healthz of the sink runner tells the truth: a stalled output and a dead output's loop
answer 503, while the process's other outputs go on delivering."""

from __future__ import annotations

import asyncio

from core.kafka_admin import create_topics
from devtools.local import BOOTSTRAP, produce_async
from tests.support.fake_partners import FakePartner
from tests.support.sink_records import outbound_value
from tests.support.sinks import FAST, configure, health, running_sinks, wait_processed

SECRET = "tok-health-3c4d5e6f"
ENV = {"PARTNER_TOKEN": SECRET}


def hook(output_id: str, partner: FakePartner, **settings: object) -> dict[str, object]:
    return {
        "output_id": output_id,
        "partner": "webhook",
        "accepted_identities": ["email"],
        "settings": {
            **FAST,
            "url": f"{partner.base_url}/{output_id}",
            "token_env": "PARTNER_TOKEN",
            **settings,
        },
    }


async def test_a_batch_taking_longer_than_the_stall_timeout_fails_health_until_done(
    prefix: str,
) -> None:
    # The partner takes 3 s to answer (within the request timeout): no retry, no progress.
    partner = FakePartner("webhook", SECRET, delay_s=3)
    await partner.start()
    values = [outbound_value(f"m{i}", seq=i, output_id="slow") for i in range(5)]
    await configure(prefix, [hook("slow", partner, request_timeout_s=10)], {"slow": values})
    async with running_sinks(prefix, ["slow"], ENV, stall_timeout_s=1) as runner:
        port = runner.sink_settings.web_port
        while partner.requests == 0:
            assert runner.ready
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.5)
        stalled = await health(port)
        await wait_processed(prefix, "slow")
        after = await health(port)
    await partner.stop()

    assert stalled[0] == 503 and stalled[1]["outputs"]["slow"]["status"] == "stalled"
    assert after[0] == 200 and after[1]["outputs"]["slow"]["status"] == "ok"


async def test_one_outputs_loop_dying_leaves_the_others_running(prefix: str) -> None:
    partner = FakePartner("webhook", SECRET)
    await partner.start()
    good = [outbound_value(f"m{i}", seq=i, output_id="good") for i in range(40)]
    # A dead-letter topic that takes no dead letter: writing one fails, and the loop of the
    # output that has to write it dies.
    await create_topics(
        {"bootstrap_servers": BOOTSTRAP},
        [f"{prefix}forwarder-dead-letters"],
        1,
        1,
        {"max.message.bytes": "64"},
    )
    await configure(prefix, [hook("good", partner), hook("poisoned", partner)], {"good": good[:20]})
    async with running_sinks(prefix, ["good", "poisoned"], ENV) as runner:
        port = runner.sink_settings.web_port
        # Not JSON: refused for good, so the poisoned output must write a dead letter.
        await produce_async(f"{prefix}forward-poisoned", [("m0", b"\xff" * 100)])
        for _ in range(200):
            status, body = await health(port)
            if body["outputs"]["poisoned"]["status"] == "dead":
                break
            await asyncio.sleep(0.1)
        await produce_async(f"{prefix}forward-good", [(v["mpid"], v) for v in good[20:]])
        await wait_processed(prefix, "good")
        final = await health(port)
        ready = runner.ready
    await partner.stop()

    assert status == 503 and body["outputs"]["poisoned"]["error"].startswith("MessageSizeTooLarge")
    assert final[0] == 503 and final[1]["outputs"]["good"]["status"] == "ok"
    assert ready, "the process stopped with one output"
    assert {a.key for a in partner.applied} == {v["record_id"] for v in good}
