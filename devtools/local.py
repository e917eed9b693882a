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

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

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


async def produce_async(
    topic: str, records: Iterable[tuple[Any, Any]], bootstrap: str = BOOTSTRAP
) -> list[tuple[int, int]]:
    """Produce and wait for the acknowledgements; returns each record's (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=encode_key(key), value=encode(value))
            for key, value in records
        ]
        written = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(meta.partition, meta.offset) for meta in written]


def produce(
    topic: str, records: Iterable[tuple[Any, Any]], bootstrap: str = BOOTSTRAP
) -> list[tuple[int, int]]:
    return asyncio.run(produce_async(topic, list(records), bootstrap))


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


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int


async def end_offsets_async(
    topics: list[str], bootstrap: str = BOOTSTRAP
) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topics`` (missing topics have none)."""
    partitions = await topic_partitions({"bootstrap_servers": bootstrap}, topics) or []
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(list(partitions)))
    finally:
        await consumer.stop()


async def read_to_end_async(topic: str, bootstrap: str = BOOTSTRAP) -> list[Message]:
    """Every record of ``topic`` up to its current end, tombstones included."""
    ends = {tp: end for tp, end in (await end_offsets_async([topic], bootstrap)).items() if end}
    found: list[Message] = []
    if not ends:
        return found
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        # Dead letters and refused records may be up to the broker's 1 MB limit.
        max_partition_fetch_bytes=2 * 1024 * 1024,
        fetch_max_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        unread = dict(ends)
        while unread:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, messages in batches.items():
                found.extend(
                    Message(m.key, m.value, tp.partition, m.offset)
                    for m in messages
                    if m.offset < ends[tp]
                )
            for tp in list(unread):
                if await consumer.position(tp) >= unread[tp]:
                    del unread[tp]
    finally:
        await consumer.stop()
    return found


async def committed_offsets_async(
    group: str, topics: list[str], bootstrap: str = BOOTSTRAP
) -> dict[TopicPartition, int]:
    """The consumer group's committed offset of every partition of ``topics`` (-1: none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp: (meta.offset if meta is not None else -1)
        for tp, meta in committed.items()
        if tp.topic in topics
    }


@dataclass
class Broker:
    """A broker of a test's own (scripts/kafka/kafka.sh on other ports), to stop and restart."""

    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str) -> None:
        env = dict(os.environ)
        env.update(
            {
                "FORWARDER_KAFKA_PORT": str(self.port),
                "FORWARDER_KAFKA_CONTROLLER_PORT": str(self.controller_port),
                "FORWARDER_KAFKA_BOOTSTRAP": self.bootstrap,
                "FORWARDER_KAFKA_HEAP": "-Xms128m -Xmx512m",
            }
        )
        done = subprocess.run(
            ["bash", str(REPO / "scripts/kafka/kafka.sh"), *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"kafka.sh {' '.join(args)}: {done.stdout}{done.stderr}")

    def up(self) -> None:
        self._run("up")

    def down(self, wipe: bool = False) -> None:
        """Stop the broker (SIGTERM, a controlled shutdown); its data stays unless ``wipe``."""
        self._run("down", *(["--wipe"] if wipe else []))


class Service:
    """A `forwarder` subcommand running as a process, its output in a log file."""

    process: subprocess.Popen[bytes] | None
    log_path: Path | None

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def spawn(self, command: str, log_path: Path) -> None:
        self.log_path = log_path
        # Appending: a restarted process keeps the log of the one before it.
        log = log_path.open("ab")
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

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crashed host or an OOM kill."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self, within: float = 30.0) -> float:
        """SIGTERM; the seconds the process took to exit. AssertionError (after a SIGKILL)
        when it is still running ``within`` seconds later."""
        assert self.process is not None
        started = time.monotonic()
        self.process.terminate()
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"{type(self).__name__} still running {within}s after SIGTERM:\n{self.log_tail()}"
            ) from None
        return time.monotonic() - started

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
    bootstrap: str = BOOTSTRAP
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update(
            {
                "FORWARDER_KAFKA_BOOTSTRAP": self.bootstrap,
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
        """Start the process (again, after a stop, on the same data dir) and wait until ready."""
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Spawn the process without waiting for it to be ready (the benchmarks time that)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.spawn("worker", self.data_dir / f"worker-{self.web_port}.log")

    def health(self) -> dict[str, Any] | None:
        return self.get_json(f"http://127.0.0.1:{self.web_port}/healthz")

    def probe(self, path: str = "/healthz") -> int | None:
        """The HTTP status of a probe (503 included), None when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

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
