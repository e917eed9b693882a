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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from control.stats import metric_value
from core.kafka_admin import create_topics, topic_partitions

BOOTSTRAP = os.environ.get("FORWARDER_KAFKA_BOOTSTRAP") or (
    f"127.0.0.1:{os.environ.get('FORWARDER_KAFKA_PORT', '9092')}"
)
REPO = Path(__file__).resolve().parents[1]


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
    await create_topics({"bootstrap_servers": BOOTSTRAP}, names, partitions, replication_factor=1)


class Service:
    """A `forwarder` subcommand running as a process, its output in a log file."""

    process: subprocess.Popen[bytes] | None
    log_path: Path | None

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def spawn(self, command: str, log_path: Path) -> None:
        self.log_path = log_path
        log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "forwarder.cli", command],
            env=self.env(),
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    @staticmethod
    def get_json(url: str) -> dict[str, Any] | None:
        """The JSON object at ``url`` when it answers 200, else None."""
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return dict(json.loads(response.read()))
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def wait_for(self, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        name = type(self).__name__
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{name} exited {self.process.returncode}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.25)
        raise AssertionError(f"{name} not ready in {timeout}s:\n{self.log_tail()}")

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


@dataclass
class Worker(Service):
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
        env = super().env()
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

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/metrics"

    def start(self, timeout: float = 90.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Spawn the process without waiting for it to be ready (the benchmarks time that)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.spawn("worker", self.data_dir / f"worker-{self.web_port}.log")

    def health(self) -> dict[str, Any] | None:
        return self.get_json(f"http://127.0.0.1:{self.web_port}/healthz")

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(self.metrics(), name, **labels)

    def wait_ready(self, timeout: float, outputs: int = 0, connections: int = 0) -> None:
        def ready() -> bool:
            health = self.health()
            return bool(
                health
                and health.get("ready")
                and health["outputs"] >= outputs
                and health["connections"] >= connections
            )

        self.wait_for(ready, timeout)


@dataclass
class ControlApi(Service):
    """A real `forwarder api` process (the control plane) on a topic prefix."""

    prefix: str
    data_dir: Path
    token: str
    worker_metrics_urls: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            {
                "FORWARDER_KAFKA_BOOTSTRAP": BOOTSTRAP,
                "FORWARDER_TOPIC_PREFIX": self.prefix,
                "FORWARDER_API_PORT": str(self.port),
                "FORWARDER_API_TOKEN": self.token,
                "FORWARDER_WORKER_METRICS_URLS": json.dumps(self.worker_metrics_urls),
                "FORWARDER_LOG_LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.spawn("api", self.data_dir / f"api-{self.port}.log")
        self.wait_for(lambda: self.get_json(f"{self.url}/readyz") is not None, timeout)
