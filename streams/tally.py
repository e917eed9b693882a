"""Per-batch metric counts: the processor counts each decision here and flushes once per batch.

A Prometheus ``labels()`` look-up and increment per record costs more than the decision itself;
summing per label set first leaves one update per label set and batch.
"""

from __future__ import annotations

import time
from collections import Counter

from streams import metrics
from streams.forwarding import Decision, Previewed


class BatchMetrics:
    def __init__(self) -> None:
        self.forwarded: Counter[tuple[str, str, str]] = Counter()
        self.dropped: Counter[tuple[str, str, str]] = Counter()
        self.sent_to: set[tuple[str, str]] = set()
        self.previewed: Counter[tuple[str, str, str]] = Counter()
        self.preview_members: Counter[tuple[str, str]] = Counter()
        self.preview_identities: Counter[tuple[str, str, str]] = Counter()

    def count(self, decision: Decision) -> None:
        for record in decision.records:
            self.forwarded[(record.output_id, record.connection_id, record.action)] += 1
            self.sent_to.add((record.output_id, record.connection_id))
        for drop in decision.drops:
            self.dropped[(drop.output_id or "", drop.connection_id or "", drop.reason)] += 1
        if decision.previews is not None:
            self._count_previews(decision.previews)

    def _count_previews(self, previews: list[Previewed]) -> None:
        for preview in previews:
            connection = (preview.output_id, preview.connection_id)
            for action in preview.actions:
                self.previewed[(*connection, action)] += 1
            self.preview_members[connection] += preview.member_delta
            for identity_type, delta in preview.identity_deltas.items():
                self.preview_identities[(*connection, identity_type)] += delta

    def flush(self) -> None:
        """Apply the counts to the Prometheus metrics and start over."""
        for labels, count in self.forwarded.items():
            metrics.FORWARDED.labels(*labels).inc(count)
        now = time.time()
        for output_id, connection_id in self.sent_to:
            metrics.LAST_RECORD.labels(output_id, connection_id).set(now)
        for labels, count in self.dropped.items():
            metrics.DROPPED.labels(*labels).inc(count)
        for labels, count in self.previewed.items():
            metrics.PREVIEW_RECORDS.labels(*labels).inc(count)
        for connection, delta in self.preview_members.items():
            metrics.PREVIEW_MEMBERS.labels(*connection).inc(delta)
        for labels, delta in self.preview_identities.items():
            metrics.PREVIEW_MEMBER_IDENTITIES.labels(*labels).inc(delta)
        self.forwarded.clear()
        self.dropped.clear()
        self.sent_to.clear()
        self.previewed.clear()
        self.preview_members.clear()
        self.preview_identities.clear()
