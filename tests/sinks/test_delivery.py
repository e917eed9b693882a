"""Delivery of a batch: retries with backoff, refusals, rate limit, secrets kept out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from partners.adapters.base import (
    Accepted,
    Adapter,
    AdapterContext,
    AdapterSettings,
    Outcome,
    Plan,
    Refused,
    Retry,
)
from partners.catalog import CATALOG, RateLimit, resolve_output
from partners.secrets import REDACTED, Secrets
from schemas.records import IdentityType, OutboundRecord, OutputConfig
from sinks.delivery import (
    INVALID_IDENTITY,
    PARTNER_REJECTED,
    PARTNER_REJECTED_RECORD,
    Delivery,
    Refusal,
    TokenBucket,
    backoff_seconds,
    rate_limit,
)
from tests.support.sink_records import outbound

SECRET = "very-secret-key"


@dataclass(frozen=True, slots=True)
class Step:
    items: tuple[int, ...]


class ScriptedAdapter(Adapter[Step]):
    """One step per record; answers from a script, then accepts."""

    def __init__(self, script: list[Outcome]) -> None:
        output = resolve_output(
            OutputConfig(
                output_id="out-1", partner="webhook", accepted_identities=[IdentityType.EMAIL]
            )
        )
        super().__init__(
            AdapterContext(output, CATALOG["webhook"], Secrets({"KEY": SECRET}), None)  # type: ignore[arg-type]
        )
        self.script = script
        self.sent: list[Step] = []

    def plan(self, records: Sequence[OutboundRecord]) -> Plan[Step]:
        return Plan(steps=[Step((i,)) for i in range(1, len(records))], rejected={0: "no email"})

    async def send(self, step: Step) -> Outcome:
        self.sent.append(step)
        return self.script.pop(0) if self.script else Accepted()


async def test_transient_failures_are_retried_and_permanent_ones_refused() -> None:
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    adapter = ScriptedAdapter(
        [
            Retry("HTTP 429", after_s=2.0),
            Retry("HTTP 500"),
            Retry("timed out"),
            Accepted(),  # step 1
            Accepted({2: f"bad record for key {SECRET}"}),  # step 2
            Refused(f"HTTP 400: token {SECRET} cannot do that"),  # step 3
        ]
    )
    settings = AdapterSettings(retry_initial_s=0.1, retry_max_s=1.0)
    bucket = TokenBucket(RateLimit(per_second=1000, burst=1000))
    delivery = Delivery("out-1", adapter, settings, bucket, wait)
    records = [outbound(m, seq=i) for i, m in enumerate("abcd")]

    refused = await delivery.deliver(records)

    assert [step.items for step in adapter.sent] == [(1,), (1,), (1,), (1,), (2,), (3,)]
    assert refused == {
        0: Refusal(INVALID_IDENTITY, "no email"),
        2: Refusal(PARTNER_REJECTED_RECORD, f"bad record for key {REDACTED}"),
        3: Refusal(PARTNER_REJECTED, f"HTTP 400: token {REDACTED} cannot do that"),
    }
    backoffs = [w for w in waits if w > 0]
    assert 2.0 <= backoffs[0] <= 2.2  # Retry-After honoured
    assert 0.1 <= backoffs[1] <= 0.2 and 0.2 <= backoffs[2] <= 0.4  # exponential, jittered


def test_backoff_is_capped_and_never_zero() -> None:
    assert backoff_seconds(30, None, 0.5, 60.0, jitter=lambda: 0.0) == 30.0
    assert backoff_seconds(30, None, 0.5, 60.0, jitter=lambda: 1.0) == 60.0
    assert backoff_seconds(0, 0.0, 0.5, 60.0, jitter=lambda: 0.0) == 0.5


def test_token_bucket_allows_a_burst_then_paces() -> None:
    now = [0.0]
    bucket = TokenBucket(RateLimit(per_second=2.0, burst=2), clock=lambda: now[0])
    assert [bucket.take(), bucket.take()] == [0.0, 0.0]
    assert bucket.take() == 0.5
    now[0] = 1.5  # the debt is paid and one token refilled
    assert bucket.take() == 0.0


def test_rate_limit_overrides_per_output() -> None:
    default = RateLimit(per_second=5.0, burst=5)
    assert rate_limit(AdapterSettings(), default) == default
    assert rate_limit(AdapterSettings(rate_per_second=1.0), default) == RateLimit(1.0, 5)
