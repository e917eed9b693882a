"""The synthetic workload: profiles, memberships, outputs, connections and stored state.

Values are built with orjson from templates (a million pydantic round trips would take longer
than the scenarios); the first of each kind is checked against the contract models so that the
templates cannot drift from the schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from benchmarks.harness import Record
from schemas.records import ConnectionConfig, MembershipEvent, OutputConfig, ProfileUpdate
from schemas.state import STATE_VERSION, load_profile
from streams.processor import state_key

TIMESTAMP_MS = 1_764_400_000_000
AUDIENCE = "aud-bench"
SECOND_AUDIENCE = "aud-bench-2"
# Three outputs accepting different identity types: every member goes to all three.
OUTPUT_IDENTITIES = {"out-email": "email", "out-idfa": "ios_idfa", "out-customer": "customer_id"}


def mpid(n: int) -> bytes:
    return str(10_000_000 + n).encode()


def identities(n: int) -> dict[str, str]:
    return {
        "email": f"user{n}@example.com",
        "ios_idfa": f"6D92078A-8246-4BA4-AE5B-{n:012d}",
        "customer_id": f"cust-{n}",
    }


def attributes(n: int) -> dict[str, Any]:
    return {"ltv": n % 1000, "plan": "pro", "country": "DE", "age": 20 + n % 50, "churn": 0.1}


def profile_update(n: int, timestamp_ms: int = TIMESTAMP_MS) -> bytes:
    return orjson.dumps(
        {
            "type": "profile_update",
            "mpid": mpid(n).decode(),
            "timestamp_ms": timestamp_ms,
            "identities": identities(n),
            "attributes": attributes(n),
        }
    )


def membership(
    n: int, audience: str = AUDIENCE, action: str = "add", timestamp_ms: int = TIMESTAMP_MS
) -> bytes:
    return orjson.dumps(
        {
            "mpid": mpid(n).decode(),
            "audience_id": audience,
            "audience_name": audience,
            "action": action,
            "timestamp_ms": timestamp_ms,
        }
    )


def profile_state(n: int) -> bytes:
    """A profiles-table value: 3 identities, 5 attributes, 2 memberships, nothing sent yet."""
    membership_state = {"member": True, "audience_name": None, "timestamp_ms": TIMESTAMP_MS}
    return orjson.dumps(
        {
            "mpid": mpid(n).decode(),
            "identities": {kind: [value] for kind, value in identities(n).items()},
            "attributes": attributes(n),
            "memberships": {AUDIENCE: membership_state, SECOND_AUDIENCE: membership_state},
            "sent": {},
            "consent": {"gdpr": {}, "ccpa": None},
            "v": STATE_VERSION,
        }
    )


def output(output_id: str, accepted: str) -> bytes:
    return orjson.dumps(
        {
            "output_id": output_id,
            "partner": "custom",
            "name": output_id,
            "accepted_identities": [accepted],
            "supports_attributes": False,
            "settings": {},
        }
    )


def connection(connection_id: str, audience: str, output_id: str) -> bytes:
    return orjson.dumps(
        {
            "connection_id": connection_id,
            "audience_id": audience,
            "output_id": output_id,
            "status": "active",
            "forwarded_attributes": [],
        }
    )


def connection_id(audience: str, output_id: str) -> str:
    return f"{audience}-to-{output_id}"


def check_templates() -> None:
    """Each template parses as its contract model (strict, as the worker parses them)."""
    ProfileUpdate.model_validate_json(profile_update(0))
    MembershipEvent.model_validate_json(membership(0))
    # already the current state format: loading it changes nothing
    assert load_profile(profile_state(0)) == orjson.loads(profile_state(0))
    OutputConfig.model_validate_json(output("out-email", "email"))
    ConnectionConfig.model_validate_json(connection("c", AUDIENCE, "out-email"))


def profile_updates(start: int, count: int, partitions: int) -> Iterator[Record]:
    return ((n % partitions, mpid(n), profile_update(n)) for n in range(start, start + count))


def memberships(start: int, count: int, partitions: int) -> Iterator[Record]:
    return ((n % partitions, mpid(n), membership(n)) for n in range(start, start + count))


def profile_states(count: int, partitions: int) -> Iterator[Record]:
    """Changelog records of the profiles table, keyed as the worker keys them."""
    return (
        (n % partitions, state_key(n % partitions, mpid(n).decode()), profile_state(n))
        for n in range(count)
    )


def stale_membership(n: int) -> bytes:
    """A remove older than the stored membership: dropped as stale only if that is known."""
    return membership(n, SECOND_AUDIENCE, "remove", TIMESTAMP_MS - 1)
