"""Whether a worker is healthy: plain bookkeeping, no Faust, so it can be tested alone.

A worker is unhealthy when its processing has crashed, or when input is waiting and no batch
has completed for ``stall_timeout_s`` (a wedged partition, a send that never returns), except
while it recovers its tables, which is progress of another kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from streams.offsets import next_offsets
from streams.processor import InputRecord


class WorkerHealth:
    def __init__(self, stall_timeout_s: float, clock: Callable[[], float] = time.monotonic):
        self.stall_timeout_s = stall_timeout_s
        self._clock = clock
        self.crash_reason: str | None = None
        self._last_progress = clock()
        self._waiting_since: float | None = None
        # Next offset to process per (topic, partition), from completed batches.
        self.next_offsets: dict[tuple[str, int], int] = {}

    def batch_done(self, records: Iterable[InputRecord]) -> None:
        self._last_progress = self._clock()
        self.next_offsets.update(next_offsets(records))

    def crashed(self, reason: BaseException) -> None:
        self.crash_reason = f"{type(reason).__name__}: {reason}"

    def waiting(self, high_watermarks: Mapping[tuple[str, int], int | None]) -> bool:
        """Whether any partition has records past what was processed (unknown: not waiting)."""
        return any(
            high is not None and high > self.next_offsets.get(tp, 0)
            for tp, high in high_watermarks.items()
        )

    def observe(self, *, waiting: bool, recovering: bool) -> None:
        """Called every few seconds: the stall clock runs only while input waits."""
        if not waiting or recovering:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = self._clock()

    def problem(self) -> str | None:
        """Why the worker is unhealthy, or None."""
        if self.crash_reason is not None:
            return f"processing crashed: {self.crash_reason}"
        if self._waiting_since is not None:
            stalled = self._clock() - max(self._waiting_since, self._last_progress)
            if stalled > self.stall_timeout_s:
                return f"input waiting and no batch completed for {stalled:.0f} s"
        return None
