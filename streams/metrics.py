"""Prometheus metrics of the stream processor."""

from __future__ import annotations

from prometheus_client import Counter

FORWARDED = Counter(
    "forwarder_records_forwarded",
    "Outbound records sent, per output and action.",
    ["output_id", "action"],
)
DROPPED = Counter(
    "forwarder_records_dropped",
    "Records not sent (or attribute lists ignored), per output and reason.",
    ["output_id", "reason"],
)
DEAD_LETTERS = Counter(
    "forwarder_dead_letters",
    "Input records sent to the dead-letter topic, per source topic and error kind.",
    ["topic", "kind"],
)
