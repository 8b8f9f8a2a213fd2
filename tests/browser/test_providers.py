"""The Providers section of the dashboard in a real headless Chromium against the local stack (SPEC C2, C13).

API keys are validated by the sandbox model-list endpoints; GitHub's device flow is approved or denied
through the sandbox's control surface while the page polls, the backend's Step Functions workflow
polling the sandbox token endpoint in between. Like test_dashboard.py: Debian chromium (never
`playwright install`), the production Content-Security-Policy on every page (an inline script or style
is a violation and fails), no uncaught JS errors, screenshots in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import random
import re
import string

import httpx
import pytest

from tests.browser import support
from tests.browser.support import DESKTOP, PHONE, assert_no_horizontal_overflow, authorize_on_sandbox

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser


def shot(page, name: str, *, full_page: bool = False):
    return support.shot(page, f"providers-{name}", full_page=full_page)


def unique_login(prefix: str = "octo-prov") -> str:
    return support.unique_login(prefix)


DEVICE_DECISION_MS = 30_000  # the workflow polls the sandbox every second once the interval is 1 s


def sandbox_anthropic_key() -> str:
    """A key the sandbox accepts: the real prefix and at least 40 characters after it."""
    return "sk-ant-api03-" + "".join(random.choices(string.ascii_letters, k=40))


@pytest.fixture
def fast_github_device_flow(stack):
    """The sandbox GitHub answers device codes with a 1 s polling interval for this test."""
    before = httpx.get(f"{stack.url}/_sandbox/github/_config", timeout=10).json()
    answer = httpx.post(f"{stack.url}/_sandbox/github/_config", json={"device_interval": 1}, timeout=10)
    assert answer.status_code in (200, 204), answer.text
    try:
        yield
    finally:
        httpx.post(f"{stack.url}/_sandbox/github/_config",
                   json={"device_interval": before.get("device_interval", 5)}, timeout=10)


def sign_in_to_providers(page, login: str) -> None:
    page.goto("/dashboard/providers")
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard/providers$"))
    expect(page.get_by_test_id("user-login")).to_have_text(login)
    expect(page.get_by_role("heading", level=1, name="Providers")).to_be_visible()


def scroll_to_top_of(locator) -> None:
    """Scroll so the element starts just below the sticky header."""
    locator.evaluate("el => window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 76)")


def is_connect(provider: str):
    return lambda r: r.url.endswith(f"/api/providers/{provider}/connect") and r.request.method == "POST"


def start_device_flow(page, provider: str = "github") -> dict:
    card = page.get_by_test_id(f"provider-card-{provider}")
    connect = card.get_by_test_id(f"connect-{provider}")
    expect(connect).to_be_visible()
    connect.click()
    with page.expect_response(is_connect(provider)) as started:
        card.get_by_test_id("method-device_flow").click()
    assert started.value.status == 202, started.value.text()
    assert started.value.request.headers.get("x-csrf-token")
    flow = started.value.json()
    assert flow["status"] == "pending" and flow["flow_id"] and flow["user_code"]
    return flow


def decide_device_code(stack, user_code: str, login: str, *, approve: bool) -> None:
    decision = "approve" if approve else "deny"
    answer = httpx.post(f"{stack.url}/_sandbox/github/device/{decision}",
                        json={"user_code": user_code, "login": login}, timeout=10)
    assert answer.status_code < 300, answer.text


def disconnect(page, provider: str) -> None:
    card = page.get_by_test_id(f"provider-card-{provider}")
    card.get_by_test_id(f"disconnect-{provider}").click()
    dialog = page.get_by_test_id("disconnect-dialog")
    expect(dialog).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith(f"/api/providers/{provider}")
                              and r.request.method == "DELETE") as deleted:
        dialog.get_by_test_id("disconnect-confirm").click()
    assert deleted.value.status == 204
    assert deleted.value.request.headers.get("x-csrf-token")
    expect(dialog).to_have_count(0)
    expect(card.get_by_test_id(f"provider-health-{provider}")).to_have_text("Not connected")


# ---------------------------------------------------------------------------------------------------
# 1. API key
# ---------------------------------------------------------------------------------------------------


def test_api_key_rejected_then_saved_then_disconnected(page, problems, stack):
    login = unique_login()
    sign_in_to_providers(page, login)

    # Every provider gets a card; nothing is connected yet.
    for provider in ("anthropic", "openai", "google", "github"):
        expect(page.get_by_test_id(f"provider-card-{provider}")).to_be_visible()
    card = page.get_by_test_id("provider-card-anthropic")
    health = card.get_by_test_id("provider-health-anthropic")
    expect(health).to_have_text("Not connected")
    expect(card).to_contain_text("Claude (Anthropic)")
    shot(page, "list-desktop")

    # Connect → the methods the registry allows: an API key, and a login on a linked machine
    # (test_workspace_login.py drives that one).
    card.get_by_test_id("connect-anthropic").click()
    workspace_login = card.get_by_test_id("method-workspace_login")
    expect(workspace_login).to_contain_text("Log in on my machine")
    expect(workspace_login).to_contain_text("never reaches the cloud")
    expect(workspace_login).to_be_enabled()
    expect(card.get_by_test_id("method-device_flow")).to_have_count(0)
    shot(page, "methods")
    card.get_by_test_id("method-api_key").click()

    key_input = card.get_by_test_id("api-key-input")
    expect(key_input).to_be_focused()
    expect(key_input).to_have_attribute("type", "password")
    key_input.fill("sk-ant-bad")
    card.get_by_role("button", name="Show key").click()
    expect(key_input).to_have_attribute("type", "text")
    card.get_by_role("button", name="Hide key").click()
    expect(key_input).to_have_attribute("type", "password")

    # A key the provider rejects: an inline message, nothing saved, the field emptied.
    with page.expect_response(is_connect("anthropic")) as rejected:
        card.get_by_test_id("api-key-submit").click()
    assert rejected.value.status == 400
    assert rejected.value.json()["code"] == "INVALID_CREDENTIAL"
    assert rejected.value.request.headers.get("x-csrf-token")
    assert json.loads(rejected.value.request.post_data) == {"method": "api_key", "api_key": "sk-ant-bad"}
    error = card.get_by_test_id("api-key-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("The provider rejected this key")
    expect(key_input).to_have_value("")
    expect(health).to_have_text("Not connected")
    shot(page, "api-key-error")

    # A key the sandbox accepts: 201, the card turns Valid, and the key is nowhere in the page.
    key = sandbox_anthropic_key()
    key_input.fill(key)
    with page.expect_response(is_connect("anthropic")) as saved:
        card.get_by_test_id("api-key-submit").click()
    assert saved.value.status == 201, saved.value.text()
    assert saved.value.json()["provider"]["health"] == "valid"
    expect(health).to_have_text("Valid")
    expect(card.get_by_test_id("api-key-input")).to_have_count(0)
    expect(card).to_contain_text("API key")
    expect(card).to_contain_text(re.compile(r"(Last refreshed|Connected) just now"))
    expect(card.get_by_test_id("disconnect-anthropic")).to_be_visible()
    assert key not in page.content()
    assert key[-12:] not in page.content()
    shot(page, "api-key-valid")

    # On a phone: one column, no sideways scrolling, actions within reach.
    page.set_viewport_size(PHONE)
    scroll_to_top_of(card)
    expect(health).to_have_text("Valid")
    assert_no_horizontal_overflow(page)
    shot(page, "phone")
    page.set_viewport_size(DESKTOP)

    # The Overview counts the connection: onboarding step done, Providers stat 1.
    page.locator("#sidebar").get_by_role("link", name="Overview").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    onboarding = page.get_by_test_id("onboarding")
    expect(onboarding).to_contain_text("2 of 4 done")
    expect(onboarding.locator("li.is-done")).to_have_count(2)
    expect(page.get_by_test_id("overview-providers")).to_have_text("1")
    shot(page, "overview-connected")
    page.locator("#sidebar").get_by_role("link", name="Providers").click()
    page.wait_for_url(re.compile(r"/dashboard/providers$"))
    expect(health).to_have_text("Valid")

    # Disconnect, confirmed in a dialog: DELETE → 204 → Not connected.
    card.get_by_test_id("disconnect-anthropic").click()
    dialog = page.get_by_test_id("disconnect-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Disconnect Claude (Anthropic)?")
    shot(page, "disconnect-dialog")
    dialog.get_by_test_id("disconnect-cancel").click()
    expect(dialog).to_have_count(0)
    expect(health).to_have_text("Valid")
    disconnect(page, "anthropic")
    expect(card.get_by_test_id("connect-anthropic")).to_be_visible()
    listed = page.request.get("/api/providers").json()["providers"]
    assert next(p for p in listed if p["id"] == "anthropic")["health"] == "not_connected"

    page.locator("#sidebar").get_by_role("link", name="Overview").click()
    expect(page.get_by_test_id("onboarding")).to_contain_text("1 of 4 done")
    expect(page.get_by_test_id("overview-providers")).to_have_text("0")
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# 2. Device flow: approved, then denied
# ---------------------------------------------------------------------------------------------------


def test_github_device_flow_approved_then_denied(page, context, problems, stack, fast_github_device_flow):
    login = unique_login()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    sign_in_to_providers(page, login)

    card = page.get_by_test_id("provider-card-github")
    health = card.get_by_test_id("provider-health-github")
    expect(health).to_have_text("Not connected")
    flow = start_device_flow(page)

    panel = card.get_by_test_id("device-panel")
    expect(panel).to_be_visible()
    code = panel.get_by_test_id("device-user-code")
    expect(code).to_have_text(flow["user_code"])
    expect(panel.get_by_test_id("device-qr").locator("svg")).to_be_visible()
    expect(panel.get_by_test_id("device-countdown")).to_have_text(re.compile(r"^\d{2}:\d{2}$"))
    expect(panel.get_by_test_id("device-status")).to_have_attribute("data-status", "pending")
    opener = panel.get_by_role("link", name=re.compile(r"^Open "))
    expect(opener).to_have_attribute("href", flow["verification_uri"])
    expect(opener).to_have_attribute("target", "_blank")
    expect(opener).to_have_attribute("rel", re.compile(r"\bnoopener\b"))

    # The countdown counts down.
    first = panel.get_by_test_id("device-countdown").inner_text()
    expect(panel.get_by_test_id("device-countdown")).not_to_have_text(first, timeout=3_000)

    # Copy puts the code on the clipboard and says so.
    panel.get_by_test_id("device-copy").click()
    expect(panel.get_by_test_id("device-copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == flow["user_code"]
    shot(page, "device-desktop")

    page.set_viewport_size(PHONE)
    scroll_to_top_of(card)
    assert_no_horizontal_overflow(page)
    expect(panel.get_by_test_id("device-user-code")).to_be_in_viewport()
    shot(page, "device-phone")
    page.set_viewport_size(DESKTOP)
    scroll_to_top_of(card)

    # Approve with the code exactly as the page shows it: the workflow gets the token, the card turns Valid.
    decide_device_code(stack, code.inner_text().strip(), login, approve=True)
    expect(health).to_have_text("Valid", timeout=DEVICE_DECISION_MS)
    expect(card).to_contain_text(login)
    expect(card).to_contain_text("Device login")
    shot(page, "device-connected")
    expect(panel).to_have_count(0, timeout=10_000)  # the success state closes by itself
    listed = page.request.get("/api/providers").json()["providers"]
    github = next(p for p in listed if p["id"] == "github")
    assert github["health"] == "valid" and github["connection"]["account"] == login

    # Disconnect, then a second flow that is denied on GitHub.
    disconnect(page, "github")
    flow = start_device_flow(page)
    expect(panel.get_by_test_id("device-user-code")).to_have_text(flow["user_code"])
    decide_device_code(stack, flow["user_code"], login, approve=False)
    status = panel.get_by_test_id("device-status")
    expect(status).to_have_attribute("data-status", "denied", timeout=DEVICE_DECISION_MS)
    expect(status).to_have_text("Access denied")
    expect(panel).to_contain_text("Access was denied")
    retry = panel.get_by_role("button", name="Try again")
    expect(retry).to_be_visible()
    expect(panel.get_by_test_id("device-user-code")).to_have_count(0)
    expect(health).to_have_text("Not connected")
    shot(page, "device-denied")

    # Try again asks for a fresh code.
    with page.expect_response(is_connect("github")) as again:
        retry.click()
    assert again.value.status == 202
    fresh = again.value.json()
    assert fresh["user_code"] != flow["user_code"]
    expect(panel.get_by_test_id("device-user-code")).to_have_text(fresh["user_code"])
    with page.expect_response(lambda r: "/api/providers/flows/" in r.url and r.request.method == "DELETE"):
        panel.get_by_test_id("device-cancel").click()
    expect(panel).to_have_count(0)
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# 3. Cancel, and no polling once the user has left
# ---------------------------------------------------------------------------------------------------


def test_cancelling_a_device_flow_and_leaving_the_page(page, problems, stack, fast_github_device_flow):
    login = unique_login()
    sign_in_to_providers(page, login)
    card = page.get_by_test_id("provider-card-github")

    flow = start_device_flow(page)
    panel = card.get_by_test_id("device-panel")
    expect(panel.get_by_test_id("device-user-code")).to_have_text(flow["user_code"])
    # The page polls the flow while it waits.
    with page.expect_request(lambda r: r.url.endswith(f"/api/providers/flows/{flow['flow_id']}")
                             and r.method == "GET", timeout=10_000):
        pass
    with page.expect_response(lambda r: r.url.endswith(f"/api/providers/flows/{flow['flow_id']}")
                              and r.request.method == "DELETE") as cancelled:
        panel.get_by_test_id("device-cancel").click()
    assert cancelled.value.status == 204
    assert cancelled.value.request.headers.get("x-csrf-token")
    expect(card.get_by_test_id("device-panel")).to_have_count(0)
    expect(card.get_by_test_id("connect-github")).to_be_focused()
    answer = page.request.get(f"/api/providers/flows/{flow['flow_id']}")
    assert answer.status == 200
    assert answer.json()["status"] == "cancelled"
    expect(card.get_by_test_id("provider-health-github")).to_have_text("Not connected")

    # Leave the section while a flow is pending: the page stops polling.
    flow = start_device_flow(page)
    expect(card.get_by_test_id("device-user-code")).to_have_text(flow["user_code"])
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/api/providers/flows/" in r.url else None)
    page.locator("#sidebar").get_by_role("link", name="Overview").click()
    page.wait_for_url(re.compile(r"/dashboard$"))
    expect(page.get_by_test_id("onboarding")).to_be_visible()
    polls.clear()
    page.wait_for_timeout(3_500)  # more than three polling intervals
    assert polls == [], polls
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# 4. Health states and upstream errors (the list and the answers are stubbed in the page)
# ---------------------------------------------------------------------------------------------------


def _entry(pid, name, color, methods, health, connection=None):
    return {"id": pid, "display_name": name, "color": color, "description": f"{name} for your agents.",
            "methods": methods, "vault_allowed": True, "health": health, "connection": connection}


def test_health_states_reconnect_and_upstream_errors(page, problems, stack):
    import time

    now = int(time.time())
    providers = [
        _entry("anthropic", "Claude (Anthropic)", "#d97757", ["api_key", "workspace_login"], "refresh_failed",
               {"method": "api_key", "account": None, "connected_at": now - 86400 * 3,
                "last_refreshed_at": now - 7200, "expires_at": None,
                "failure_reason": "invalid_grant: the refresh token was revoked"}),
        _entry("openai", "Codex (OpenAI)", "#10a37f", ["api_key", "workspace_login"], "expiring",
               {"method": "api_key", "account": None, "connected_at": now - 3600, "last_refreshed_at": None,
                "expires_at": now + 600, "failure_reason": None}),
        _entry("google", "Gemini (Google)", "#4285f4", ["api_key", "workspace_login"], "revoked",
               {"method": "api_key", "account": None, "connected_at": now - 86400, "last_refreshed_at": None,
                "expires_at": None, "failure_reason": None}),
        _entry("github", "GitHub", "#24292f", ["device_flow"], "valid",
               {"method": "device_flow", "account": "octocat", "connected_at": now - 600,
                "last_refreshed_at": now - 300, "expires_at": now + 28000, "failure_reason": None}),
        _entry("sandbox-idp", "Sandbox OIDC", "#0ea5e9", ["device_flow"], "not_connected"),
    ]

    def list_route(route) -> None:
        if route.request.method == "GET":
            route.fulfill(status=200, content_type="application/json", body=json.dumps({"providers": providers}))
        else:
            route.continue_()

    def connect_route(route) -> None:
        route.fulfill(status=503, content_type="application/json",
                      body=json.dumps({"error": "upstream timed out", "code": "UPSTREAM_UNAVAILABLE"}))

    login = unique_login()
    page.route(re.compile(r".*/api/providers$"), list_route)
    page.route(re.compile(r".*/api/providers/anthropic/connect$"), connect_route)
    sign_in_to_providers(page, login)

    expect(page.get_by_test_id("provider-health-anthropic")).to_have_text("Refresh failed")
    expect(page.get_by_test_id("provider-card-anthropic")).to_contain_text("invalid_grant: the refresh token was revoked")
    expect(page.get_by_test_id("provider-health-openai")).to_have_text("Expiring soon")
    expect(page.get_by_test_id("provider-health-google")).to_have_text("Revoked")
    expect(page.get_by_test_id("provider-health-github")).to_have_text("Valid")
    expect(page.get_by_test_id("provider-card-github")).to_contain_text("octocat")
    expect(page.get_by_test_id("provider-card-github")).to_contain_text(re.compile(r"Last refreshed 5 minutes ago"))
    expect(page.get_by_test_id("provider-health-sandbox-idp")).to_have_text("Not connected")
    for provider in ("anthropic", "openai", "google"):
        expect(page.get_by_test_id(f"reconnect-{provider}")).to_be_visible()
    expect(page.get_by_test_id("reconnect-github")).to_have_count(0)
    expect(page.get_by_test_id("providers-summary")).to_contain_text("3 need attention")
    shot(page, "health-states", full_page=True)

    # Reconnect is one click straight into the same method (an API key here) ...
    page.get_by_test_id("reconnect-anthropic").click()
    card = page.get_by_test_id("provider-card-anthropic")
    key_input = card.get_by_test_id("api-key-input")
    expect(key_input).to_be_focused()
    key_input.fill(sandbox_anthropic_key())
    card.get_by_test_id("api-key-submit").click()
    # ... and an unreachable provider saves nothing and says so.
    expect(card.get_by_test_id("api-key-error")).to_have_text(
        "Couldn't reach Anthropic, nothing was saved — try again.")
    expect(key_input).to_have_value("")
    shot(page, "api-key-unreachable")

    page.set_viewport_size(PHONE)
    assert_no_horizontal_overflow(page)
    scroll_to_top_of(card)
    shot(page, "api-key-unreachable-phone")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "health-states-phone", full_page=True)

    # The Overview reads the same list: GitHub alone is not an AI provider, attention is flagged.
    page.set_viewport_size(DESKTOP)
    page.locator("#sidebar").get_by_role("link", name="Overview").click()
    onboarding = page.get_by_test_id("onboarding")
    expect(onboarding).to_contain_text("Connect an AI provider")
    expect(onboarding).to_contain_text("2 of 4 done")  # openai is expiring: still usable
    expect(page.get_by_test_id("overview-providers")).to_have_text("2")
    problems.assert_none()
