"""`make demo`: the seed's example end to end on the local broker.

Starts a worker on topics of its own, creates outputs A and B with their connections, publishes
100 profiles (all with an IDFA, 65 with an email) and their memberships, and prints what each
output received, read from the outbound topics.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from devtools.local import Worker, consume, produce

AUDIENCE = "aud-high-ltv"
OUTPUTS = [
    {
        "output_id": "partner-a",
        "partner": "custom",
        "name": "Partner A (mobile ads)",
        "accepted_identities": ["ios_idfa", "android_aaid"],
        "supports_attributes": False,
        "settings": {},
    },
    {
        "output_id": "partner-b",
        "partner": "custom",
        "name": "Partner B (email)",
        "accepted_identities": ["email"],
        "supports_attributes": False,
        "settings": {},
    },
]


def seed_records(count: int = 100, with_email: int = 65) -> tuple[list[Any], list[Any]]:
    now = int(time.time() * 1000)
    profiles, memberships = [], []
    for n in range(count):
        mpid = str(8675309 + n)
        identities = {"ios_idfa": f"6D92078A-8246-4BA4-AE5B-76104861E7{n:02d}"}
        if n < with_email:
            identities["email"] = f"user{n}@example.com"
        profiles.append(
            (
                mpid,
                {
                    "type": "profile_update",
                    "mpid": mpid,
                    "timestamp_ms": now,
                    "identities": identities,
                },
            )
        )
        memberships.append(
            (
                mpid,
                {
                    "mpid": mpid,
                    "audience_id": AUDIENCE,
                    "audience_name": "High LTV",
                    "action": "add",
                    "timestamp_ms": now,
                },
            )
        )
    return profiles, memberships


def main() -> int:
    run = f"demo-{int(time.time())}"
    worker = Worker(prefix=run + ".", app_id=run, data_dir=Path(tempfile.mkdtemp(prefix=run)))
    print(f"starting a worker on topics {run}.* ...")
    worker.start()
    try:
        produce(worker.topic("forwarder-outputs"), [(o["output_id"], o) for o in OUTPUTS])
        connections = [
            {
                "connection_id": f"{AUDIENCE}-to-{o['output_id']}",
                "audience_id": AUDIENCE,
                "output_id": o["output_id"],
                "status": "active",
                "forwarded_attributes": [],
            }
            for o in OUTPUTS
        ]
        produce(
            worker.topic("forwarder-connections"), [(c["connection_id"], c) for c in connections]
        )
        worker.wait_ready(30, outputs=2, connections=2)
        profiles, memberships = seed_records()
        produce(worker.topic("profile-updates"), profiles)
        produce(worker.topic("audience-memberships"), memberships)
        print("published 100 profiles (all with an IDFA, 65 with an email) and their memberships")
        ok = True
        for output, expected in (("partner-a", 100), ("partner-b", 65)):
            records = consume(worker.topic(f"forward-{output}"), expected=expected, timeout=60)
            types = Counter(i["type"] for _, value, _ in records for i in value["identities"])
            summary = ", ".join(f"{n} {kind}" for kind, n in sorted(types.items())) or "nothing"
            print(f"{output}: {len(records)} records ({summary})")
            ok = ok and len(records) == expected
        print("the seed's example holds" if ok else "UNEXPECTED: the counts differ from the seed's")
        return 0 if ok else 1
    finally:
        worker.stop()


if __name__ == "__main__":
    sys.exit(main())
