"""Scenario 4: oversized and hostile records on every input and config topic, among good ones.
Each bad record is dead-lettered (an oversized one as `too_large`, in a dead letter that fits),
the good ones are forwarded, and no partition stops."""

from __future__ import annotations

from random import Random
from typing import Any

import pytest

from devtools.local import encode, produce
from tests.faults.harness import SEED, Fleet, make_profiles, membership, profile_update
from tests.faults.ledger import CONFIG_TOPICS, INPUT_TOPICS, Refused, check, output_config

MB = 1_000_000  # under the broker's default 1 MiB message limit, with the record's overhead
TOO_LARGE = frozenset({"too_large"})
BAD_KEY = frozenset({"key_mismatch", "missing_key"})


def hostile(rng: Random, topic: str) -> list[tuple[str, bytes | None, Any, frozenset[str] | None]]:
    """(label, key, value, accepted dead-letter kinds) of the bad records for ``topic``."""
    text = ("x" * MB).encode()
    binary = rng.randbytes(MB)
    records: list[tuple[str, bytes | None, Any, frozenset[str] | None]] = [
        ("1 MB text", b"big", text, TOO_LARGE),
        ("1 MB binary", b"big", binary, TOO_LARGE),
        ("malformed JSON", b"bad", b'{"mpid": "bad", ', frozenset({"invalid_json"})),
    ]
    if topic == "profile-updates":
        records += [
            ("wrong key", b"someone-else", profile_update("hp-1", {"email": "h@x.io"}), BAD_KEY),
            ("missing key", None, profile_update("hp-2", {"email": "h@x.io"}), BAD_KEY),
            (
                "unknown record type",
                b"hp-3",
                {"type": "profile_merge", "mpid": "hp-3", "timestamp_ms": 1},
                frozenset({"unknown_value"}),
            ),
        ]
    elif topic == "audience-memberships":
        records += [
            ("wrong key", b"someone-else", membership("hm-1"), BAD_KEY),
            ("unknown action", b"hm-2", membership("hm-2", action="upsert"), None),
        ]
    elif topic == "forwarder-outputs":
        records += [
            ("wrong key", b"out-other", output_config("out-ads") | {"output_id": "out-x"}, None),
            (
                "unknown partner",
                b"out-y",
                output_config("out-ads") | {"output_id": "out-y", "partner": "nope"},
                None,
            ),
        ]
    else:
        records += [
            (
                "wrong key",
                b"c-other",
                {
                    "connection_id": "c-x",
                    "audience_id": "a",
                    "output_id": "out-ads",
                    "status": "active",
                },
                None,
            ),
            (
                "unknown status",
                b"c-y",
                {
                    "connection_id": "c-y",
                    "audience_id": "a",
                    "output_id": "out-ads",
                    "status": "paused",
                },
                None,
            ),
        ]
    return records


def test_oversized_and_hostile_records_are_dead_lettered_and_nothing_stops(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = Random(SEED + 4)
    fleet.start(2)
    first, ledger = fleet.workers[0], fleet.ledger
    good = list(make_profiles(rng, 1500, "good").items())
    chunks = [dict(good[i : i + 50]) for i in range(0, len(good), 50)]

    def produce_good() -> None:
        chunk = chunks.pop()
        ledger.profiles.update(chunk)
        updates = [(mpid, profile_update(mpid, ids)) for mpid, ids in chunk.items()]
        produce(first.topic("profile-updates"), updates)
        produce(first.topic("audience-memberships"), [(m, membership(m)) for m in chunk])
        ledger.records += 2 * len(chunk)

    def produce_bad(
        topic: str, label: str, key: bytes | None, value: Any, kinds: frozenset[str] | None
    ) -> None:
        raw = encode(value)
        [(partition, offset)] = produce(first.topic(topic), [(key, raw)])
        ledger.records += 1
        ledger.refused.append(Refused(topic, partition, offset, raw, kinds, f"{label} on {topic}"))

    for topic in (*INPUT_TOPICS, *CONFIG_TOPICS):
        for label, key, value, kinds in hostile(rng, topic):
            produce_good()
            produce_bad(topic, label, key, value, kinds)

    # Valid profiles, members of the audience, too large to keep: dead-lettered as
    # too_large (so nothing is owed to the partners), never a stopped partition.
    oversized = {
        "big-attr": profile_update("big-attr", {"email": "a@x.io"}, attributes={"bio": "b" * MB}),
        "many-ids": profile_update("many-ids", {"email": [f"e{n}@x.io" for n in range(10_000)]}),
    }
    for mpid, value in oversized.items():
        produce(first.topic("audience-memberships"), [(mpid, membership(mpid))])
        ledger.records += 1
        label = "a 1 MB attribute" if mpid == "big-attr" else "10,000 identity values"
        produce_bad("profile-updates", label, mpid.encode(), value, TOO_LARGE)
    while chunks:
        produce_good()
    faults = len(ledger.refused)
    check("hostile-records", ledger, fleet.workers, faults=faults, rounds=1, capsys=capsys)
