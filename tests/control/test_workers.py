"""The API's side of the operator questions, without workers: whose answer counts, the export
cursor, whether a resync runs, and the preview and resync figures of the stats."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from control.stats import connection_stats
from control.workers import (
    RESYNC_RUNNING_MAX_S,
    Answer,
    NoOwnerError,
    WorkerRefusedError,
    decode_cursor,
    encode_cursor,
    owner_answer,
    resync_running,
    worker_base_urls,
)
from schemas.records import ConnectionConfig


def test_the_workers_are_found_from_their_metrics_urls() -> None:
    assert worker_base_urls(["http://10.0.0.5:6066/metrics", "http://w2:7000/metrics?x=1"]) == [
        "http://10.0.0.5:6066",
        "http://w2:7000",
    ]


def test_the_owner_answers_and_the_others_do_not_count() -> None:
    owner = Answer(200, {"verdict": "at_partner"})
    assert owner_answer([Answer(421, {"detail": "not mine"}), owner, Answer(0, None)]) == {
        "verdict": "at_partner"
    }
    with pytest.raises(NoOwnerError, match="rebalancing"):
        owner_answer([Answer(421, {}), Answer(503, {"detail": "rebalancing"})])
    with pytest.raises(NoOwnerError, match="no worker owns"):
        owner_answer([Answer(421, {}), Answer(421, {})])
    with pytest.raises(NoOwnerError, match="no worker answered"):
        owner_answer([Answer(0, None)])
    with pytest.raises(NoOwnerError, match="no worker answered"):
        owner_answer([])
    with pytest.raises(WorkerRefusedError):
        owner_answer([Answer(404, {"detail": "no such connection"}), Answer(421, {})])


def test_the_cursor_round_trips_and_refuses_others() -> None:
    for partition, after in ((0, ""), (7, "7:user-ü/42")):
        assert decode_cursor(encode_cursor(partition, after)) == (partition, after)
    assert decode_cursor(None) == decode_cursor("") == (0, "")
    for bad in ("%%%", "bm90IGpzb24", encode_cursor(-1, "x")):
        with pytest.raises(ValueError):
            decode_cursor(bad)


def resync_exposition(done: dict[int, int]) -> str:
    registry = CollectorRegistry()
    gauge = Gauge(
        "forwarder_resync_generation_done", "", ["connection_id", "partition"], registry=registry
    )
    for partition, generation in done.items():
        gauge.labels("c", str(partition)).set(generation)
    return generate_latest(registry).decode()


def test_a_resync_runs_until_every_partition_reports_it() -> None:
    now = 1_000_000
    # Partition 1 moved: its old owner still reports the older generation, its new one this.
    workers = [resync_exposition({0: 2, 1: 1}), resync_exposition({1: 2, 2: 2})]
    assert resync_running("c", 2, now, now, 4, workers)  # partition 3 has not reported
    workers.append(resync_exposition({3: 2}))
    assert not resync_running("c", 2, now, now, 4, workers)
    assert resync_running("c", 3, now, now, 4, workers)
    # A report lost with a restarted worker does not block resyncs for ever.
    late = now + int(RESYNC_RUNNING_MAX_S * 1000) + 1
    assert not resync_running("c", 3, now, late, 4, workers)


def test_the_stats_show_a_preview_and_a_resync() -> None:
    def exposition(members: int) -> str:
        registry = CollectorRegistry()
        gauge = Gauge(
            "forwarder_preview_members", "", ["output_id", "connection_id"], registry=registry
        )
        by_type = Gauge(
            "forwarder_preview_member_identities", "",
            ["output_id", "connection_id", "identity_type"], registry=registry,
        )  # fmt: skip
        records = Counter(
            "forwarder_preview_records", "", ["output_id", "connection_id", "action"],
            registry=registry,
        )  # fmt: skip
        held = Gauge(
            "forwarder_partner_profiles", "", ["output_id", "connection_id", "partition"],
            registry=registry,
        )  # fmt: skip
        gauge.labels("o", "c").set(members)
        by_type.labels("o", "c", "email").set(members)
        by_type.labels("o", "c", "ios_idfa").set(0)
        records.labels("o", "c", "add").inc(members + 1)
        held.labels("o", "c", "0").set(members)
        held.labels("o", "other", "0").set(1000)
        return generate_latest(registry).decode()

    preview = ConnectionConfig(connection_id="c", audience_id="a", output_id="o", status="preview")
    stats = connection_stats(preview, [exposition(3), exposition(4)], unreachable=0)
    assert stats.preview is not None
    assert (stats.preview.members, stats.preview.members_by_identity_type) == (7, {"email": 7})
    assert stats.preview.would_send == {"add": 9}
    assert stats.partner_profiles == 7

    active = ConnectionConfig.model_validate(
        {**preview.model_dump(), "status": "active", "resync": {"generation": 2, "requested_ms": 1}}
    )
    stats = connection_stats(active, [resync_exposition({0: 2, 1: 1})], unreachable=0)
    assert stats.preview is None
    assert (stats.resync_generation, stats.resync_partitions_done) == (2, 1)
