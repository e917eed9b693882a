"""Per-batch metric counts reach Prometheus when the batch is flushed, summed per label set."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from streams.forwarding import Decision, Drop, Outbound, Previewed
from streams.tally import BatchMetrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_counts_are_applied_once_per_batch_and_then_start_over() -> None:
    labels = {"output_id": "tally-out", "connection_id": "tally-c"}
    before_add = sample("forwarder_records_forwarded_total", **labels, action="add")
    before_drop = sample("forwarder_records_dropped_total", **labels, reason="consent")
    add = Outbound("tally-out", "tally-c", "add", "1", b"{}")
    decision = Decision(
        state=None, records=[add, add], drops=[Drop("consent", "tally-out", "tally-c")]
    )
    tally = BatchMetrics()
    tally.count(decision)
    tally.count(decision)
    assert sample("forwarder_records_forwarded_total", **labels, action="add") == before_add
    flushed_at = time.time()
    tally.flush()
    assert sample("forwarder_records_forwarded_total", **labels, action="add") == before_add + 4
    assert sample("forwarder_records_dropped_total", **labels, reason="consent") == before_drop + 2
    assert sample("forwarder_last_record_timestamp_seconds", **labels) >= flushed_at
    tally.flush()  # nothing counted since: nothing added
    assert sample("forwarder_records_forwarded_total", **labels, action="add") == before_add + 4


def test_a_preview_counts_members_and_identity_types_and_sends_nothing() -> None:
    labels = {"output_id": "tally-pre", "connection_id": "tally-p"}
    joined = Previewed("tally-pre", "tally-p", ["add"], 1, {"email": 1, "ios_idfa": 1})
    lost = Previewed("tally-pre", "tally-p", ["remove"], 0, {"ios_idfa": -1})
    tally = BatchMetrics()
    tally.count(Decision(state=None, previews=[joined, joined, lost]))
    tally.flush()
    assert sample("forwarder_preview_members", **labels) == 2
    assert sample("forwarder_preview_member_identities", **labels, identity_type="email") == 2
    assert sample("forwarder_preview_member_identities", **labels, identity_type="ios_idfa") == 1
    assert sample("forwarder_preview_records_total", **labels, action="add") == 2
    assert sample("forwarder_records_forwarded_total", **labels, action="add") == 0
