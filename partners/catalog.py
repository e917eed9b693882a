"""The partner catalog: which identity types and attributes each kind of partner accepts.

An output names one entry. For catalog partners the entry fixes what the partner can take and
an output may only narrow it; the entry "custom" takes both from the output record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.records import IdentityType, OutputConfig

I = IdentityType


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: requests per second, and how many may go at once after a quiet spell."""

    per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class Partner:
    name: str
    description: str
    accepted_identities: frozenset[IdentityType]
    supports_attributes: bool
    # "custom": accepted identities and attribute support come from each output record.
    configurable: bool = False
    # Delivery facts, read by the sink runner (sinks/runner.py).
    # The built-in adapter that delivers to it; None: downstream teams consume the topic.
    adapter: str | None = None
    # The partner's documented maximum of records (rows, objects) in one request.
    batch_limit: int = 1000
    rate_limit: RateLimit = RateLimit(per_second=10.0, burst=10)
    # Identity types sent as SHA-256 of the normalized value.
    hashed_identities: frozenset[IdentityType] = frozenset()


CATALOG: dict[str, Partner] = {
    partner.name: partner
    for partner in (
        Partner(
            name="custom",
            description="Any partner: the output record says which identities it accepts.",
            accepted_identities=frozenset(IdentityType),
            supports_attributes=True,
            configurable=True,
        ),
        Partner(
            name="ad-audiences",
            description="Ad platform audience API (shaped like Meta Custom Audiences): "
            "hashed email and phone, mobile advertising ids.",
            accepted_identities=frozenset({I.EMAIL, I.MOBILE_NUMBER, I.IOS_IDFA, I.ANDROID_AAID}),
            supports_attributes=False,
            adapter="ad-audiences",
            batch_limit=10_000,
            # Marketing API calls are scored per ad account; a few large calls a second is safe.
            rate_limit=RateLimit(per_second=5.0, burst=5),
            hashed_identities=frozenset({I.EMAIL, I.MOBILE_NUMBER}),
        ),
        Partner(
            name="push",
            description="Push messaging service: push tokens.",
            accepted_identities=frozenset({I.PUSH_TOKEN}),
            supports_attributes=False,
        ),
        Partner(
            name="email-crm",
            description="Email and engagement tool (shaped like Braze /users/track): "
            "email and customer id, with user attributes.",
            accepted_identities=frozenset({I.EMAIL, I.CUSTOMER_ID}),
            supports_attributes=True,
            adapter="email-crm",
            batch_limit=75,
            # /users/track allows 50,000 requests a minute per workspace (about 830 a second).
            rate_limit=RateLimit(per_second=100.0, burst=100),
        ),
        Partner(
            name="webhook",
            description="Any HTTP endpoint: JSON batches POSTed to a URL; the output record "
            "says which identities it accepts.",
            accepted_identities=frozenset(IdentityType),
            supports_attributes=True,
            configurable=True,
            adapter="webhook",
            batch_limit=1000,
            rate_limit=RateLimit(per_second=20.0, burst=20),
        ),
        Partner(
            name="jsonl",
            description="Files of JSON lines rotated by size, for warehouse loaders; the output "
            "record says which identities it accepts.",
            accepted_identities=frozenset(IdentityType),
            supports_attributes=True,
            configurable=True,
            adapter="jsonl",
            batch_limit=10_000,
            # A local disk needs no limit; the bucket never empties at this rate.
            rate_limit=RateLimit(per_second=1_000_000.0, burst=1_000_000),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Output:
    """An output resolved against its catalog entry: what the forwarder may send it."""

    output_id: str
    partner: str
    name: str
    accepted_identities: frozenset[IdentityType]
    supports_attributes: bool
    settings: dict[str, Any]


class OutputConfigError(ValueError):
    """An output record that names an unknown partner or asks for more than the partner takes."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def resolve_output(config: OutputConfig) -> Output:
    partner = CATALOG.get(config.partner)
    if partner is None:
        # The name given is not quoted: an error never repeats input.
        known = ", ".join(sorted(CATALOG))
        raise OutputConfigError("partner", f"unknown partner (known: {known})")
    requested = frozenset(config.accepted_identities or ())
    if partner.configurable:
        if not requested:
            raise OutputConfigError(
                "accepted_identities",
                f"a {partner.name} output must list the identity types it accepts",
            )
        accepted = requested
        supports_attributes = bool(config.supports_attributes)
    else:
        extra = requested - partner.accepted_identities
        if extra:
            names = ", ".join(sorted(extra))
            raise OutputConfigError(
                "accepted_identities", f"partner {partner.name!r} does not accept {names}"
            )
        accepted = requested or partner.accepted_identities
        if config.supports_attributes and not partner.supports_attributes:
            raise OutputConfigError(
                "supports_attributes", f"partner {partner.name!r} does not take attributes"
            )
        supports_attributes = (
            partner.supports_attributes and config.supports_attributes is not False
        )
    return Output(
        output_id=config.output_id,
        partner=partner.name,
        name=config.name,
        accepted_identities=accepted,
        supports_attributes=supports_attributes,
        settings=dict(config.settings),
    )
