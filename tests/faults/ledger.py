"""The one checker of every fault scenario: a ledger of what was produced, held against what
the workers wrote (forward topics, dead letters, the table's changelog, committed offsets).

What a user relies on, per the README's "at least once, never lost":
- every expected outbound record is forwarded (per profile and connection: the add, with the
  identity types the partner accepts), and every refused input is dead-lettered (an oversized
  one as `too_large`, the dead letter holding the value or a prefix of it with the length and
  the sha256);
- nothing is committed without its effect: the group's committed offsets reach the end of
  the inputs, and every effect (the forwarded records, each profile's changelog state, each
  refused record's dead letter) is there;
- duplicates only as identical record_ids: one record_id, one content; one content, one
  record_id;
- the workers are alive and /healthz answers 200.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest

from devtools.local import (
    Message,
    Worker,
    committed_offsets_async,
    end_offsets_async,
    read_to_end_async,
)

AUDIENCE = "aud-faults"
# output_id -> the identity types its partner accepts
OUTPUTS = {"out-ads": ("ios_idfa", "android_aaid"), "out-mail": ("email",)}
# connection_id -> output_id, both on AUDIENCE
CONNECTIONS = {"c-ads": "out-ads", "c-mail": "out-mail"}
INPUT_TOPICS = ("profile-updates", "audience-memberships")
CONFIG_TOPICS = ("forwarder-outputs", "forwarder-connections")

Key = tuple[str, str]  # (mpid, connection_id)
Content = tuple[str, str, str, str]  # (mpid, connection_id, action, identities and attributes)


@dataclass(frozen=True, slots=True)
class Refused:
    """A produced record that must come back as a dead letter."""

    topic: str  # unprefixed
    partition: int
    offset: int
    value: bytes | None
    kinds: frozenset[str] | None  # the error kinds accepted; None: any
    label: str


@dataclass
class Ledger:
    """What the test produced, and so what the workers owe."""

    # good profiles, each a member of AUDIENCE: mpid -> {identity type: value}
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)
    records: int = 0  # input and config records produced

    def expected(self) -> dict[Key, frozenset[tuple[str, str]]]:
        """(mpid, connection) -> the identities its add must carry; absent: nothing is owed."""
        owed: dict[Key, frozenset[tuple[str, str]]] = {}
        for mpid, identities in self.profiles.items():
            for connection_id, output_id in CONNECTIONS.items():
                accepted = frozenset(
                    (kind, value)
                    for kind, value in identities.items()
                    if kind in OUTPUTS[output_id]
                )
                if accepted:
                    owed[(mpid, connection_id)] = accepted
        return owed


@dataclass
class Outcome:
    losses: int = 0
    duplicates: int = 0
    # what went wrong, by kind: kind -> the cases
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def problem(self, kind: str, case: str) -> None:
        self.problems[kind].append(case)

    def loss(self, kind: str, case: str) -> None:
        self.losses += 1
        self.problem(kind, case)

    def report(self) -> str:
        return "\n".join(
            f"{kind}: {len(cases)}, e.g. {'; '.join(cases[:4])}"
            for kind, cases in self.problems.items()
        )


def output_config(output_id: str) -> dict[str, Any]:
    return {
        "output_id": output_id,
        "partner": "custom",
        "name": output_id,
        "accepted_identities": list(OUTPUTS[output_id]),
        "supports_attributes": False,
        "settings": {},
    }


def connection_config(connection_id: str) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "audience_id": AUDIENCE,
        "output_id": CONNECTIONS[connection_id],
        "status": "active",
        "forwarded_attributes": [],
    }


def _content(value: dict[str, Any]) -> Content:
    identities = sorted((i["type"], i["value"]) for i in value.get("identities", []))
    payload = json.dumps([identities, value.get("attributes")], sort_keys=True)
    return (value["mpid"], value["connection_id"], value["action"], payload)


def check_forwarded(ledger: Ledger, records: list[dict[str, Any]], outcome: Outcome) -> None:
    owed = ledger.expected()
    got: dict[Key, set[tuple[str, str]]] = defaultdict(set)
    by_id: dict[str, set[Content]] = defaultdict(set)
    by_content: dict[Content, set[str]] = defaultdict(set)
    for value in records:
        key = (value["mpid"], value["connection_id"])
        content = _content(value)
        by_id[value["record_id"]].add(content)
        by_content[content].add(value["record_id"])
        if value["action"] != "add" or key not in owed:
            outcome.problem("unexpected outbound record", f"{value['action']} for {key}")
            continue
        got[key].update((i["type"], i["value"]) for i in value["identities"])
    outcome.duplicates = len(records) - len(by_id)
    for record_id, contents in by_id.items():
        if len(contents) > 1:
            outcome.problem("one record_id, several contents", f"{record_id}: {len(contents)}")
    for content, ids in by_content.items():
        if len(ids) > 1:
            outcome.problem(
                "one content, several record_ids", f"{content[2]} {content[:2]}: {len(ids)}"
            )
    for key, identities in owed.items():
        if got[key] != identities:
            missing = sorted(kind for kind, _ in identities - got[key])
            outcome.loss("add not forwarded", f"{key} {missing}")


def check_states(ledger: Ledger, changelog: list[Message], outcome: Outcome) -> None:
    """Each good profile's last changelog state holds its update, membership and sends."""
    latest: dict[str, bytes | None] = {}
    for message in changelog:
        if message.key is not None:
            latest[message.key.decode().split(":", 1)[1]] = message.value
    owed = ledger.expected()
    for mpid, identities in ledger.profiles.items():
        raw = latest.get(mpid)
        state = json.loads(raw) if raw else {}
        held = {kind: tuple(values) for kind, values in state.get("identities", {}).items()}
        member = state.get("memberships", {}).get(AUDIENCE, {}).get("member")
        sent = set(state.get("sent", {}))
        wanted_sent = {conn for (m, conn) in owed if m == mpid}
        if held != {kind: (value,) for kind, value in identities.items()}:
            outcome.loss("changelog state without the profile update", mpid)
        elif member is not True or not wanted_sent <= sent:
            outcome.loss("changelog state without the membership or sends", mpid)


def _mentions(document: Any, wanted: str) -> bool:
    """Whether ``wanted`` is a value of the letter or part of one of its strings."""
    if isinstance(document, dict):
        return any(_mentions(v, wanted) for v in document.values())
    if isinstance(document, list):
        return any(_mentions(v, wanted) for v in document)
    return wanted in str(document)


def _kept(letter: dict[str, Any], original: bytes) -> bytes | None:
    """The part of the original value the letter carries (None: none, e.g. redacted)."""
    value = letter.get("value")
    if value is None:
        return None
    if letter.get("value_encoding") == "base64":
        # A prefix of the base64 text may end inside a 4-character group.
        whole = str(value)[: len(str(value)) // 4 * 4]
        try:
            kept = base64.b64decode(whole)
        except ValueError:
            return None
    else:
        kept = str(value).encode()
    return kept if original.startswith(kept) else None


def _fits(letter: dict[str, Any], topic: str, original: bytes) -> bool:
    """A too_large letter holds the whole value, or a prefix (outputs: a redaction, since
    they may hold secrets) with the original length and sha256."""
    kept = _kept(letter, original)
    if kept == original:
        return True
    described = _mentions(letter, hashlib.sha256(original).hexdigest()) and _mentions(
        letter, str(len(original))
    )
    return described and (kept is not None or topic == "forwarder-outputs")


def check_dead_letters(
    ledger: Ledger, prefix: str, letters: list[dict[str, Any]], outcome: Outcome
) -> None:
    by_source: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
    for letter in letters:
        source = letter["source"]
        topic = source["topic"].removeprefix(prefix)
        by_source[(topic, source["partition"], source["offset"])].append(letter)
    refused = {(r.topic, r.partition, r.offset): r for r in ledger.refused}
    for (topic, partition, offset), found in by_source.items():
        expected = refused.get((topic, partition, offset))
        if expected is None:
            kind = found[0]["error"]["kind"]
            outcome.problem("unexpected dead letter", f"{kind} of {topic}[{partition}]@{offset}")
    for source, record in refused.items():
        found = by_source.get(source, [])
        if not found:
            outcome.loss("refused record without a dead letter", f"{record.label} {source[1:]}")
            continue
        letter = found[0]
        kind = letter["error"]["kind"]
        if record.kinds is not None and kind not in record.kinds:
            outcome.problem("dead letter of another kind", f"{record.label}: {kind}")
        value = record.value
        if kind == "too_large" and value is not None and not _fits(letter, record.topic, value):
            outcome.problem("too_large letter without prefix, length or sha256", record.label)


async def wait_committed(
    group: str, topics: list[str], bootstrap: str, wait_s: float
) -> dict[str, int]:
    """Wait until the group's committed offsets reach the end of ``topics``; returns what is
    left per topic (empty when everything is committed)."""
    deadline = time.monotonic() + wait_s
    while True:
        ends = await end_offsets_async(topics, bootstrap)
        committed = await committed_offsets_async(group, topics, bootstrap)
        behind: dict[str, int] = defaultdict(int)
        for tp, end in ends.items():
            if committed.get(tp, -1) < end:
                behind[tp.topic] += end - max(committed.get(tp, 0), 0)
        if not behind or time.monotonic() > deadline:
            return dict(behind)
        await asyncio.sleep(2)


def check(
    scenario: str,
    ledger: Ledger,
    workers: list[Worker],
    *,
    faults: int,
    rounds: int,
    capsys: pytest.CaptureFixture[str],
    timeout: float = 90.0,
    seen: Outcome | None = None,
) -> None:
    """The shared verdict: prints one summary line, then fails with every problem found
    (``seen``: the ones the scenario met while injecting its faults)."""
    first = workers[0]
    prefix, bootstrap = first.prefix, first.bootstrap
    topics = [first.topic(name) for name in (*INPUT_TOPICS, *CONFIG_TOPICS)]
    outcome = seen or Outcome()
    group = f"{first.prefix}{first.app_id}"  # the worker prefixes its group like its topics
    behind = asyncio.run(wait_committed(group, topics, bootstrap, timeout))
    for worker in workers:
        if not worker.alive():
            outcome.problem("worker not running", f":{worker.web_port}")
        elif (status := worker.probe("/healthz")) != 200:
            outcome.problem("worker /healthz not 200", f":{worker.web_port} {status}")
    for topic, lag in behind.items():
        outcome.problem("uncommitted input", f"{topic.removeprefix(prefix)} {lag} short of its end")

    async def read(topic: str) -> list[Message]:
        return await read_to_end_async(topic, bootstrap)

    forwarded = [
        json.loads(m.value)
        for output_id in OUTPUTS
        for m in asyncio.run(read(first.topic(f"forward-{output_id}")))
        if m.value is not None
    ]
    letters = [
        json.loads(m.value)
        for m in asyncio.run(read(first.topic("forwarder-dead-letters")))
        if m.value is not None
    ]
    changelog = asyncio.run(read(f"{group}-profiles-changelog"))
    check_forwarded(ledger, forwarded, outcome)
    check_states(ledger, changelog, outcome)
    check_dead_letters(ledger, prefix, letters, outcome)
    summary = (
        f"faults {scenario}: records={ledger.records} faults={faults} rounds={rounds} "
        f"losses={outcome.losses} duplicates={outcome.duplicates}"
    )
    with capsys.disabled():
        print(f"\n{summary}", flush=True)  # the line the README quotes, shown even on a pass
    if outcome.problems:
        logs = "\n".join(f"--- worker :{w.web_port}\n{w.log_tail(15)}" for w in workers)
        raise AssertionError(f"{summary}\n{outcome.report()}\n{logs}")
