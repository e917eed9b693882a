"""Delivering one batch through an adapter: rate limit, retries with backoff, refusals.

``Delivery.deliver`` returns only when every record of the batch is either accepted by the
partner or refused for good (to be dead-lettered): a transient failure is retried, for as long
as it lasts, after a wait the runner spends paused. Steps go one after another, so the order the
adapter's plan gives (per mpid) is the order the partner sees.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from partners.adapters.base import Accepted, Adapter, AdapterSettings, Refused, Retry
from partners.catalog import RateLimit
from schemas.records import OutboundRecord
from sinks import metrics

log = logging.getLogger(__name__)

# Dead-letter error kinds of the sinks.
INVALID_IDENTITY = "invalid_identity"
PARTNER_REJECTED = "partner_rejected"
PARTNER_REJECTED_RECORD = "partner_rejected_record"


class TokenBucket:
    """Requests per second with bursts; ``take`` says how long to wait before the request."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self.tokens = float(limit.burst)
        self.updated = clock()

    def take(self) -> float:
        now = self.clock()
        elapsed = now - self.updated
        self.tokens = min(float(self.limit.burst), self.tokens + elapsed * self.limit.per_second)
        self.updated = now
        # Taking into debt: the wait is how long the debt takes to refill.
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.limit.per_second


def rate_limit(settings: AdapterSettings, default: RateLimit) -> RateLimit:
    """The catalog's rate limit with the output's overrides."""
    return RateLimit(
        per_second=settings.rate_per_second or default.per_second,
        burst=settings.rate_burst or default.burst,
    )


def backoff_seconds(
    attempt: int,
    retry_after_s: float | None,
    initial_s: float,
    max_s: float,
    jitter: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff with jitter, or the partner's Retry-After (plus up to 10% jitter).

    Never less than half the exponential step, so that retries never spin.
    """
    if retry_after_s is not None:
        return max(retry_after_s, initial_s) * (1.0 + 0.1 * jitter())
    step = min(max_s, initial_s * 2.0**attempt)
    return step / 2.0 + step / 2.0 * jitter()


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a record is not delivered: the dead letter's error kind and message."""

    kind: str
    message: str


class Delivery:
    def __init__(
        self,
        output_id: str,
        adapter: Adapter[Any],
        settings: AdapterSettings,
        bucket: TokenBucket,
        wait: Callable[[float], Awaitable[None]],
    ) -> None:
        self.output_id = output_id
        self.adapter = adapter
        self.settings = settings
        self.bucket = bucket
        self.wait = wait
        self.retrying = False

    async def deliver(self, records: Sequence[OutboundRecord]) -> dict[int, Refusal]:
        """Deliver a batch; returns the refused records by index (the rest were accepted)."""
        redact = self.adapter.secrets.redact
        plan = self.adapter.plan(records)
        refused = {
            index: Refusal(INVALID_IDENTITY, redact(reason))
            for index, reason in plan.rejected.items()
        }
        for step in plan.steps:
            attempt = 0
            try:
                while True:
                    await self.wait(self.bucket.take())
                    started = time.perf_counter()
                    outcome = await self.adapter.send(step)
                    metrics.REQUEST_SECONDS.labels(self.output_id, type(outcome).__name__).observe(
                        time.perf_counter() - started
                    )
                    if not isinstance(outcome, Retry):
                        break
                    delay = backoff_seconds(
                        attempt,
                        outcome.after_s,
                        self.settings.retry_initial_s,
                        self.settings.retry_max_s,
                    )
                    log.warning(
                        "output %s: %d records not delivered (%s); retrying in %.1fs",
                        self.output_id,
                        len(step.items),
                        redact(outcome.reason),
                        delay,
                    )
                    metrics.RETRIED.labels(self.output_id).inc(len(step.items))
                    self.retrying = True
                    await self.wait(delay)
                    attempt += 1
            finally:
                # Also when a revoke cancels the batch mid-retry.
                self.retrying = False
            if isinstance(outcome, Refused):
                reason = redact(outcome.reason)
                log.warning(
                    "output %s: partner refused %d records: %s",
                    self.output_id,
                    len(step.items),
                    reason,
                )
                metrics.FAILED.labels(self.output_id, "request").inc(len(step.items))
                refused.update({index: Refusal(PARTNER_REJECTED, reason) for index in step.items})
                continue
            assert isinstance(outcome, Accepted)
            metrics.FAILED.labels(self.output_id, "record").inc(len(outcome.rejected))
            metrics.DELIVERED.labels(self.output_id).inc(len(step.items) - len(outcome.rejected))
            metrics.LAST_DELIVERY.mark(self.output_id)
            refused.update(
                {
                    index: Refusal(PARTNER_REJECTED_RECORD, redact(reason))
                    for index, reason in outcome.rejected.items()
                }
            )
        # Records no step covers (an attribute update for a partner without attributes) count
        # as delivered: there is nothing the partner should hold of them.
        covered = {index for step in plan.steps for index in step.items} | set(refused)
        metrics.DELIVERED.labels(self.output_id).inc(len(records) - len(covered))
        return refused
