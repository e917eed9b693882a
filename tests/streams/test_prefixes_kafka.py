"""Two deployments on one cluster with different topic prefixes share nothing: not the topics,
not the table's changelog, not the consumer group."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from devtools.local import BOOTSTRAP, Worker, consume, produce
from tests.streams.test_forwarding_kafka import configure, connect, custom_output, member, profile


async def _groups_and_topics() -> tuple[set[str], set[str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        groups = {group[0] for group in await admin.list_consumer_groups()}
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    return groups, topics


def test_two_prefixes_with_one_app_id_share_no_state(tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    app_id = f"shared-{run}"  # the same FORWARDER_APP_ID in both deployments
    mpids = [f"p{n}" for n in range(20)]
    for env in ("staging", "prod"):
        worker = Worker(prefix=f"{env}-{run}.", app_id=app_id, data_dir=tmp_path / env)
        worker.start()
        try:
            configure(worker, [custom_output("out", ["email"])], [connect("c", "aud", "out")])
            produce(
                worker.topic("profile-updates"),
                [(m, profile(m, {"email": f"{m}@x.io"})) for m in mpids],
            )
            produce(worker.topic("audience-memberships"), [(m, member(m, "aud")) for m in mpids])
            # Before the fix the second deployment recovered the first one's state, which said
            # these profiles had been sent, and forwarded none of them.
            forwarded = consume(worker.topic("forward-out"), expected=len(mpids))
            assert sorted(v["mpid"] for _, v, _ in forwarded) == sorted(mpids), worker.log_tail()
        finally:
            worker.stop()
    groups, topics = asyncio.run(_groups_and_topics())
    assert {f"staging-{run}.{app_id}", f"prod-{run}.{app_id}"} <= groups
    assert app_id not in groups
    assert {
        f"staging-{run}.{app_id}-profiles-changelog",
        f"prod-{run}.{app_id}-profiles-changelog",
    } <= topics
    assert not any(topic.startswith(app_id) for topic in topics)
