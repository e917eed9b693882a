"""Prometheus metrics of the sink runner, per output. Labels are ids, never settings values."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DELIVERED = Counter(
    "sink_records_delivered", "Records the partner accepted, per output.", ["output_id"]
)
RETRIED = Counter(
    "sink_records_retried",
    "Records sent again after a transient failure (429, 5xx, timeout, connection error).",
    ["output_id"],
)
FAILED = Counter(
    "sink_records_failed",
    "Records the partner refused for good: a whole request (4xx) or one by one.",
    ["output_id", "scope"],
)
DEAD_LETTERED = Counter(
    "sink_records_dead_lettered",
    "Records written to the dead-letter topic, per output and error kind.",
    ["output_id", "kind"],
)
COMMIT_FAILURES = Counter(
    "sink_commit_failures",
    "Offset commits refused (the group had moved on); the records are delivered again.",
    ["output_id"],
)
BATCHES_ABANDONED = Counter(
    "sink_batches_abandoned",
    "Batches cancelled uncommitted because a revoke or stop outlasted revoke_timeout_s.",
    ["output_id"],
)
BATCH_RECORDS = Histogram(
    "sink_batch_records",
    "Records per batch taken from the topic.",
    ["output_id"],
    buckets=(1, 10, 50, 75, 100, 500, 1000, 5000, 10_000),
)
REQUEST_SECONDS = Histogram(
    "sink_request_seconds", "Latency of one send to the partner.", ["output_id", "outcome"]
)


class LastDelivery(Collector):
    """Seconds since each output's last accepted send, computed when scraped."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    def mark(self, output_id: str) -> None:
        self.at[output_id] = time.monotonic()

    def seconds_since(self, output_id: str) -> float | None:
        at = self.at.get(output_id)
        return None if at is None else time.monotonic() - at

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sink_seconds_since_last_delivery",
            "Seconds since the partner last accepted a send, per output.",
            labels=["output_id"],
        )
        for output_id in self.at:
            since = self.seconds_since(output_id)
            if since is not None:
                family.add_metric([output_id], since)
        yield family


LAST_DELIVERY = LastDelivery()
REGISTRY.register(LAST_DELIVERY)
