"""The synthetic workload: profiles, memberships, outputs and connections.

Input values are pre-encoded byte templates filled with `%` (a few hundred nanoseconds each,
where building a dict and serializing it takes microseconds: millions are written per run).
``check_templates`` parses samples of each with the contract models, strict as the worker is,
so that the templates cannot drift from the schemas.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from benchmarks.harness import Record
from schemas.records import ConnectionConfig, MembershipEvent, OutputConfig, ProfileUpdate

TIMESTAMP_MS = 1_764_400_000_000
AUDIENCE = "aud-bench"
# Three outputs accepting different identity types: every member goes to all three.
OUTPUT_IDENTITIES = {"out-email": "email", "out-idfa": "ios_idfa", "out-customer": "customer_id"}
# The output connected to an audience already held, for the initial sync.
SYNC_OUTPUT = ("out-sync", "email")
_MPID_BASE = 10_000_000

# 3 identities, 5 attributes; fields: mpid, timestamp_ms, n, n, n, ltv, age
_PROFILE_UPDATE = (
    b'{"type":"profile_update","mpid":"%d","timestamp_ms":%d,"identities":'
    b'{"email":"user%d@example.com","ios_idfa":"6D92078A-8246-4BA4-AE5B-%012d",'
    b'"customer_id":"cust-%d"},"attributes":'
    b'{"ltv":%d,"plan":"pro","country":"DE","age":%d,"churn":0.1}}'
)
# fields: mpid, audience (twice), action, timestamp_ms
_MEMBERSHIP = (
    b'{"mpid":"%d","audience_id":"%s","audience_name":"%s","action":"%s","timestamp_ms":%d}'
)


def mpid(n: int) -> bytes:
    return b"%d" % (_MPID_BASE + n)


def profile_update(n: int, timestamp_ms: int = TIMESTAMP_MS) -> bytes:
    return _PROFILE_UPDATE % (_MPID_BASE + n, timestamp_ms, n, n, n, n % 1000, 20 + n % 50)


def membership(n: int, action: bytes = b"add", timestamp_ms: int = TIMESTAMP_MS) -> bytes:
    audience = AUDIENCE.encode()
    return _MEMBERSHIP % (_MPID_BASE + n, audience, audience, action, timestamp_ms)


def stale_membership(n: int) -> bytes:
    """A remove older than the held membership: dropped as stale only if that is known."""
    return membership(n, b"remove", TIMESTAMP_MS - 1)


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
    """Each template parses as its contract model (strict, as the worker parses them), with the
    values it was filled with."""
    for n in (0, 7, 123_456_789):
        update = ProfileUpdate.model_validate_json(profile_update(n))
        assert update.mpid == mpid(n).decode(), update
        assert set(update.identities) == {"email", "ios_idfa", "customer_id"}, update
        assert len(update.attributes) == 5, update
        event = MembershipEvent.model_validate_json(stale_membership(n))
        assert (event.mpid, event.audience_id) == (mpid(n).decode(), AUDIENCE), event
        assert (event.action, event.timestamp_ms) == ("remove", TIMESTAMP_MS - 1), event
    OutputConfig.model_validate_json(output(*SYNC_OUTPUT))
    ConnectionConfig.model_validate_json(connection("c", AUDIENCE, SYNC_OUTPUT[0]))


def profile_updates(start: int, count: int, partitions: int) -> Iterator[Record]:
    return ((n % partitions, mpid(n), profile_update(n)) for n in range(start, start + count))


def memberships(start: int, count: int, partitions: int) -> Iterator[Record]:
    return ((n % partitions, mpid(n), membership(n)) for n in range(start, start + count))
