"""Explain, export, preview and resync end to end: a real `forwarder api`, two real workers of
one group sharing four partitions, and the real broker. The explain and export answers must be
right whichever worker owns a profile, and again after a rebalance."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.kafka_admin import create_topics, topic_partitions
from devtools.local import BOOTSTRAP, REPO, ControlApi, Worker, consume, produce
from schemas import topics

PARTITIONS = 4
TOKEN = "op-token-" + uuid.uuid4().hex
AUDIENCE = "aud-op"
TIMESTAMP_MS = 1764400000000
MEMBERS = [f"m-{n}" for n in range(30)]  # members with an email: at the partner
NO_ACCEPTED = [f"n-{n}" for n in range(5)]  # members without an accepted identity
OUTSIDERS = [f"o-{n}" for n in range(5)]  # profiles outside the audience


class Deployment:
    def __init__(self, tmp: Path) -> None:
        self.name = f"op-{uuid.uuid4().hex[:8]}"
        self.workers = [
            Worker(
                prefix=self.name + ".",
                app_id=self.name,
                data_dir=tmp / f"worker-{n}",
                partitions=PARTITIONS,
                # The token: the workers give identities (the export) only to the API.
                extra_env={"FORWARDER_PARTNER_COUNT_INTERVAL_S": "2", "FORWARDER_API_TOKEN": TOKEN},
            )
            for n in range(2)
        ]
        self.api = ControlApi(
            prefix=self.name + ".",
            data_dir=tmp / "api",
            token=TOKEN,
            worker_metrics_urls=[worker.metrics_url for worker in self.workers],
            extra_env={"FORWARDER_INPUT_PARTITIONS": str(PARTITIONS)},
        )

    def topic(self, name: str) -> str:
        return f"{self.name}.{name}"

    async def create_topics(self) -> None:
        # Beforehand, as the fault suite does: co-partitioned from the first worker's start.
        options = {"bootstrap_servers": BOOTSTRAP}
        names = [self.topic(t) for t in (topics.PROFILE_UPDATES, topics.AUDIENCE_MEMBERSHIPS)]
        names.append(self.topic(topics.SYNC))
        changelog = self.topic(f"{self.name}-profiles-changelog")
        await create_topics(options, names, PARTITIONS, 1)
        await create_topics(options, [changelog], PARTITIONS, 1, {"cleanup.policy": "compact"})
        while len(await topic_partitions(options, [*names, changelog]) or []) < 4 * PARTITIONS:  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    def call(
        self, method: str, path: str, body: Any = None, token: str | None = TOKEN
    ) -> tuple[int, Any, dict[str, str]]:
        request = urllib.request.Request(
            self.api.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}"} if token else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                raw = response.read()
                return response.status, _body(raw, response.headers), dict(response.headers)
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, _body(raw, error.headers), dict(error.headers)


def _body(raw: bytes, headers: Any) -> Any:
    if headers.get("Content-Type", "").startswith("application/x-ndjson"):
        return [json.loads(line) for line in raw.splitlines()]
    return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    running = Deployment(Path(tmp_path_factory.mktemp("operator")))
    asyncio.run(running.create_topics())
    try:
        for worker in running.workers:
            worker.launch()
        for worker in running.workers:
            worker.wait_ready(120)
        running.api.start()
        yield running
    finally:
        running.api.stop()
        for worker in running.workers:
            worker.stop()


def create_output(d: Deployment, output_id: str) -> None:
    body = {
        "output_id": output_id,
        "partner": "custom",
        "accepted_identities": ["email", "ios_idfa"],
        "supports_attributes": True,
    }
    status, answer, _ = d.call("POST", "/outputs", body)
    assert status == 201, answer


def create_connection(d: Deployment, connection_id: str, output_id: str, status: str) -> None:
    body = {
        "connection_id": connection_id,
        "audience_id": AUDIENCE,
        "output_id": output_id,
        "status": status,
        "forwarded_attributes": ["ltv"],
    }
    code, answer, _ = d.call("POST", "/connections", body)
    assert code == 201, answer


def email(mpid: str) -> str:
    return f"{mpid}@example.com"


def publish_profiles(d: Deployment) -> None:
    profiles = []
    for n, mpid in enumerate(MEMBERS + NO_ACCEPTED + OUTSIDERS):
        identities = {"customer_id": f"cust-{mpid}"}
        if not mpid.startswith("n-"):
            identities["email"] = email(mpid)
        update = {
            "type": "profile_update",
            "mpid": mpid,
            "timestamp_ms": TIMESTAMP_MS,
            "identities": identities,
            "attributes": {"ltv": n},
        }
        profiles.append((mpid, update))
    produce(d.topic("profile-updates"), profiles)
    memberships = [
        (m, {"mpid": m, "audience_id": AUDIENCE, "action": "add", "timestamp_ms": TIMESTAMP_MS})
        for m in MEMBERS + NO_ACCEPTED
    ]
    produce(d.topic("audience-memberships"), memberships)


def explain_until_answered(d: Deployment, connection_id: str, mpid: str) -> dict[str, Any]:
    """The explanation; while the owner is moving, only 503 with Retry-After is allowed."""
    deadline = time.monotonic() + 90
    while True:
        status, answer, headers = d.call("GET", f"/connections/{connection_id}/explain?mpid={mpid}")
        if status == 200:
            return dict(answer)
        assert status == 503 and int(headers["Retry-After"]) > 0, (status, answer)
        assert time.monotonic() < deadline, answer
        time.sleep(0.5)


def export(d: Deployment, connection_id: str, limit: int) -> list[dict[str, Any]]:
    """Every member, following the cursor page by page (waiting out 503s)."""
    members: list[dict[str, Any]] = []
    cursor = ""
    deadline = time.monotonic() + 90
    while True:
        path = f"/connections/{connection_id}/members?limit={limit}"
        status, lines, headers = d.call("GET", path + (f"&cursor={cursor}" if cursor else ""))
        if status == 503:
            assert int(headers["Retry-After"]) > 0 and time.monotonic() < deadline
            time.sleep(0.5)
            continue
        assert status == 200, lines
        *page, last = lines
        assert len(page) <= limit
        members += page
        if last["next_cursor"] is None:
            return members
        cursor = last["next_cursor"]


def check_explanations(d: Deployment, connection_id: str) -> set[int]:
    """Every profile's explanation is right; returns the partitions that answered."""
    partitions = set()
    for mpid in MEMBERS + NO_ACCEPTED + OUTSIDERS:
        answer = explain_until_answered(d, connection_id, mpid)
        partitions.add(answer["partition"])
        text = json.dumps(answer)
        assert email(mpid) not in text and f"cust-{mpid}" not in text, "never a value"
        assert answer["identity_types"] == (
            ["customer_id"] if mpid.startswith("n-") else ["customer_id", "email"]
        )
        assert answer["accepted_identity_types"] == ["email", "ios_idfa"]
        if mpid in MEMBERS:
            assert answer["verdict"] == "at_partner", answer
            assert answer["member"] and answer["membership_timestamp_ms"] == TIMESTAMP_MS
            assert answer["sent"]["identity_types"] == ["email"]
            assert answer["sent"]["attribute_names"] == ["ltv"]
            assert len(answer["sent"]["last_record_id"]) == 32
        elif mpid in NO_ACCEPTED:
            assert (answer["verdict"], answer["sent"]) == ("no_accepted_identity", None)
        else:
            assert (answer["verdict"], answer["member"]) == ("not_member", False)
    return partitions


def check_export(d: Deployment, connection_id: str, sent: dict[str, Any]) -> None:
    members = export(d, connection_id, limit=7)
    assert sorted(m["mpid"] for m in members) == sorted(MEMBERS)  # each once
    for member in members:
        assert member["identities"] == [{"type": "email", "value": email(member["mpid"])}]
        assert member["attributes"] == sent[member["mpid"]]["attributes"]
        assert member["since_ms"] == TIMESTAMP_MS


def workers_owning(d: Deployment, mpid: str) -> list[int]:
    """Which running workers answer 200 for the profile when asked directly (the others must
    say 421, not mine)."""
    owners = []
    for index, worker in enumerate(d.workers):
        if not worker.alive():
            continue
        url = f"http://127.0.0.1:{worker.web_port}/operator/explain?connection_id=c-op&mpid={mpid}"
        try:
            with urllib.request.urlopen(url, timeout=5):
                owners.append(index)
        except urllib.error.HTTPError as error:
            assert error.code == 421, error.code
    return owners


def test_explain_and_export_from_whichever_worker_owns_the_profile(d: Deployment) -> None:
    create_output(d, "out-op")
    create_connection(d, "c-op", "out-op", "active")
    for worker in d.workers:
        worker.wait_ready(30, outputs=1, connections=1)
    publish_profiles(d)
    sent = {v["mpid"]: v for _, v, _ in consume(d.topic("forward-out-op"), expected=30)}
    assert sorted(sent) == sorted(MEMBERS)

    # Both workers own some of the profiles: each question went to the right one.
    owners = {mpid: workers_owning(d, mpid) for mpid in MEMBERS}
    assert all(len(found) == 1 for found in owners.values()), owners
    assert {found[0] for found in owners.values()} == {0, 1}
    check_explanations(d, "c-op")
    check_export(d, "c-op", sent)
    wait_for(lambda: stats(d, "c-op")["partner_profiles"] == 30, "the partner count is 30")

    # The CLI: the same answers.
    explained = cli(d, "connections", "explain", "c-op", "--mpid", "m-3", "--json")
    assert explained.returncode == 0, explained.stderr
    assert json.loads(explained.stdout)["verdict"] == "at_partner"
    exported = cli(d, "connections", "members", "c-op")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(line["mpid"] for line in lines) == sorted(MEMBERS)
    refused = cli(d, "connections", "members", "c-op", token="wrong")
    assert refused.returncode == 1 and "401" in refused.stderr

    assert d.call("GET", "/connections/c-op/members", token=None)[0] == 401
    worker_url = f"http://127.0.0.1:{d.workers[0].web_port}/operator/members"
    with pytest.raises(urllib.error.HTTPError) as refused_by_worker:
        urllib.request.urlopen(f"{worker_url}?connection_id=c-op&partition=0", timeout=5)
    assert refused_by_worker.value.code == 401
    assert d.call("GET", "/connections/c-op/members", token="wrong")[0] == 401
    assert d.call("GET", "/connections/c-op/explain")[0] == 422
    assert d.call("GET", "/connections/nope/explain?mpid=m-1")[0] == 404
    assert d.call("GET", "/connections/c-op/members?cursor=%%%")[0] == 422


def test_explain_and_export_stay_right_across_a_rebalance(d: Deployment) -> None:
    sent = {v["mpid"]: v for _, v, _ in consume(d.topic("forward-out-op"), expected=30)}
    leaving = d.workers[1]
    leaving.terminate()
    # Worker 0 takes every partition; answers are right or a 503 to retry, never wrong.
    assert check_explanations(d, "c-op") == set(range(PARTITIONS))
    check_export(d, "c-op", sent)
    assert all(workers_owning(d, mpid) == [0] for mpid in MEMBERS)
    # The partner count follows the partitions to worker 0.
    wait_for(lambda: stats(d, "c-op")["partner_profiles"] == 30, "the count after the move")
    leaving.start(timeout=120)
    check_explanations(d, "c-op")
    check_export(d, "c-op", sent)
    wait_for(lambda: stats(d, "c-op")["partner_profiles"] == 30, "the count after the return")


def cli(d: Deployment, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder.cli", *args, "--api-url", d.api.url],
        env={**os.environ, "FORWARDER_API_TOKEN": token},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


def stats(d: Deployment, connection_id: str) -> dict[str, Any]:
    status, answer, _ = d.call("GET", f"/connections/{connection_id}/stats")
    assert status == 200, answer
    return dict(answer)


def wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_preview_counts_and_sends_nothing_until_it_is_active(d: Deployment) -> None:
    create_output(d, "out-pre")
    create_connection(d, "c-pre", "out-pre", "preview")
    preview = wait_for(
        lambda: (s := stats(d, "c-pre")["preview"]) and s["members"] == 30 and s,
        "the preview counts the 30 members",
    )
    assert preview["members_by_identity_type"] == {"email": 30}
    assert preview["would_send"] == {"add": 30}
    # Drops count per evaluation: the output's and the connection's syncs may both see them.
    dropped = stats(d, "c-pre")["dropped"]
    assert set(dropped) == {"no_accepted_identity"} and dropped["no_accepted_identity"] >= 5
    assert explain_until_answered(d, "c-pre", "m-1")["verdict"] == "preview"
    assert consume(d.topic("forward-out-pre"), expected=1, timeout=3) == []

    code, answer, _ = d.call("PATCH", "/connections/c-pre", {"status": "active"})
    assert code == 200, answer
    records = consume(d.topic("forward-out-pre"), expected=30)
    assert sorted(v["mpid"] for _, v, _ in records) == sorted(MEMBERS)
    assert {v["action"] for _, v, _ in records} == {"add"}
    after = stats(d, "c-pre")
    assert after["preview"] is None and after["added"] == 30
    assert explain_until_answered(d, "c-pre", "m-1")["verdict"] == "at_partner"


def test_a_resync_sends_every_member_again_under_new_record_ids(d: Deployment) -> None:
    first = consume(d.topic("forward-out-op"), expected=30)
    code, answer, _ = d.call("POST", "/connections/c-op/resync")
    assert (code, answer["resync"]["generation"]) == (202, 1), answer
    assert d.call("POST", "/connections/c-op/resync")[0] == 409  # one runs

    earlier = {v["record_id"] for _, v, _ in first}
    every = consume(d.topic("forward-out-op"), expected=60)
    again = [(k, v, p) for k, v, p in every if v["record_id"] not in earlier]
    assert len(every) == 60 and len(again) == 30
    assert sorted(v["mpid"] for _, v, _ in again) == sorted(MEMBERS)
    assert {v["action"] for _, v, _ in again} == {"add"}
    by_mpid = {v["mpid"]: v for _, v, _ in first}
    for _, record, _ in again:
        assert record["identities"] == by_mpid[record["mpid"]]["identities"]
        assert record["attributes"] == by_mpid[record["mpid"]]["attributes"]
    done = wait_for(
        lambda: (s := stats(d, "c-op"))["resync_partitions_done"] == PARTITIONS and s,
        "every partition reports the resync",
    )
    assert done["resync_generation"] == 1 and done["sync"]["done"] == done["sync"]["profiles"]
    explained = explain_until_answered(d, "c-op", "m-1")
    assert explained["sent"]["resync_generation"] == 1

    resynced = cli(d, "connections", "resync", "c-op")
    assert resynced.returncode == 0, resynced.stderr
    assert d.call("GET", "/connections/c-op")[1]["resync"]["generation"] == 2
    code, answer, _ = d.call("PATCH", "/connections/c-pre", {"status": "inactive"})
    assert d.call("POST", "/connections/c-pre/resync")[0] == 409  # not active
