"""The seed page's example audience as upstream producers publish it: 100 profiles, all with an
IDFA and the first 65 with an email, each a profile update and a membership add."""

from __future__ import annotations

from typing import Any

Keyed = list[tuple[str, dict[str, Any]]]


def seed_records(audience: str, numbers: range = range(100)) -> tuple[Keyed, Keyed]:
    """(profile updates, membership adds) of the profiles numbered ``numbers``, keyed by mpid."""
    profiles: Keyed = []
    memberships: Keyed = []
    for n in numbers:
        mpid = f"{audience}-{n}"
        identities: dict[str, Any] = {"ios_idfa": f"IDFA-{n}"}
        if n < 65:
            identities["email"] = f"user{n}@example.com"
        profiles.append(
            (
                mpid,
                {
                    "type": "profile_update",
                    "mpid": mpid,
                    "timestamp_ms": 1764400000000,
                    "identities": identities,
                    "attributes": {"ltv": n},
                },
            )
        )
        memberships.append(
            (
                mpid,
                {
                    "mpid": mpid,
                    "audience_id": audience,
                    "action": "add",
                    "timestamp_ms": 1764400000000,
                },
            )
        )
    return profiles, memberships
