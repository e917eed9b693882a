"""The worker's per-event CPU cost outside Kafka and Faust, this tree against a git ref.

python -m benchmarks.micro [--ref main] [--profiles 2000] [--rounds 5]

Per event: parse (with the key check) + load the profile's state + decide + store the state +
serialize the records + count the metrics, as streams/processor.py does, over a table held in
a dict; then each of those stages alone. The same per event for a profile in 50 audiences
with 150 connections (``per_event_wide_us``). Per synced member: load + reconcile + serialize
+ store, after a connection is added.
The ref's version runs in a subprocess on a ``git archive`` of that ref, with this file copied
in, so both run the same measurements through the same calls. Run by hand:
CPU time of this process (a shared machine makes wall time noisy), best of the rounds.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

AUDIENCES = ("aud-1", "aud-2")
OUTPUTS = {
    "ads": {"accepted_identities": ["ios_idfa", "android_aaid"], "supports_attributes": False},
    "crm": {"accepted_identities": ["email", "customer_id"], "supports_attributes": True},
    "late": {"accepted_identities": ["email"], "supports_attributes": False},
}
Connection = tuple[str, str, str, list[str]]  # id, audience, output, forwarded attributes
CONNECTIONS: list[Connection] = [
    ("c1", "aud-1", "ads", []),
    ("c2", "aud-1", "crm", ["ltv"]),
    ("c3", "aud-2", "crm", ["ltv", "tier"]),
]
LATE_CONNECTION: Connection = ("c4", "aud-1", "late", [])


def profile_update(n: int, round_: int, email: str, ltv: int, visits: int | None = None) -> bytes:
    return orjson.dumps(
        {
            "type": "profile_update",
            "mpid": str(n),
            "timestamp_ms": 1_700_000_000_000 + round_,
            "identities": {
                "email": email,
                "ios_idfa": f"IDFA-{n:08d}-0000-4000-8000-000000000000",
                "customer_id": f"cust-{n}",
            },
            "attributes": {
                "ltv": ltv,
                "tier": "gold",
                "visits": n % 17 if visits is None else visits,
                "country": "DE",
            },
        }
    )


def membership(n: int, audience: str, action: str, round_: int) -> bytes:
    return orjson.dumps(
        {
            "mpid": str(n),
            "audience_id": audience,
            "audience_name": audience.upper(),
            "action": action,
            "timestamp_ms": 1_700_000_000_000 + round_,
        }
    )


def events(profiles: int) -> list[tuple[bool, bytes, bytes]]:
    """(is a profile-updates record, key, value): joins, attribute and identity changes, an
    update touching no forwarded attribute, a leave; 7 events per profile."""
    out: list[tuple[bool, bytes, bytes]] = []
    for n in range(profiles):
        key = str(n).encode()
        out += [
            (True, key, profile_update(n, 1, f"u{n}@example.com", 10)),
            (False, key, membership(n, "aud-1", "add", 2)),
            (False, key, membership(n, "aud-2", "add", 3)),
            (True, key, profile_update(n, 4, f"u{n}@example.com", 20)),
            (True, key, profile_update(n, 5, f"new{n}@example.com", 20)),
            (True, key, profile_update(n, 6, f"new{n}@example.com", 20)),
            (False, key, membership(n, "aud-2", "remove", 7)),
        ]
    return out


# A profile in many audiences, each connected to three outputs: 150 connections per profile.
WIDE_AUDIENCES = 50
WIDE_CONNECTIONS: list[Connection] = [
    connection
    for n in range(WIDE_AUDIENCES)
    for connection in [
        (f"w{n}-ads", f"wide-{n}", "ads", []),
        (f"w{n}-crm", f"wide-{n}", "crm", ["ltv"] if n % 10 == 0 else []),
        (f"w{n}-late", f"wide-{n}", "late", []),
    ]
]


def wide_events(
    profiles: int,
) -> tuple[list[tuple[bool, bytes, bytes]], list[tuple[bool, bytes, bytes]]]:
    """Profiles joining WIDE_AUDIENCES audiences (the first list), then what follows for a
    profile that is in all of them (the second, measured): per profile one leave and one join,
    attribute changes (one forwarded by 5 of the connections, one by none) and an identity
    change."""
    joins: list[tuple[bool, bytes, bytes]] = []
    measured: list[tuple[bool, bytes, bytes]] = []
    for n in range(profiles):
        key = str(n).encode()
        joins.append((True, key, profile_update(n, 1, f"u{n}@example.com", 10)))
        joins += [(False, key, membership(n, f"wide-{a}", "add", 2)) for a in range(WIDE_AUDIENCES)]
        measured += [
            (False, key, membership(n, "wide-7", "remove", 3)),
            (False, key, membership(n, "wide-7", "add", 4)),
            (True, key, profile_update(n, 5, f"u{n}@example.com", 20)),
            (True, key, profile_update(n, 6, f"u{n}@example.com", 30)),
            (True, key, profile_update(n, 7, f"u{n}@example.com", 30, visits=n + 1)),
            (True, key, profile_update(n, 8, f"u{n}@example.com", 30, visits=n + 2)),
            (True, key, profile_update(n, 9, f"new{n}@example.com", 30, visits=n + 2)),
            (False, key, membership(n, "wide-9", "remove", 10)),
        ]
    return joins, measured


def routing(with_late: bool, connections: list[Connection] = CONNECTIONS) -> Any:
    routing_module = importlib.import_module("core.routing")
    catalog = importlib.import_module("partners.catalog")
    records = importlib.import_module("schemas.records")
    snapshot = routing_module.Routing()
    for output_id, fields in OUTPUTS.items():
        config = records.OutputConfig.model_validate(
            {"output_id": output_id, "partner": "custom", **fields}, strict=False
        )
        snapshot.put_output(catalog.resolve_output(config))
    for connection_id, audience, output_id, forwarded in connections + (
        [LATE_CONNECTION] if with_late else []
    ):
        snapshot.put_connection(
            records.ConnectionConfig.model_validate(
                {
                    "connection_id": connection_id,
                    "audience_id": audience,
                    "output_id": output_id,
                    "status": "active",
                    "forwarded_attributes": forwarded,
                }
            )
        )
    return snapshot


class Version:
    """The modules of one tree: this one, or the ref's (run in its own subprocess)."""

    def __init__(self) -> None:
        self.processor = importlib.import_module("streams.processor")
        self.forwarding = importlib.import_module("streams.forwarding")
        self.state = importlib.import_module("schemas.state")
        self.tally = importlib.import_module("streams.tally").BatchMetrics()

    def source(self, offset: int) -> Any:
        return self.forwarding.Source(topic="in", partition=0, offset=offset)

    def mpid(self, event: Any) -> str:
        return str(event["mpid"])

    def load(self, raw: bytes) -> Any:
        return self.state.load_profile(raw)

    def dump(self, state: Any) -> bytes:
        return bytes(self.state.dump_profile(state))

    def emit(self, decision: Any) -> int:
        """Count the records (they are serialized already); returns the bytes produced."""
        self.tally.count(decision)
        return sum(len(record.value) for record in decision.records)

    def end_batch(self) -> None:
        self.tally.flush()


def per_event(
    version: Version,
    stream: list[tuple[bool, bytes, bytes]],
    batch: int,
    connections: list[Connection] = CONNECTIONS,
    untimed: int = 0,
) -> float:
    """Per event of the stream after its first ``untimed`` ones (applied, not timed)."""
    snapshot = routing(with_late=False, connections=connections)
    table: dict[str, bytes] = {}
    started = time.process_time()
    for offset, (is_profile, key, value) in enumerate(stream):
        if offset == untimed:
            started = time.process_time()
        event = version.processor.parse_input(is_profile, key, value)
        mpid = version.mpid(event)
        stored = table.get(mpid)
        state = version.load(stored) if stored else version.forwarding.new_profile(mpid)
        decision = version.forwarding.decide(state, event, snapshot, version.source(offset))
        version.emit(decision)
        table[mpid] = version.dump(decision.state)
        if offset % batch == batch - 1:
            version.end_batch()
    version.end_batch()
    return (time.process_time() - started) / (len(stream) - untimed) * 1e6


def per_stage(version: Version, stream: list[tuple[bool, bytes, bytes]]) -> dict[str, float]:
    """The per-event path stage by stage, each timed alone over the same inputs. The current
    tree serializes records inside decide: its "records" stage is the metric counting."""
    snapshot = routing(with_late=False)
    table: dict[str, bytes] = {}
    stored_before: list[bytes] = []
    steps: list[tuple[Any, Any, Any, Any]] = []  # event, state, source, decision
    for offset, (is_profile, key, value) in enumerate(stream):
        event = version.processor.parse_input(is_profile, key, value)
        mpid = version.mpid(event)
        stored = table.get(mpid)
        if stored:
            stored_before.append(stored)
        state = version.load(stored) if stored else version.forwarding.new_profile(mpid)
        source = version.source(offset)
        decision = version.forwarding.decide(state, event, snapshot, source)
        steps.append((event, state, source, decision))
        table[mpid] = version.dump(decision.state)

    def timed(stage: Callable[[Any], object], inputs: list[Any]) -> float:
        # Results are dropped at once: holding thousands of them would time the GC too.
        started = time.process_time()
        for item in inputs:
            stage(item)
        return (time.process_time() - started) / len(stream) * 1e6

    decide = version.forwarding.decide
    return {
        "parse_us": timed(lambda item: version.processor.parse_input(*item), stream),
        "state_load_us": timed(version.load, stored_before),
        "decide_us": timed(lambda step: decide(step[1], step[0], snapshot, step[2]), steps),
        "records_us": timed(lambda step: version.emit(step[3]), steps),
        "state_store_us": timed(lambda step: version.dump(step[3].state), steps),
    }


def per_synced_member(version: Version, stream: list[tuple[bool, bytes, bytes]]) -> float:
    snapshot = routing(with_late=False)
    table: dict[str, bytes] = {}
    for offset, (is_profile, key, value) in enumerate(stream):
        event = version.processor.parse_input(is_profile, key, value)
        mpid = version.mpid(event)
        stored = table.get(mpid)
        state = version.load(stored) if stored else version.forwarding.new_profile(mpid)
        table[mpid] = version.dump(
            version.forwarding.decide(state, event, snapshot, version.source(offset)).state
        )
    snapshot = routing(with_late=True)
    source = version.source(len(stream))
    started = time.process_time()
    for mpid, stored in table.items():
        decision = version.forwarding.reconcile(version.load(stored), snapshot, source, 1)
        version.emit(decision)
        table[mpid] = version.dump(decision.state)
    version.end_batch()
    return (time.process_time() - started) / len(table) * 1e6


def measure(profiles: int, rounds: int) -> dict[str, float]:
    version = Version()
    stream = events(profiles)
    joins, wide = wide_events(max(1, profiles // 10))
    best: dict[str, float] = {}
    timings: dict[str, Callable[[], float]] = {
        "per_event_us": lambda: per_event(version, stream, batch=500),
        "per_event_wide_us": lambda: per_event(
            version, joins + wide, 500, WIDE_CONNECTIONS, untimed=len(joins)
        ),
        "per_synced_member_us": lambda: per_synced_member(version, stream),
    }
    for _ in range(rounds):
        measured = {name: timing() for name, timing in timings.items()}
        measured.update(per_stage(version, stream))
        for name, value in measured.items():
            best[name] = min(best.get(name, float("inf")), value)
    return best


def compiled() -> bool:
    """Whether this tree's hot path runs compiled (``make native``)."""
    native = importlib.import_module("core.native")
    return any(native.extensions(source) for source in native.COMPILED)


def measure_ref(ref: str, profiles: int, rounds: int) -> dict[str, float]:
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tree:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", ref], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        shutil.copy(__file__, Path(tree, "benchmarks", "micro.py"))
        if compiled():
            # An archive holds no compiled modules: built as this tree's are, or the ref
            # would run interpreted against a compiled tree.
            subprocess.run(
                [sys.executable, "-m", "core.native", "build"],
                cwd=tree,
                check=True,
                capture_output=True,
            )
        argv = ["--run-ref", "--profiles", str(profiles), "--rounds", str(rounds)]
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.micro", *argv],
            cwd=tree,
            check=True,
            capture_output=True,
        )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="the version to compare with")
    parser.add_argument("--profiles", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--run-ref", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_ref:
        print(json.dumps(measure(args.profiles, args.rounds)))
        return 0
    before = measure_ref(args.ref, args.profiles, args.rounds)
    after = measure(args.profiles, args.rounds)
    print(f"both {'compiled' if compiled() else 'interpreted'}")
    print(f"{'µs':<22}{args.ref:>10}{'this tree':>12}")
    for name in after:
        print(f"{name:<22}{before[name]:>10.1f}{after[name]:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
