"""Per-connection statistics, summed from the workers' Prometheus expositions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from control.bodies import ConnectionStats, SyncProgress
from schemas.records import ConnectionConfig


def metric_samples(exposition: str, name: str, **labels: str) -> Iterator[Sample]:
    """The samples of ``name`` whose labels include ``labels`` (Prometheus text format)."""
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                yield sample


def metric_value(exposition: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(sample.value for sample in metric_samples(exposition, name, **labels))


def connection_stats(
    connection: ConnectionConfig, expositions: Sequence[str], unreachable: int
) -> ConnectionStats:
    key = connection.connection_id
    labels = {"output_id": connection.output_id, "connection_id": key}
    forwarded: dict[str, float] = {}
    dropped: dict[str, float] = {}
    last: list[float] = []
    sync: list[Sample] = []
    sync_done = 0.0
    for text in expositions:
        for sample in metric_samples(text, "forwarder_records_forwarded_total", **labels):
            action = sample.labels["action"]
            forwarded[action] = forwarded.get(action, 0.0) + sample.value
        for sample in metric_samples(text, "forwarder_records_dropped_total", **labels):
            reason = sample.labels["reason"]
            dropped[reason] = dropped.get(reason, 0.0) + sample.value
        last += [
            sample.value
            for sample in metric_samples(text, "forwarder_last_record_timestamp_seconds", **labels)
        ]
        sync += metric_samples(text, "forwarder_sync_profiles", connection_id=key)
        sync_done += metric_value(text, "forwarder_sync_profiles_done", connection_id=key)
    return ConnectionStats(
        connection_id=connection.connection_id,
        output_id=connection.output_id,
        added=int(forwarded.get("add", 0)),
        removed=int(forwarded.get("remove", 0)),
        attribute_updates=int(forwarded.get("attribute_update", 0)),
        dropped={reason: int(count) for reason, count in sorted(dropped.items())},
        last_record_timestamp=max(last, default=None),
        # A worker exports the gauges once it has begun a sync of the connection.
        sync=SyncProgress(profiles=int(sum(s.value for s in sync)), done=int(sync_done))
        if sync
        else None,
        workers_scraped=len(expositions),
        workers_unreachable=unreachable,
    )
