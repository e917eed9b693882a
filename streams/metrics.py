"""Prometheus metrics of the stream processor."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FORWARDED = Counter(
    "forwarder_records_forwarded",
    "Outbound records sent, per output, connection and action.",
    ["output_id", "connection_id", "action"],
)
DROPPED = Counter(
    "forwarder_records_dropped",
    "Records not sent (or attribute lists ignored), per output, connection and reason.",
    ["output_id", "connection_id", "reason"],
)
LAST_RECORD = Gauge(
    "forwarder_last_record_timestamp_seconds",
    "When the last outbound record of a connection was sent (Unix time).",
    ["output_id", "connection_id"],
)
DEAD_LETTERS = Counter(
    "forwarder_dead_letters",
    "Input records sent to the dead-letter topic, per source topic and error kind.",
    ["topic", "kind"],
)
LATENCY = Histogram(
    "forwarder_processing_latency_seconds",
    "From an input record's Kafka timestamp to Kafka's acknowledgement of its outbound records.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CONSUMER_LAG = Gauge(
    "forwarder_consumer_lag",
    "Records between an input partition's high watermark and the worker's fetch position.",
    ["topic", "partition"],
)
TABLE_SIZE = Gauge(
    "forwarder_table_profiles",
    "Profiles held in this worker's table (memory store; not counted with RocksDB).",
)
SYNC_PROFILES = Gauge(
    "forwarder_sync_profiles",
    "Profiles an initial sync (or a config change's sync) of a connection has to check, "
    "summed over this worker's partitions and syncs.",
    ["connection_id"],
)
SYNC_PROFILES_DONE = Gauge(
    "forwarder_sync_profiles_done",
    "Profiles checked so far by the syncs of a connection; equal to forwarder_sync_profiles "
    "when they are done.",
    ["connection_id"],
)
PREVIEW_RECORDS = Counter(
    "forwarder_preview_records",
    "Records a connection in preview would have sent (none is), per output, connection and action.",
    ["output_id", "connection_id", "action"],
)
PREVIEW_MEMBERS = Gauge(
    "forwarder_preview_members",
    "Profiles a connection in preview would have its partner hold: the changes this worker "
    "evaluated since it started, summed over workers.",
    ["output_id", "connection_id"],
)
PREVIEW_MEMBER_IDENTITIES = Gauge(
    "forwarder_preview_member_identities",
    "Of forwarder_preview_members, those that would be sent with each identity type.",
    ["output_id", "connection_id", "identity_type"],
)
RESYNC_DONE = Gauge(
    "forwarder_resync_generation_done",
    "The last resync generation of a connection that this worker finished on a partition.",
    ["connection_id", "partition"],
)
PARTNER_PROFILES = Gauge(
    "forwarder_partner_profiles",
    "Profiles a connection's partner holds (was sent and not removed), per input partition this "
    "worker owns, published every FORWARDER_PARTNER_COUNT_INTERVAL_S.",
    ["output_id", "connection_id", "partition"],
)
