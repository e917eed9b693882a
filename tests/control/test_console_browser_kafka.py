"""The console in a real browser: headless Chromium (the system's, driven by Playwright) against a
real `forwarder api`, a real worker and the broker. A new user's way through it: the seed's
example (Partner A taking IDFA and GAID, Partner B taking email) set up and connected on the
pages only, members published upstream, their records counted on the Stats page.

Screenshots of each page go to $FORWARDER_CONSOLE_SCREENSHOTS when it names a folder
(the README's come from `FORWARDER_CONSOLE_SCREENSHOTS=docs/console`).
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devtools.local import REPO, ControlApi, Worker, produce
from tests.support.seed import seed_records

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "console-token-" + uuid.uuid4().hex
# Chromium's flags for a sandboxed, offline machine: no GPU, no calls home.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def api(worker: Worker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlApi]:
    running = ControlApi(
        prefix=worker.prefix,
        data_dir=tmp_path_factory.mktemp("api"),
        token=TOKEN,
        worker_metrics_urls=[worker.metrics_url],
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        # One line, and a failure: a machine without the browser has not tested the console.
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash scripts/browser.sh` (make test does) to install "
            "Debian's chromium",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # A fresh profile per test: nothing kept between them (the token lives in sessionStorage).
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    opened.set_default_timeout(WAIT_MS)
    yield opened
    context.close()
    # A CSP violation or a script error shows as a console error; the API's refusals (the
    # 401 and 422 the test asks for) are logged by the browser as failed loads.
    refused = "Failed to load resource: the server responded with a status of 4"
    assert [e for e in errors if not e.startswith(refused)] == []


def screenshot(page: Page, name: str) -> None:
    folder = os.environ.get("FORWARDER_CONSOLE_SCREENSHOTS")
    if folder:
        target = REPO / folder
        target.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def read(api: ControlApi, path: str) -> Any:
    with urllib.request.urlopen(api.url + path, timeout=10) as response:
        return json.loads(response.read())


def output_form(page: Page, partner: str, output_id: str, name: str) -> None:
    page.click("nav >> text=Directory")
    page.click(f'[data-partner="{partner}"] >> text=Set up output')
    expect(page.locator("#output-dialog")).to_be_visible()
    page.fill("#f-output_id", output_id)
    page.fill("#f-name", name)


def check_identities(page: Page, *types: str) -> None:
    for identity in types:
        page.check(f"#output-form input[name=identity][value={identity}]")


def publish(topic: str, records: list[tuple[str, Any]]) -> None:
    """Produce from a thread of its own: Playwright's loop runs in the test's thread."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(produce, topic, records).result()


def publish_members(worker: Worker, audience: str, numbers: range) -> None:
    """The upstream producers' part: of the seed's 100 profiles, those numbered ``numbers``."""
    profiles, memberships = seed_records(audience, numbers)
    publish(worker.topic("profile-updates"), profiles)
    publish(worker.topic("audience-memberships"), memberships)


def test_a_new_user_connects_the_seed_example_in_the_browser(
    worker: Worker, api: ControlApi, page: Page
) -> None:
    # The README's names: the module's worker and API have topics of their own.
    a, b, audience = "partner-a", "partner-b", "aud-1"

    # / leads to the console; the Directory shows a card per partner.
    page.goto(api.url + "/")
    assert page.url == api.url + "/ui/"
    expect(page.locator("[data-partner]")).to_have_count(len(read(api, "/partners")))
    custom = page.locator('[data-partner="custom"]')
    expect(custom).to_contain_text("any, chosen per output")
    expect(page.locator('[data-partner="email-crm"]')).to_contain_text("75 records")
    expect(page.locator("#access-state")).to_have_text("No token: writes will be refused")
    screenshot(page, "directory")

    # Without a token the API refuses the write, and the form says so.
    output_form(page, "custom", a, "Partner A")
    check_identities(page, "ios_idfa", "android_aaid")
    page.click("#output-save")
    expect(page.locator('#output-form [data-error-for="body"]')).to_contain_text(
        "a valid bearer token is needed to write"
    )
    page.click("#output-cancel")
    assert read(api, "/outputs") == []

    # The token, asked once, kept for the tab's session.
    page.fill("#token-input", TOKEN)
    page.click("#token-form >> text=Use token")
    expect(page.locator("#access-state")).to_have_text("Token accepted: writes enabled")
    assert page.evaluate("Object.values(sessionStorage)") == [TOKEN]
    assert TOKEN not in page.url and page.context.cookies() == []

    # A 422 shows beside the field it names: a webhook output without its token_env.
    output_form(page, "webhook", "hooks", "Hooks")
    check_identities(page, "email")
    page.fill('[data-setting="url"]', "https://hooks.example.com/audiences")
    page.click("#output-save")
    expect(page.locator('[data-error-for="settings.token_env"]')).to_have_text("Field required")
    expect(page.locator('[data-field="settings.token_env"]')).to_have_class("field invalid")
    expect(page.locator('[data-error-for="settings.url"]')).to_be_empty()
    screenshot(page, "output-form")
    page.click("#output-cancel")

    # The seed's two outputs, from the custom partner's card.
    output_form(page, "custom", a, "Partner A")
    check_identities(page, "ios_idfa", "android_aaid")
    page.click("#output-save")
    expect(page.locator(f'[data-output="{a}"]')).to_contain_text("android_aaid")
    output_form(page, "custom", b, "Partner B")
    check_identities(page, "email")
    page.check("#f-supports_attributes")
    page.click("#output-save")
    expect(page.locator(f'[data-output="{b}"]')).to_contain_text("email")
    screenshot(page, "outputs")
    outputs = {o["output_id"]: o for o in read(api, "/outputs")}
    assert outputs[a]["accepted_identities"] == ["android_aaid", "ios_idfa"]
    assert not outputs[a]["supports_attributes"]
    assert outputs[b]["accepted_identities"] == ["email"] and outputs[b]["supports_attributes"]

    # The audience's card: Connect Output, inactive first.
    page.click("nav >> text=Audiences")
    page.fill("#audience-input", audience)
    page.click("#audience-form >> text=Open audience")
    card = page.locator(f'[data-audience="{audience}"]')
    connect = card.locator("form.connect")
    connect.locator("[data-role=output]").select_option(a)
    expect(connect).to_contain_text("This output takes no attributes.")
    connect.locator("text=Add connection").click()
    expect(card.locator("form.connection")).to_have_count(1)
    connect.locator("[data-role=output]").select_option(b)
    connect.locator("[data-role=attributes]").fill("ltv")
    screenshot(page, "connect")
    connect.locator("text=Add connection").click()
    expect(card.locator("form.connection")).to_have_count(2)
    connections = {c["output_id"]: c for c in read(api, f"/connections?audience_id={audience}")}
    assert {c["status"] for c in connections.values()} == {"inactive"}
    assert connections[b]["forwarded_attributes"] == ["ltv"]

    # Half the members are published while the connections are inactive: counted as dropped.
    publish_members(worker, audience, range(50))
    page.click("nav >> text=Stats")
    stats_a = page.locator(f'[data-stats="{connections[a]["connection_id"]}"]')
    stats_b = page.locator(f'[data-stats="{connections[b]["connection_id"]}"]')
    expect(stats_a.locator('[data-count="dropped"]')).to_contain_text(re.compile(r"inactive: \d"))
    worker.wait_for(lambda: worker.metric("forwarder_table_profiles") >= 50, timeout=30)

    # Status to Active with the switch, on each connection: the initial sync sends those.
    page.click("nav >> text=Audiences")
    for output_id in (a, b):
        row = card.locator(f'[data-connection="{connections[output_id]["connection_id"]}"]')
        row.locator("[role=switch]").check()
        expect(row.locator(".status-label")).to_have_text("Active")
    assert {c["status"] for c in read(api, f"/connections?audience_id={audience}")} == {"active"}
    screenshot(page, "audiences")

    # The Stats page, live: the initial sync's adds, then those of the other half.
    page.click("nav >> text=Stats")
    expect(stats_a.locator('[data-count="added"]')).to_have_text("50", timeout=60_000)
    page.wait_for_timeout(4_500)  # a few polls between the two on the chart
    publish_members(worker, audience, range(50, 100))
    expect(stats_a.locator('[data-count="added"]')).to_have_text("100", timeout=60_000)
    expect(stats_b.locator('[data-count="added"]')).to_have_text("65", timeout=60_000)
    expect(stats_b.locator('[data-count="dropped"]')).to_contain_text("no_accepted_identity: 35")
    expect(stats_a.locator('[data-count="last_record"]')).to_contain_text(" ago)")
    expect(stats_a.locator('[data-count="sync"]')).to_contain_text(
        re.compile(r"done: (5\d|100) profiles checked")
    )
    page.wait_for_timeout(4_500)  # a few more polls for the chart
    expect(stats_a.locator("polyline.adds")).to_have_count(1)
    screenshot(page, "stats")

    # A bad input record and an output record with an inline secret reach the dead letters;
    # the secret is not shown.
    publish(worker.topic("profile-updates"), [("u-bad", b"{not json")])
    secret = "sk-" + uuid.uuid4().hex
    bad_output = "bad-output"
    publish(
        worker.topic("forwarder-outputs"),
        [(bad_output, {"output_id": bad_output, "partner": "nowhere", "settings": {"t": secret}})],
    )
    page.click("nav >> text=Dead letters")
    expect(page.locator('#dead-letters [data-kind="invalid_json"]')).to_contain_text(
        "{not json", timeout=30_000
    )
    expect(page.locator('#dead-letters [data-kind="invalid_config"]')).to_contain_text(
        "<redacted>", timeout=30_000
    )
    expect(page.locator("#dead-letters")).not_to_contain_text(secret)
    screenshot(page, "dead-letters")


def test_a_read_only_api_gives_a_read_only_console(
    worker: Worker, page: Page, tmp_path: Path
) -> None:
    read_only = ControlApi(
        prefix=worker.prefix,
        data_dir=tmp_path,
        token="",
        extra_env={"FORWARDER_API_WRITES_ENABLED": "false"},
    )
    read_only.start()
    try:
        page.goto(read_only.url + "/ui/")
        expect(page.locator("#access-state")).to_have_text("Read-only API: writes are disabled")
        expect(page.locator("[data-partner]").first).to_be_visible()
        expect(page.locator("text=Set up output")).to_have_count(6)
        for button in page.locator("text=Set up output").all():
            expect(button).to_be_hidden()
        expect(page.locator("#token-form")).to_be_hidden()
    finally:
        read_only.stop()


def test_the_page_loads_nothing_from_other_hosts(api: ControlApi, page: Page) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(api.url + "/ui/#stats")
    expect(page.locator("#page-stats")).to_be_visible()
    assert requested and all(url.startswith(api.url + "/") for url in requested), requested
