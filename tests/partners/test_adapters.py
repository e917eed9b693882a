"""Adapters' pure parts: settings, request shapes, response meanings, per-mpid order."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from partners.adapters import ADAPTERS, OutputSettingsError, adapter_settings
from partners.adapters.ad_audiences import AdAudiencesAdapter, AdAudiencesSettings
from partners.adapters.base import (
    Accepted,
    AdapterContext,
    HttpRequest,
    HttpResponse,
    Refused,
    Retry,
    ordered_groups,
    retry_after_seconds,
)
from partners.adapters.email_crm import EmailCrmAdapter, EmailCrmSettings
from partners.adapters.webhook import WebhookAdapter, WebhookSettings
from partners.catalog import CATALOG, Output, resolve_output
from partners.secrets import REDACTED, MissingSecretError, Secrets
from schemas.records import IdentityType, OutputConfig
from tests.support.sink_records import outbound

SECRET = "s3cr3t-token-value"


def output(partner: str, settings: dict[str, Any]) -> Output:
    accepted = None if not CATALOG[partner].configurable else [IdentityType.EMAIL]
    return resolve_output(
        OutputConfig(
            output_id="out-1", partner=partner, accepted_identities=accepted, settings=settings
        )
    )


def context(partner: str, session: Any = None) -> AdapterContext:
    return AdapterContext(
        output=output(partner, {}),
        partner=CATALOG[partner],
        secrets=Secrets({"TOKEN": SECRET}),
        session=session,
    )


def response(status: int, body: Any = None, **headers: str) -> HttpResponse:
    return HttpResponse(status, headers, orjson.dumps(body) if body is not None else b"")


def meta_adapter() -> AdAudiencesAdapter:
    settings = AdAudiencesSettings.model_validate(
        {"base_url": "http://127.0.0.1:1/v21.0", "audience_id": "6000", "token_env": "TOKEN"}
    )
    return AdAudiencesAdapter(settings, context("ad-audiences"))


def braze_adapter() -> EmailCrmAdapter:
    settings = EmailCrmSettings.model_validate(
        {"base_url": "http://127.0.0.1:1", "api_key_env": "TOKEN"}
    )
    return EmailCrmAdapter(settings, context("email-crm"))


# ---------------------------------------------------------------- catalog and settings


def test_every_adapter_of_the_catalog_exists() -> None:
    assert {p.adapter for p in CATALOG.values() if p.adapter} <= set(ADAPTERS)
    assert CATALOG["ad-audiences"].batch_limit == 10_000
    assert CATALOG["email-crm"].batch_limit == 75


def test_webhook_and_jsonl_outputs_list_their_identities_like_custom() -> None:
    config = OutputConfig(output_id="w", partner="webhook", settings={})
    with pytest.raises(ValueError, match="webhook output must list"):
        resolve_output(config)


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "http://127.0.0.1/hook", "token": SECRET, "token_env": "TOKEN"},
        {"url": "http://127.0.0.1/hook", "api_key": SECRET, "token_env": "TOKEN"},
        {"url": "http://127.0.0.1/hook", "authorization": SECRET, "token_env": "TOKEN"},
        {"url": "http://127.0.0.1/hook", "token_env": SECRET},
        {"url": f"http://user:{SECRET}@127.0.0.1/hook", "token_env": "TOKEN"},
        {"url": f"http://127.0.0.1/hook?access_token={SECRET}", "token_env": "TOKEN"},
    ],
)
def test_inline_secrets_are_refused_without_quoting_them(settings: dict[str, Any]) -> None:
    with pytest.raises(OutputSettingsError) as error:
        adapter_settings(ADAPTERS["webhook"], output("webhook", settings))
    assert SECRET not in str(error.value)


def test_settings_name_their_secrets_and_missing_ones_stop_the_start() -> None:
    settings = adapter_settings(
        ADAPTERS["webhook"],
        output(
            "webhook",
            {"url": "http://127.0.0.1/hook", "token_env": "HOOK_TOKEN", "auth_scheme": "Token"},
        ),
    )
    assert settings.secret_env_names() == ["HOOK_TOKEN"]
    with pytest.raises(MissingSecretError, match="HOOK_TOKEN"):
        Secrets.from_env(settings.secret_env_names(), {})


def test_secrets_are_redacted_from_text() -> None:
    assert Secrets({"A": SECRET}).redact(f"bad token {SECRET}!") == f"bad token {REDACTED}!"


# ---------------------------------------------------------------- shared helpers


def test_ordered_groups_cut_where_a_profile_changes_group() -> None:
    records = [
        outbound("a", "add", seq=0),
        outbound("b", "add", seq=1),
        outbound("b", "remove", seq=2),
        outbound("c", "remove", seq=3),
        outbound("a", "remove", seq=4),
    ]
    segments = ordered_groups(records, range(len(records)), lambda r: r.action)
    assert segments == [{"add": [0, 1]}, {"remove": [2, 3, 4]}]


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# ---------------------------------------------------------------- webhook


def test_webhook_posts_the_batch_in_order_and_reads_rejections() -> None:
    settings = WebhookSettings.model_validate(
        {"url": "http://127.0.0.1:1/hook", "token_env": "TOKEN"}
    )
    adapter = WebhookAdapter(settings, context("webhook"))
    records = [outbound("a", seq=0), outbound("a", "remove", seq=1), outbound("b", seq=2)]
    (request,) = adapter.plan(records).steps
    body = orjson.loads(request.body)
    assert request.method == "POST"
    assert [r["record_id"] for r in body["records"]] == ["a-0", "a-1", "b-2"]
    assert SECRET not in request.body.decode()
    assert adapter.auth_headers() == {"Authorization": f"Bearer {SECRET}"}
    answer = {"rejected": [{"record_id": "a-1", "reason": "unknown user"}]}
    assert adapter.interpret(request, response(200, answer)) == Accepted({1: "unknown user"})
    assert adapter.interpret(request, response(429, {}, **{"Retry-After": "2"})) == Retry(
        "HTTP 429: {}", 2.0
    )
    assert isinstance(adapter.interpret(request, response(503)), Retry)
    assert adapter.interpret(request, response(400, {"error": "bad"})) == Refused(
        'HTTP 400: {"error":"bad"}'
    )


# ---------------------------------------------------------------- ad audiences (Meta-shaped)


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def test_ad_audiences_adds_post_removes_delete_with_hashed_rows_in_order() -> None:
    adapter = meta_adapter()
    records = [
        outbound("a", "add", {"email": "A@Example.com", "ios_idfa": "ABC-1"}, seq=0),
        outbound("b", "add", {"mobile_number": "+1 650 555 1212"}, seq=1),
        outbound("a", "remove", {"email": "a@example.com"}, seq=2),
        outbound("c", "attribute_update", seq=3),
        outbound("d", "add", {"email": "broken"}, seq=4),
    ]
    plan = adapter.plan(records)
    assert plan.rejected == {4: "no usable identity (email: not an email address)"}
    assert [(s.method, s.items) for s in plan.steps] == [("POST", (0, 1)), ("DELETE", (2,))]
    first = orjson.loads(plan.steps[0].body)["payload"]
    assert first["schema"] == ["EMAIL", "PHONE", "MADID"]
    assert first["data"] == [
        [sha("a@example.com"), "", "abc-1"],
        ["", sha("16505551212"), ""],
    ]
    assert plan.steps[0].url == "http://127.0.0.1:1/v21.0/6000/users"


def test_ad_audiences_requests_hold_at_most_10000_rows() -> None:
    adapter = meta_adapter()
    records = [outbound(f"m{i}", seq=i) for i in range(10_001)]
    steps = adapter.plan(records).steps
    assert [len(orjson.loads(s.body)["payload"]["data"]) for s in steps] == [10_000, 1]


def test_ad_audiences_responses() -> None:
    adapter = meta_adapter()
    records = [outbound("a", seq=0), outbound("b", seq=1)]
    (request,) = adapter.plan(records).steps
    samples = {sha("b@example.com"): "invalid hash"}
    ok = response(
        200, {"num_received": 2, "num_invalid_entries": 1, "invalid_entry_samples": samples}
    )
    assert adapter.interpret(request, ok) == Accepted({1: "invalid hash"})
    throttled = response(400, {"error": {"type": "OAuthException", "code": 17, "message": "limit"}})
    assert isinstance(adapter.interpret(request, throttled), Retry)
    bad = response(400, {"error": {"type": "OAuthException", "code": 100, "message": "Invalid"}})
    assert adapter.interpret(request, bad) == Refused("HTTP 400: OAuthException code 100: Invalid")


# ---------------------------------------------------------------- email CRM (Braze-shaped)


def test_email_crm_objects_carry_membership_and_attributes() -> None:
    adapter = braze_adapter()
    records = [
        outbound("a", "add", {"customer_id": "c-1", "email": "a@x.io"}, {"tier": "gold"}, seq=0),
        outbound("b", "remove", {"email": " B@X.io "}, seq=1),
        outbound("c", "attribute_update", {"email": "c@x.io"}, {"tier": "silver"}, seq=2),
        outbound("d", "add", {"mobile_number": "+16505551212"}, seq=3),
    ]
    plan = adapter.plan(records)
    assert plan.rejected == {3: "no customer_id or email"}
    (request,) = plan.steps
    assert orjson.loads(request.body)["attributes"] == [
        {"external_id": "c-1", "tier": "gold", "audience_aud-1": True},
        {"email": "b@x.io", "audience_aud-1": False},
        {"email": "c@x.io", "tier": "silver"},
    ]
    assert request.url == "http://127.0.0.1:1/users/track"


def test_email_crm_at_most_75_objects_and_one_object_per_profile_per_request() -> None:
    adapter = braze_adapter()
    records = [outbound(f"m{i}", seq=i) for i in range(100)] + [outbound("m0", "remove", seq=100)]
    sizes = [len(s.items) for s in adapter.plan(records).steps]
    assert sizes == [75, 25, 1]


def test_email_crm_responses() -> None:
    adapter = braze_adapter()
    (request,) = adapter.plan([outbound("a", seq=0), outbound("b", seq=1)]).steps
    partial = {
        "message": "success",
        "errors": [{"type": "'external_id' is invalid", "input_array": "attributes", "index": 1}],
    }
    assert adapter.interpret(request, response(201, partial)) == Accepted(
        {1: "'external_id' is invalid"}
    )
    limited = adapter.interpret(request, response(429, {}, **{"X-RateLimit-Reset": "1"}))
    assert limited == Retry("HTTP 429: {}", 0.0)
    assert adapter.interpret(request, response(400, {"message": "Invalid"})) == Refused(
        "HTTP 400: Invalid"
    )


async def test_http_send_turns_connection_errors_into_retries() -> None:
    async with aiohttp.ClientSession() as session:
        settings = WebhookSettings.model_validate(
            {"url": "http://127.0.0.1:9/hook", "token_env": "TOKEN"}
        )
        adapter = WebhookAdapter(settings, context("webhook", session))
        request = HttpRequest("POST", "http://127.0.0.1:9/hook", b"{}", (0,))
        outcome = await adapter.send(request)
    assert outcome == Retry("connection error: ClientConnectorError")


def test_jsonl_settings_need_a_directory(tmp_path: Path) -> None:
    settings = adapter_settings(ADAPTERS["jsonl"], output("jsonl", {"directory": str(tmp_path)}))
    assert settings.secret_env_names() == []
