"""Preview, resync and explain, on plain data: no Kafka."""

from __future__ import annotations

import orjson

from core.routing import Routing
from schemas.records import ConnectionConfig
from schemas.state import ProfileState, dump_profile, load_profile
from streams.explain import explain, held_member
from streams.forwarding import Decision, Source, decide, new_profile, reconcile
from tests.streams.test_forwarding import (
    connection,
    contract_records,
    membership,
    output,
    routing_of,
    update,
)

EMAIL, IDFA = "a@example.com", "6D92078A-8246-4BA4-AE5B-76104861E7DC"


class Profile:
    """One profile fed through decide() and reconcile() as the worker does, offset by offset."""

    def __init__(self, routing: Routing, mpid: str = "u-1") -> None:
        self.routing = routing
        self.state: ProfileState = new_profile(mpid)
        self.offset = 0

    def _apply(self, decision: Decision) -> Decision:
        assert decision.state is not None
        self.state = load_profile(dump_profile(decision.state))
        return decision

    def feed(self, *events: object) -> list[Decision]:
        decisions = []
        for event in events:
            self.offset += 1
            source = Source("in", 0, self.offset)
            decisions.append(self._apply(decide(self.state, event, self.routing, source)))  # type: ignore[arg-type]
        return decisions

    def sync(self) -> Decision:
        """A sync request's reconciliation after a config change."""
        self.offset += 1
        return self._apply(reconcile(self.state, self.routing, Source("sync", 0, self.offset), 9))


def seed(status: str = "active", **extra: object) -> Routing:
    config = connection("c-1", "partner-a", status=status, forwarded=["ltv"])
    if extra:
        config = ConnectionConfig.model_validate({**config.model_dump(), **extra})
    return routing_of([output("partner-a", ["email", "ios_idfa"], True)], [config])


def switch(routing: Routing, **changes: object) -> None:
    current = routing.connections["c-1"]
    routing.put_connection(ConnectionConfig.model_validate({**current.model_dump(), **changes}))


def member(profile: Profile, **identities: str) -> list[Decision]:
    return profile.feed(
        update(profile.state["mpid"], identities=identities, attributes={"ltv": 7}),
        membership(profile.state["mpid"], "add"),
    )


def test_a_preview_sends_nothing_and_counts_what_it_would_send() -> None:
    profile = Profile(seed("preview"))
    decisions = member(profile, email=EMAIL, ios_idfa=IDFA, customer_id="c")
    assert all(decision.records == [] for decision in decisions)
    (change,) = decisions[1].previews or []
    assert (change.actions, change.member_delta) == (["add"], 1)
    assert change.identity_deltas == {"email": 1, "ios_idfa": 1}
    assert profile.state["sent"] == {}
    # The same profile again: it would already hold it, nothing more to count.
    assert profile.feed(update("u-1", attributes={"ltv": 7}))[0].previews is None
    # Losing an identity would remove it; leaving the audience would remove the profile.
    (lost,) = profile.feed(update("u-1", identities={"ios_idfa": None}))[0].previews or []
    assert (lost.actions, lost.member_delta, lost.identity_deltas) == (
        ["remove"],
        0,
        {"ios_idfa": -1},
    )
    (left,) = profile.feed(membership("u-1", "remove", ts=2))[0].previews or []
    assert (left.actions, left.member_delta, left.identity_deltas) == (
        ["remove"],
        -1,
        {"email": -1},
    )
    assert "preview" not in profile.state


def test_a_preview_counts_the_drops_an_active_connection_would() -> None:
    profile = Profile(seed("preview"))
    decisions = member(profile, customer_id="c")
    assert [drop.reason for drop in decisions[1].drops] == ["no_accepted_identity"]
    assert decisions[1].previews is None and decisions[1].records == []


def test_a_preview_switched_to_active_sends_every_member_as_the_initial_sync() -> None:
    routing = seed("preview")
    profile = Profile(routing)
    member(profile, email=EMAIL)
    switch(routing, status="active")
    decision = profile.sync()
    (record,) = contract_records(decision)
    assert (record.action, [i.value for i in record.identities], record.attributes) == (
        "add",
        [EMAIL],
        {"ltv": 7},
    )
    # The preview's count goes with it.
    assert [(p.member_delta, p.identity_deltas) for p in decision.previews or []] == [
        (-1, {"email": -1})
    ]
    assert "preview" not in profile.state and "c-1" in profile.state["sent"]


def test_an_active_connection_put_in_preview_disconnects_as_its_rule_says() -> None:
    for on_disconnect, removes in (("keep", 0), ("remove", 1)):
        routing = seed(on_disconnect=on_disconnect)
        profile = Profile(routing)
        member(profile, email=EMAIL)
        switch(routing, status="preview")
        decision = profile.sync()
        assert [r.action for r in contract_records(decision)] == ["remove"] * removes
        assert profile.state["sent"] == {}
        assert (decision.previews or [])[0].member_delta == 1


def test_an_erasure_sends_no_remove_for_what_a_preview_holds() -> None:
    profile = Profile(seed("preview"))
    member(profile, email=EMAIL)
    erasure = {"type": "profile_erasure", "mpid": "u-1", "request_id": "r", "timestamp_ms": 5}
    decision = decide(profile.state, erasure, profile.routing, Source("in", 0, 99))  # type: ignore[arg-type]
    assert decision.records == [] and decision.state is None


def test_a_resync_sends_every_member_again_under_new_record_ids() -> None:
    routing = seed()
    profile = Profile(routing)
    first = [r for d in member(profile, email=EMAIL, ios_idfa=IDFA) for r in contract_records(d)]
    assert [r.action for r in first] == ["add"]
    assert profile.sync().records == []  # a sync without a resync sends nothing

    switch(routing, resync={"generation": 1, "requested_ms": 5})
    decision = profile.sync()
    (again,) = contract_records(decision)
    assert again.action == "add"
    assert {(i.type, i.value) for i in again.identities} == {("email", EMAIL), ("ios_idfa", IDFA)}
    assert again.attributes == {"ltv": 7}
    assert again.record_id != first[0].record_id
    assert profile.state["sent"]["c-1"]["generation"] == 1
    assert profile.sync().records == []  # served once per generation

    switch(routing, resync={"generation": 2, "requested_ms": 6})
    (third,) = contract_records(profile.sync())
    assert third.record_id not in {again.record_id, first[0].record_id}


def test_members_joining_during_a_resync_are_sent_once() -> None:
    routing = seed(resync={"generation": 3, "requested_ms": 5})
    profile = Profile(routing)
    assert len(contract_records(member(profile, email=EMAIL)[1])) == 1
    assert profile.sync().records == []


def test_explain_says_why_with_types_and_never_values() -> None:
    routing = seed(consent={"require_gdpr": ["marketing"]})
    profile = Profile(routing)
    config = routing.connections["c-1"]
    out = routing.outputs["partner-a"]
    member(profile, email=EMAIL, customer_id="cust-9")
    answer = explain("u-1", profile.state, config, out, routing)
    assert answer["verdict"] == "consent" and answer["member"] is True
    assert answer["membership_timestamp_ms"] == 1
    assert answer["identity_types"] == ["customer_id", "email"]
    assert answer["matching_identity_types"] == ["email"]
    assert answer["consent"] == {
        "rule": {"require_gdpr": ["marketing"], "block_ccpa_opt_out": False},
        "allowed": False,
    }
    assert answer["sent"] is None

    consent = {"gdpr": {"marketing": {"consented": True, "timestamp_ms": 2}}}
    (decision,) = profile.feed(update("u-1", ts=2, consent=consent))
    (sent,) = contract_records(decision)
    answer = explain("u-1", profile.state, config, out, routing)
    assert answer["verdict"] == "at_partner"
    assert answer["sent"] == {
        "identity_types": ["email"],
        "attribute_names": ["ltv"],
        "last_action": "add",
        "last_record_id": sent.record_id,
        "last_timestamp_ms": 2,
        "since_ms": 2,
        "resync_generation": 0,
    }
    text = orjson.dumps(answer)
    assert EMAIL.encode() not in text and b"cust-9" not in text


def test_explain_verdicts_of_profiles_that_are_not_sent() -> None:
    routing = seed()
    config, out = routing.connections["c-1"], routing.outputs["partner-a"]
    assert explain("nobody", None, config, out, routing)["verdict"] == "unknown_profile"
    profile = Profile(routing)
    profile.feed(update("u-1", identities={"customer_id": "c"}))
    assert explain("u-1", profile.state, config, out, routing)["verdict"] == "not_member"
    profile.feed(membership("u-1", "add"))
    answer = explain("u-1", profile.state, config, out, routing)
    assert answer["verdict"] == "no_accepted_identity"
    switch(routing, status="inactive")
    assert explain("u-1", profile.state, routing.connections["c-1"], out, routing)["verdict"] == (
        "inactive"
    )


def test_held_member_is_what_was_sent() -> None:
    profile = Profile(seed())
    member(profile, email=EMAIL, customer_id="not-accepted")
    assert held_member(profile.state, "c-1") == {
        "mpid": "u-1",
        "identities": [{"type": "email", "value": EMAIL}],
        "attributes": {"ltv": 7},
        "since_ms": 1,
    }
    assert held_member(profile.state, "c-2") is None
