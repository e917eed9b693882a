"""The console's pages and headers as `forwarder api` serves them (no broker: the API's Kafka
clients are never started), and the pure parts behind the API answers the console reads."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from html.parser import HTMLParser
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from control.api import PLANE, build_app
from control.console import ASSETS, load_assets
from control.dead_letter_tail import shown
from control.stats import connection_stats
from control.validation import partner_view
from core.settings import Settings
from partners.catalog import CATALOG
from schemas.records import ConnectionConfig, DeadLetter, DeadLetterError, SourceRef

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
TOKEN = "console-unit-token"
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Coroutine[Any, Any, Client]]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """The API's app with its middlewares and routes, without its Kafka lifecycle: the
    configuration is never read, as in the first seconds after a start."""
    clients: list[Client] = []

    async def make(**settings: Any) -> Client:
        app = await build_app(Settings(**settings))
        app.cleanup_ctx.clear()
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def test_the_root_and_ui_lead_to_the_console(make_client: MakeClient) -> None:
    client = await make_client(api_token=TOKEN)
    for path in ("/", "/ui"):
        response = await client.get(path, allow_redirects=False)
        assert response.status == 302 and response.headers["Location"] == "/ui/"
        assert response.headers["Content-Security-Policy"] == CSP


async def test_every_file_is_served_with_the_security_headers(make_client: MakeClient) -> None:
    client = await make_client(api_token=TOKEN)
    for path, name in [("/ui/", "index.html")] + [(f"/ui/{name}", name) for name in ASSETS]:
        response = await client.get(path)
        assert response.status == 200, path
        assert response.headers["Content-Type"] == ASSETS[name]
        assert response.headers["Content-Security-Policy"] == CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert await response.read()


async def test_only_the_console_files_are_served(make_client: MakeClient) -> None:
    client = await make_client(api_token=TOKEN)
    for path in ("/ui/api.py", "/ui/..%2F__init__.py", "/ui/static", "/ui/index.htm"):
        response = await client.get(path)
        assert response.status == 404, path
        assert response.headers["Content-Security-Policy"] == CSP


async def test_the_console_and_access_answer_before_the_config_is_read(
    make_client: MakeClient,
) -> None:
    client = await make_client(api_token=TOKEN)
    assert (await client.get("/outputs")).status == 503
    assert (await client.get("/ui/")).status == 200
    anonymous = await client.get("/access")
    assert await anonymous.json() == {"writes_enabled": True, "token_valid": False}
    wrong = await client.get("/access", headers={"Authorization": "Bearer nope"})
    assert (await wrong.json())["token_valid"] is False
    right = await client.get("/access", headers={"Authorization": f"Bearer {TOKEN}"})
    assert await right.json() == {"writes_enabled": True, "token_valid": True}


async def test_a_read_only_api_says_so(make_client: MakeClient) -> None:
    client = await make_client(api_token=TOKEN, api_writes_enabled=False)
    given = await client.get("/access", headers={"Authorization": f"Bearer {TOKEN}"})
    assert await given.json() == {"writes_enabled": False, "token_valid": False}


class _Page(HTMLParser):
    """Every tag's attributes, and whether a script or style element has inline content."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag if tag in ("script", "style") else None

    def handle_data(self, data: str) -> None:
        if self._open and data.strip():
            self.inline.append(self._open)


def test_the_page_has_no_inline_code_and_nothing_from_other_hosts() -> None:
    assets = load_assets()
    page = _Page()
    page.feed(assets["index.html"].decode())
    assert page.inline == []
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts == [{"src": "console.js", "defer": None}]
    for tag, attrs in page.tags:
        assert not [name for name in attrs if name.startswith("on") or name == "style"], tag
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            assert "//" not in value and not value.startswith("/"), (tag, value)
    script = assets["console.js"].decode()
    # The one URL is SVG's namespace, which is never fetched; nothing parses text as HTML.
    assert re.findall(r"https?://[A-Za-z0-9.-]+", script) == ["http://www.w3.org"]
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|eval\(|new Function", script)
    assert "localStorage" not in script and "document.cookie" not in script
    assert "url(" not in assets["console.css"].decode()


def test_the_directory_carries_what_a_partner_card_and_its_form_need() -> None:
    crm = partner_view(CATALOG["email-crm"])
    assert (crm.batch_limit, crm.rate_per_second, crm.rate_burst) == (75, 100.0, 100)
    hook = {field.name: field for field in partner_view(CATALOG["webhook"]).settings}
    assert hook["url"].required and hook["url"].format == "uri"
    assert hook["token_env"].required and hook["token_env"].secret
    assert not hook["auth_scheme"].required and hook["auth_scheme"].default == "Bearer"
    records = hook["batch_max_records"]
    assert (records.type, records.required, records.default) == ("integer", False, None)
    assert [f.required for f in hook.values()] == sorted(
        (f.required for f in hook.values()), reverse=True
    )
    assert partner_view(CATALOG["custom"]).settings == []


def _sync_exposition(total: int, done: int) -> str:
    registry = CollectorRegistry()
    Gauge("forwarder_sync_profiles", "", ["connection_id"], registry=registry).labels("c").set(
        total
    )
    Gauge("forwarder_sync_profiles_done", "", ["connection_id"], registry=registry).labels("c").set(
        done
    )
    return generate_latest(registry).decode()


def test_stats_carry_the_sync_progress_summed_over_workers() -> None:
    connection = ConnectionConfig(
        connection_id="c", audience_id="a", output_id="o", status="active"
    )
    stats = connection_stats(connection, [_sync_exposition(100, 40), _sync_exposition(50, 50)], 0)
    assert stats.sync is not None and (stats.sync.profiles, stats.sync.done) == (150, 90)
    assert connection_stats(connection, [""], 0).sync is None


def _letter(topic: str, value: bytes, encoding: str = "text") -> DeadLetter:
    text = base64.b64encode(value).decode() if encoding == "base64" else value.decode()
    return DeadLetter(
        source=SourceRef(topic=topic, partition=0, offset=1),
        key="k",
        value=text,
        value_encoding=encoding,  # type: ignore[arg-type]
        error=DeadLetterError(kind="invalid_config", message="m"),
        timestamp_ms=1,
    )


def test_dead_letters_of_output_records_never_show_settings() -> None:
    secret = b'{"output_id": "o", "settings": {"token": "sk-live-1"}}'
    redacted = shown(_letter("p.forwarder-outputs", secret), "p.forwarder-outputs")
    assert redacted.value is not None and "sk-live-1" not in redacted.value
    assert orjson.loads(redacted.value)["settings"] == "<redacted>"
    binary = shown(
        _letter("p.forwarder-outputs", b"\xff" + secret, "base64"), "p.forwarder-outputs"
    )
    assert binary.value is not None and binary.value.startswith("<redacted: ")
    assert binary.value_encoding == "text"
    # Input records hold no settings: shown as the topic holds them.
    other = _letter("p.profile-updates", secret)
    assert shown(other, "p.forwarder-outputs") == other
    done = _letter("p.forwarder-outputs", b"<redacted: 10 bytes, sha256 ab>")
    assert shown(done, "p.forwarder-outputs") == done


async def test_a_dead_letters_limit_out_of_range_is_refused(make_client: MakeClient) -> None:
    client = await make_client(api_token=TOKEN)
    client.server.app[PLANE].view.loaded.set()  # as if read: the limit is checked first
    for limit in ("0", "501", "abc", "²", "-1", "9" * 5000):
        response = await client.get("/dead-letters", params={"limit": limit})
        assert response.status == 422, limit
        assert (await response.json())["detail"][0]["field"] == "limit"
