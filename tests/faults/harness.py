"""Workers, configuration and a paced load for the fault scenarios, all recorded in a Ledger."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path
from random import Random
from typing import Any

from aiokafka import AIOKafkaProducer

from core.kafka_admin import create_topics, topic_partitions
from devtools.local import BOOTSTRAP, Worker, encode, produce
from schemas import topics
from tests.faults.ledger import (
    AUDIENCE,
    CONNECTIONS,
    OUTPUTS,
    Ledger,
    Outcome,
    connection_config,
    output_config,
)

SEED = 20261129
PARTITIONS = 8
TIMESTAMP_MS = 1764400000000


def make_profiles(rng: Random, count: int, tag: str) -> dict[str, dict[str, str]]:
    """Profiles with a mix of identities: some reach both outputs, some one, some neither."""
    profiles: dict[str, dict[str, str]] = {}
    for n in range(count):
        identities: dict[str, str] = {}
        if rng.random() < 0.7:
            identities["ios_idfa"] = f"IDFA-{tag}-{n}"
        if rng.random() < 0.25:
            identities["android_aaid"] = f"GAID-{tag}-{n}"
        if rng.random() < 0.6:
            identities["email"] = f"{tag}{n}@example.com"
        profiles[f"{tag}-{n}"] = identities
    return profiles


def profile_update(mpid: str, identities: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "profile_update",
        "mpid": mpid,
        "timestamp_ms": TIMESTAMP_MS,
        "identities": identities,
        "attributes": {},
        **extra,
    }


def membership(mpid: str, **extra: Any) -> dict[str, Any]:
    return {
        "mpid": mpid,
        "audience_id": AUDIENCE,
        "audience_name": "Faults",
        "action": "add",
        "timestamp_ms": TIMESTAMP_MS,
        **extra,
    }


class Fleet:
    """2-4 `forwarder worker` processes of one group on 8 partitions, with the test's config."""

    def __init__(self, tmp_path: Path, bootstrap: str = BOOTSTRAP) -> None:
        self.name = f"flt-{uuid.uuid4().hex[:8]}"
        self.tmp_path = tmp_path
        self.bootstrap = bootstrap
        self.workers: list[Worker] = []
        self.ledger = Ledger()

    def new_worker(self) -> Worker:
        worker = Worker(
            prefix=self.name + ".",
            app_id=self.name,
            data_dir=self.tmp_path / f"worker-{len(self.workers)}",
            partitions=PARTITIONS,
            bootstrap=self.bootstrap,
        )
        self.workers.append(worker)
        return worker

    async def _create_copartitioned_topics(self) -> None:
        """Created beforehand, as an operator may: the worker's own start-up check takes a
        topic it created a moment ago, with leaders still unelected, for a missing one."""
        options = {"bootstrap_servers": self.bootstrap}
        names = [
            f"{self.name}.{topic}"
            for topic in (topics.PROFILE_UPDATES, topics.AUDIENCE_MEMBERSHIPS, topics.SYNC)
        ]
        changelog = f"{self.name}.{self.name}-profiles-changelog"
        await create_topics(options, names, PARTITIONS, 1)
        await create_topics(options, [changelog], PARTITIONS, 1, {"cleanup.policy": "compact"})
        # Polling: leaders are elected a moment after the create answers.
        while len(await topic_partitions(options, [*names, changelog]) or []) < 4 * PARTITIONS:  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    def start(self, count: int) -> None:
        """The first worker gets the config; the others join it."""
        asyncio.run(self._create_copartitioned_topics())
        first = self.new_worker()
        first.start()
        produce(
            first.topic("forwarder-outputs"),
            [(o, output_config(o)) for o in OUTPUTS],
            self.bootstrap,
        )
        produce(
            first.topic("forwarder-connections"),
            [(c, connection_config(c)) for c in CONNECTIONS],
            self.bootstrap,
        )
        self.ledger.records += len(OUTPUTS) + len(CONNECTIONS)
        first.wait_ready(60, outputs=len(OUTPUTS), connections=len(CONNECTIONS))
        others = [self.new_worker() for _ in range(count - 1)]
        for worker in others:
            worker.launch()
        for worker in others:
            worker.wait_ready(120, outputs=len(OUTPUTS), connections=len(CONNECTIONS))

    def restart(self, worker: Worker, seen: Outcome) -> None:
        """Start ``worker`` (again, on its data dir); a failure to get ready is a finding."""
        try:
            worker.start(timeout=120)
        except AssertionError as error:
            seen.problem("worker did not get ready", f":{worker.web_port} {str(error)[-300:]}")

    def running(self) -> list[Worker]:
        return [worker for worker in self.workers if worker.alive()]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


class Load(threading.Thread):
    """Produces profiles (an update and a membership each) in chunks over ``seconds``, in the
    background while the test injects faults; each chunk enters the ledger as it is sent."""

    def __init__(
        self, fleet: Fleet, profiles: dict[str, dict[str, str]], seconds: float, chunk: int = 100
    ) -> None:
        super().__init__(daemon=True)
        self.fleet = fleet
        self.profiles = profiles
        self.seconds = seconds
        self.chunk = chunk
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as error:  # reported by finish(), in the test's thread
            self.error = error

    async def _produce(self) -> None:
        worker = self.fleet.workers[0]
        updates, members = worker.topic("profile-updates"), worker.topic("audience-memberships")
        # A long request timeout: records sent while the broker is down wait for it.
        producer = AIOKafkaProducer(
            bootstrap_servers=self.fleet.bootstrap,
            linger_ms=5,
            acks="all",
            request_timeout_ms=120_000,
        )
        await producer.start()
        try:
            items = list(self.profiles.items())
            chunks = [items[i : i + self.chunk] for i in range(0, len(items), self.chunk)]
            pause = self.seconds / max(1, len(chunks))
            for chunk in chunks:
                ledger = self.fleet.ledger
                ledger.profiles.update(chunk)
                ledger.records += 2 * len(chunk)
                futures = []
                for mpid, identities in chunk:
                    key = mpid.encode()
                    update = encode(profile_update(mpid, identities))
                    futures.append(await producer.send(updates, key=key, value=update))
                    futures.append(
                        await producer.send(members, key=key, value=encode(membership(mpid)))
                    )
                await asyncio.gather(*futures)
                await asyncio.sleep(pause)
        finally:
            await producer.stop()

    def finish(self, timeout: float = 180.0) -> None:
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"the load did not finish in {timeout}s")
        if self.error is not None:
            raise AssertionError(f"the load failed: {self.error!r}") from self.error
