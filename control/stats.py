"""Per-connection statistics, summed from the workers' Prometheus expositions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from control.bodies import ConnectionStats, PreviewStats, SyncProgress
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
    resync_done: dict[str, float] = {}
    for text in expositions:
        for sample in metric_samples(text, "forwarder_resync_generation_done", connection_id=key):
            partition = sample.labels["partition"]
            resync_done[partition] = max(resync_done.get(partition, 0.0), sample.value)
    generation = connection.resync_generation
    return ConnectionStats(
        connection_id=connection.connection_id,
        output_id=connection.output_id,
        status=connection.status,
        added=int(forwarded.get("add", 0)),
        removed=int(forwarded.get("remove", 0)),
        attribute_updates=int(forwarded.get("attribute_update", 0)),
        dropped={reason: int(count) for reason, count in sorted(dropped.items())},
        last_record_timestamp=max(last, default=None),
        # A worker exports the gauges once it has begun a sync of the connection.
        sync=SyncProgress(profiles=int(sum(s.value for s in sync)), done=int(sync_done))
        if sync
        else None,
        resync_generation=generation,
        resync_partitions_done=sum(
            1 for done in resync_done.values() if generation and done >= generation
        ),
        partner_profiles=int(_summed(expositions, "forwarder_partner_profiles", labels)),
        preview=_preview(expositions, labels) if connection.status == "preview" else None,
        workers_scraped=len(expositions),
        workers_unreachable=unreachable,
    )


def _summed(expositions: Sequence[str], name: str, labels: dict[str, str]) -> float:
    return sum(metric_value(text, name, **labels) for text in expositions)


def _preview(expositions: Sequence[str], labels: dict[str, str]) -> PreviewStats:
    by_type: dict[str, float] = {}
    would_send: dict[str, float] = {}
    for text in expositions:
        for sample in metric_samples(text, "forwarder_preview_member_identities", **labels):
            kind = sample.labels["identity_type"]
            by_type[kind] = by_type.get(kind, 0.0) + sample.value
        for sample in metric_samples(text, "forwarder_preview_records_total", **labels):
            action = sample.labels["action"]
            would_send[action] = would_send.get(action, 0.0) + sample.value
    return PreviewStats(
        members=int(_summed(expositions, "forwarder_preview_members", labels)),
        members_by_identity_type={kind: int(n) for kind, n in sorted(by_type.items()) if n},
        would_send={action: int(n) for action, n in sorted(would_send.items())},
    )
