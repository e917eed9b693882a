"""Two sink runners of one output, the second joining (twice) while the first delivers."""

from __future__ import annotations

import asyncio

import orjson
from prometheus_client import REGISTRY

from devtools.local import produce_async
from tests.support.fake_partners import FakePartner
from tests.support.sink_records import outbound_value
from tests.support.sinks import (
    FAST,
    configure,
    dead_letters,
    running_sinks,
    scrape,
    wait_processed,
)

SECRET = "tok-rebalance-5e6f7a8b"


async def test_a_second_runner_joining_under_load_loses_nothing_and_crashes_nothing(
    prefix: str,
) -> None:
    # Slow answers and a long linger: when the group rebalances, the first runner has a batch
    # in flight or one being collected, as it has in production.
    partner = FakePartner("webhook", SECRET, delay_s=0.1)
    await partner.start()
    settings = {
        **FAST,
        "url": partner.base_url + "/hook",
        "token_env": "PARTNER_TOKEN",
        "batch_max_records": 50,
        "batch_linger_ms": 2000,
    }
    out = {"output_id": "hook", "partner": "webhook", "accepted_identities": ["email"]}
    values = [outbound_value(f"m{i % 97}", seq=i, output_id="hook") for i in range(1000)]
    await configure(prefix, [{**out, "settings": settings}], {"hook": values[:200]}, partitions=4)
    env = {"PARTNER_TOKEN": SECRET}
    topic = f"{prefix}forward-hook"

    async with running_sinks(prefix, ["hook"], env) as first:
        while len(partner.applied) < 50:
            assert first.ready, "the first runner stopped"
            await asyncio.sleep(0.01)

        async def produce_rest() -> None:
            # A trickle: the first runner is caught up, collecting a batch within its linger.
            for start in range(200, len(values), 5):
                await produce_async(topic, [(v["mpid"], v) for v in values[start : start + 5]])
                await asyncio.sleep(0.05)

        producing = asyncio.create_task(produce_rest())
        # The second runner joins, leaves once it holds partitions, and joins again.
        async with running_sinks(prefix, ["hook"], env) as second:
            while not second.sinks[0].consumer.assignment():
                assert first.ready, "the first runner stopped"
                await asyncio.sleep(0.05)
        async with running_sinks(prefix, ["hook"], env) as second:
            await producing
            await wait_processed(prefix, "hook", within_s=60)
            runners = (first, second)
            healths = [
                orjson.loads(await scrape(r.sink_settings.web_port, "/healthz")) for r in runners
            ]
            assert all(r.ready for r in runners), "a runner stopped"
    await partner.stop()

    delivered = [applied.key for applied in partner.applied]
    assert set(delivered) == {v["record_id"] for v in values}, "records lost"
    assert partner.problems == []
    # Both runners took part: the partitions were shared once the second one joined.
    assert sorted(h["outputs"]["hook"]["partitions"] for h in healths) == [2, 2]
    duplicates = len(delivered) - len(values)
    print(f"rebalance: {len(values)} records, 2 joins, 1 leave, {duplicates} duplicates")


async def test_a_revoke_outlasting_its_timeout_leaves_the_batch_to_the_next_owner(
    prefix: str,
) -> None:
    # The partner is down when the second runner joins: the first one's batch cannot be
    # accepted within the revoke timeout, so it is dropped uncommitted and delivered later.
    partner = FakePartner("webhook", SECRET, retry_after_s=1)
    await partner.start()
    partner.go_down(10)
    settings = {**FAST, "url": partner.base_url + "/hook", "token_env": "PARTNER_TOKEN"}
    out = {"output_id": "hook", "partner": "webhook", "accepted_identities": ["email"]}
    values = [outbound_value(f"m{i % 31}", seq=i, output_id="hook") for i in range(200)]
    await configure(prefix, [{**out, "settings": settings}], {"hook": values}, partitions=4)
    env = {"PARTNER_TOKEN": SECRET}
    abandoned = {"output_id": "hook"}
    before = REGISTRY.get_sample_value("sink_batches_abandoned_total", abandoned) or 0.0

    async with running_sinks(prefix, ["hook"], env, revoke_timeout_s=1) as first:
        while partner.outage_answers == 0:
            assert first.ready, "the first runner stopped"
            await asyncio.sleep(0.05)
        async with running_sinks(prefix, ["hook"], env, revoke_timeout_s=1) as second:
            await wait_processed(prefix, "hook", within_s=60)
            assert first.ready and second.ready, "a runner stopped"
    await partner.stop()

    after = REGISTRY.get_sample_value("sink_batches_abandoned_total", abandoned) or 0.0
    assert after > before
    assert {applied.key for applied in partner.applied} == {v["record_id"] for v in values}
    assert await dead_letters(prefix, 0) == []
