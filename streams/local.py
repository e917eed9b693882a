"""Local tooling around a real broker and real worker processes.

Used by the demo, the benchmarks and the integration tests, so that all three drive the
service the way an operator does: a `forwarder worker` process and plain Kafka topics.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from streams.kafka_admin import topic_partitions

BOOTSTRAP = os.environ.get("FORWARDER_KAFKA_BOOTSTRAP") or (
    f"127.0.0.1:{os.environ.get('FORWARDER_KAFKA_PORT', '9092')}"
)
REPO = Path(__file__).resolve().parents[1]


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (Prometheus text)."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def encode(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return json.dumps(value).encode()


def encode_key(key: str | bytes | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


async def produce_async(topic: str, records: Iterable[tuple[Any, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=encode_key(key), value=encode(value))
            for key, value in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def produce(topic: str, records: Iterable[tuple[Any, Any]]) -> None:
    asyncio.run(produce_async(topic, list(records)))


async def consume_async(
    topic: str, expected: int, wait_s: float, settle: float
) -> list[tuple[str | None, dict[str, Any], int]]:
    """Read a topic from the start until ``expected`` records arrived, then ``settle`` seconds
    more to catch extras; returns (key, value, partition) tuples, tombstones left out."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[tuple[str | None, dict[str, Any], int]] = []
    try:
        deadline = time.monotonic() + wait_s
        partitions = await topic_partitions({"bootstrap_servers": BOOTSTRAP}, [topic])
        while not partitions and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            partitions = await topic_partitions({"bootstrap_servers": BOOTSTRAP}, [topic])
        if not partitions:
            return found
        consumer.assign(partitions)
        settle_until: float | None = None
        while True:
            now = time.monotonic()
            if now > deadline or (settle_until is not None and now > settle_until):
                break
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                for message in messages:
                    if message.value is None:
                        continue  # a tombstone (compacted topics, changelogs)
                    key = message.key.decode() if message.key is not None else None
                    found.append((key, json.loads(message.value), message.partition))
            if settle_until is None and len(found) >= expected:
                settle_until = time.monotonic() + settle
    finally:
        await consumer.stop()
    return found


def consume(
    topic: str, expected: int, timeout: float = 60.0, settle: float = 1.0
) -> list[tuple[str | None, dict[str, Any], int]]:
    return asyncio.run(consume_async(topic, expected, timeout, settle))


async def create_topics_async(names: list[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
        )
    finally:
        await admin.close()


async def list_topics_async() -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@dataclass
class Worker:
    """A real `forwarder worker` process."""

    prefix: str
    app_id: str
    data_dir: Path
    partitions: int = 2
    extra_env: dict[str, str] = field(default_factory=dict)
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "FORWARDER_KAFKA_BOOTSTRAP": BOOTSTRAP,
                "FORWARDER_TOPIC_PREFIX": self.prefix,
                "FORWARDER_APP_ID": self.app_id,
                "FORWARDER_INPUT_PARTITIONS": str(self.partitions),
                "FORWARDER_OUTBOUND_PARTITIONS": str(self.partitions),
                "FORWARDER_WEB_PORT": str(self.web_port),
                "FORWARDER_DATA_DIR": str(self.data_dir),
                "FORWARDER_LOG_LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 90.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"worker-{self.web_port}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=self.env(),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready(timeout)

    def health(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.web_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                return dict(json.loads(response.read()))
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def wait_ready(self, timeout: float, outputs: int = 0, connections: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.log_tail()}")
            health = self.health()
            if (
                health
                and health.get("ready")
                and health["outputs"] >= outputs
                and health["connections"] >= connections
            ):
                return
            time.sleep(0.25)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
