"""Linking machines and the Machines section in a real headless Chromium against the local stack
(SPEC C4, C13; docs/design/daemon-linking.md).

The CLI's half of the RFC 8628 flow (POST /api/daemons/link/device, polling /api/daemons/link/token) is
played with httpx exactly as `relay-cloud link` does it; the user's half — approving or denying the code —
happens in the page. Like test_dashboard.py: Debian chromium (never `playwright install`), the production
Content-Security-Policy on every page (an inline script or style is a violation and fails), no uncaught
JS errors, screenshots in test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import json
import os
import re

import httpx
import pytest

from tests.browser import support
from tests.browser.support import DESKTOP, PHONE, assert_no_horizontal_overflow, authorize_on_sandbox

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser


def shot(page, name: str, *, full_page: bool = False):
    return support.shot(page, f"machines-{name}", full_page=full_page)


def unique_login(prefix: str = "octo-mach") -> str:
    return support.unique_login(prefix)


CLIENT_ID = "relay-cloud-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
INVALID_MESSAGE = "This code is invalid or has expired — run relay-cloud link again"


# --- the CLI's half of the device flow, as `relay-cloud link` does it ----------------------------------


def public_key() -> str:
    """A raw 32-byte X25519 public key, base64url without padding (random bytes are enough here)."""
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def request_link(stack, *, machine_id: str = "m-1", name: str = "laptop") -> dict:
    answer = httpx.post(f"{stack.url}/api/daemons/link/device", data={
        "client_id": CLIENT_ID, "machine_id": machine_id, "name": name, "public_key": public_key(),
    }, timeout=10)
    assert answer.status_code == 200, answer.text
    grant = answer.json()
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", grant["user_code"]), grant
    assert grant["verification_uri"].endswith("/dashboard/link")
    assert grant["verification_uri_complete"].endswith(f"/dashboard/link?user_code={grant['user_code']}")
    return grant


def exchange(stack, device_code: str) -> httpx.Response:
    return httpx.post(f"{stack.url}/api/daemons/link/token", data={
        "grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": CLIENT_ID,
    }, timeout=10)


def agents_with_key(stack, access_token: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/api/daemons/agents",
                     headers={"Authorization": f"Bearer {access_token}"}, timeout=10)


def link_path(user_code: str) -> str:
    return f"/dashboard/link?user_code={user_code}"


# ---------------------------------------------------------------------------------------------------
# 1. Approve → the key works → the machine is listed → unlink revokes it; deny; invalid codes
# ---------------------------------------------------------------------------------------------------


def test_link_approve_list_unlink_deny_and_invalid_codes(page, problems, stack):
    login = unique_login()
    grant = request_link(stack)
    user_code = grant["user_code"]

    # The QR code's URL, signed out: the sign-in card says why, and sign-in comes back with the code.
    page.goto(link_path(user_code))
    card = page.get_by_test_id("signin-card")
    expect(card).to_contain_text("link your machine")
    expect(card).to_contain_text(user_code)
    page.set_viewport_size(PHONE)
    assert_no_horizontal_overflow(page)
    shot(page, "link-signin-phone")
    page.set_viewport_size(DESKTOP)
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard/link\?user_code=" + re.escape(user_code) + "$"))
    expect(page.get_by_test_id("user-login")).to_have_text(login)

    # "Link this machine?" with what the terminal sent, where from, until when, and who approves.
    request = page.get_by_test_id("link-request")
    expect(request).to_be_visible()
    expect(request.get_by_role("heading", level=1)).to_have_text("Link this machine?")
    expect(page.get_by_test_id("link-machine-name")).to_have_text("laptop")
    expect(page.get_by_test_id("link-machine-id")).to_have_text("m-1")
    expect(page.get_by_test_id("link-requesting-ip")).to_have_text(re.compile(r"\S"))
    expect(page.get_by_test_id("link-requesting-ip")).not_to_have_text("Unknown")
    expect(page.get_by_test_id("link-countdown")).to_have_text(re.compile(r"^(09|10):\d{2}$"))
    expect(page.get_by_test_id("link-account-login")).to_have_text(f"@{login}")
    expect(page.get_by_test_id("link-account-avatar")).to_be_visible()
    expect(request).to_contain_text("Only approve if you just ran relay-cloud link on this machine")
    first = page.get_by_test_id("link-countdown").inner_text()
    expect(page.get_by_test_id("link-countdown")).not_to_have_text(first, timeout=3_000)
    shot(page, "link-request-desktop")

    page.set_viewport_size(PHONE)
    expect(page.get_by_test_id("link-approve")).to_be_in_viewport()
    assert_no_horizontal_overflow(page)
    shot(page, "link-request-phone")
    page.set_viewport_size(DESKTOP)

    # Approve: POST …/approve with the CSRF token and the (empty) lease choice.
    with page.expect_response(lambda r: r.url.endswith(f"/api/daemons/link/requests/{user_code}/approve")) as approved:
        page.get_by_test_id("link-approve").click()
    assert approved.value.status == 200, approved.value.text()
    assert approved.value.request.headers.get("x-csrf-token")
    assert json.loads(approved.value.request.post_data) == {"allowed_providers": []}
    daemon_id = approved.value.json()["daemon_id"]
    result = page.get_by_test_id("link-result")
    expect(result).to_contain_text("Linked laptop. You can close this tab; the terminal will finish on its own.")
    expect(result).to_have_attribute("data-outcome", "approved")
    shot(page, "link-approved")

    # The CLI's next poll gets the daemon key, exactly once.
    token = exchange(stack, grant["device_code"])
    assert token.status_code == 200, token.text
    key = token.json()
    assert key["token_type"] == "Bearer" and key["daemon_id"] == daemon_id
    assert key["access_token"].startswith(f"rly_{daemon_id}_")
    assert agents_with_key(stack, key["access_token"]).status_code == 200

    # The Machines section lists it with the presence the server reports.
    result.get_by_role("link", name="View your machines").click()
    page.wait_for_url(re.compile(r"/dashboard/machines$"))
    listed = next(d for d in page.request.get("/api/daemons").json()["daemons"] if d["daemon_id"] == daemon_id)
    machine = page.get_by_test_id(f"machine-card-{daemon_id}")
    expect(page.get_by_test_id("machines-list")).to_be_visible()
    expect(machine).to_contain_text("laptop")
    expect(machine).to_contain_text("m-1")
    expect(machine).to_contain_text("No agents reported yet")
    expect(machine).to_contain_text(re.compile(r"Linked \w{3} \d{1,2}, \d{4}"))
    presence = page.get_by_test_id(f"machine-presence-{daemon_id}")
    assert listed["presence"] in ("online", "offline")
    expect(presence).to_have_attribute("data-presence", listed["presence"])
    expect(presence).to_have_text(listed["presence"].capitalize())
    expect(machine).to_contain_text("Never seen" if listed["last_seen_at"] is None else "Last seen")
    shot(page, "list-desktop")
    page.set_viewport_size(PHONE)
    assert_no_horizontal_overflow(page)
    shot(page, "list-phone")
    page.set_viewport_size(DESKTOP)

    # The Overview's last onboarding step is done once a machine is linked.
    page.locator("#sidebar").get_by_role("link", name="Overview").click()
    onboarding = page.get_by_test_id("onboarding")
    expect(onboarding).to_contain_text("2 of 4 done")
    expect(onboarding.locator("li.is-done")).to_contain_text(["Sign in with GitHub", "Start a workspace or link a machine"])
    page.locator("#sidebar").get_by_role("link", name="Machines").click()
    page.wait_for_url(re.compile(r"/dashboard/machines$"))

    # Unlink, confirmed in a dialog: cancel keeps it; confirm → DELETE → 204 → gone, and the key is dead.
    page.get_by_test_id(f"machine-unlink-{daemon_id}").click()
    dialog = page.get_by_test_id("unlink-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Unlink laptop?")
    shot(page, "unlink-dialog")
    dialog.get_by_test_id("unlink-cancel").click()
    expect(dialog).to_have_count(0)
    expect(machine).to_be_visible()
    page.get_by_test_id(f"machine-unlink-{daemon_id}").click()
    with page.expect_response(lambda r: r.url.endswith(f"/api/daemons/{daemon_id}")
                              and r.request.method == "DELETE") as deleted:
        page.get_by_test_id("unlink-dialog").get_by_test_id("unlink-confirm").click()
    assert deleted.value.status == 204
    assert deleted.value.request.headers.get("x-csrf-token")
    expect(machine).to_have_count(0)
    expect(page.get_by_test_id("machines-empty")).to_be_visible()
    expect(page.get_by_test_id("machines-empty")).to_contain_text("relay-cloud link")
    revoked = agents_with_key(stack, key["access_token"])
    assert revoked.status_code == 401, revoked.text
    shot(page, "empty-desktop")

    # A second request, denied from the page: "Denied" here, access_denied for the CLI.
    second = request_link(stack, machine_id="m-2", name="build-server")
    page.goto(link_path(second["user_code"].replace("-", "").lower()))  # any case, with or without the hyphen
    expect(page.get_by_test_id("link-machine-name")).to_have_text("build-server")
    with page.expect_response(lambda r: r.url.endswith("/deny")) as denied:
        page.get_by_test_id("link-deny").click()
    assert denied.value.status == 204
    assert denied.value.request.headers.get("x-csrf-token")
    result = page.get_by_test_id("link-result")
    expect(result.get_by_role("heading", level=1)).to_have_text("Denied")
    expect(result).to_have_attribute("data-outcome", "denied")
    shot(page, "link-denied")
    refused = exchange(stack, second["device_code"])
    assert refused.status_code == 400 and refused.json()["error"] == "access_denied", refused.text

    # A code the server doesn't know, from the URL and typed into the form (formatted as it is typed).
    page.goto(link_path("BCDF-GHJK"))
    expect(page.get_by_test_id("link-error")).to_have_text(INVALID_MESSAGE)
    expect(page.get_by_test_id("link-code-input")).to_have_value("BCDF-GHJK")
    page.goto("/dashboard/link")
    code_input = page.get_by_test_id("link-code-input")
    expect(code_input).to_be_focused()
    shot(page, "link-entry")
    code_input.press_sequentially("zxcv bnml")
    expect(code_input).to_have_value("ZXCV-BNML")
    with page.expect_response(lambda r: "/api/daemons/link/requests/ZXCV-BNML" in r.url) as missing:
        page.get_by_test_id("link-code-submit").click()
    assert missing.value.status == 404
    expect(page.get_by_test_id("link-error")).to_have_text(INVALID_MESSAGE)
    shot(page, "link-invalid")
    page.set_viewport_size(PHONE)
    assert_no_horizontal_overflow(page)
    shot(page, "link-invalid-phone")
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# 2. Decided elsewhere, rate limits, the code form on a phone (API answers stubbed in the page)
# ---------------------------------------------------------------------------------------------------


def test_decided_and_rate_limited_answers(page, problems, stack):
    login = unique_login()
    page.goto("/dashboard/link")
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard/link$"))

    grant = request_link(stack, machine_id="m-3", name="decided-elsewhere")
    page.goto(link_path(grant["user_code"]))
    expect(page.get_by_test_id("link-machine-name")).to_have_text("decided-elsewhere")
    # Another tab approves it first: this tab's approval meets 409 LINK_REQUEST_DECIDED.
    csrf = page.request.get("/api/auth/session").json()["csrf_token"]
    first = page.request.post(f"/api/daemons/link/requests/{grant['user_code']}/approve",
                              headers={"X-CSRF-Token": csrf}, data={"allowed_providers": []})
    assert first.status == 200, first.text()
    page.get_by_test_id("link-approve").click()
    expect(page.get_by_test_id("link-error")).to_have_text("Already decided")
    expect(page.get_by_test_id("link-approve")).to_have_count(0)

    # Too many failed lookups: 429 says to wait.
    page.route(re.compile(r".*/api/daemons/link/requests/[A-Z-]+$"), lambda route: route.fulfill(
        status=429, content_type="application/json",
        body=json.dumps({"error": "slow down", "code": "RATE_LIMITED"})))
    page.set_viewport_size(PHONE)
    page.goto("/dashboard/link")
    page.get_by_test_id("link-code-input").fill("wdjbmjht")
    expect(page.get_by_test_id("link-code-input")).to_have_value("WDJB-MJHT")
    page.get_by_test_id("link-code-input").press("Enter")
    expect(page.get_by_test_id("link-error")).to_have_text("Too many attempts, wait a few minutes")
    assert_no_horizontal_overflow(page)
    shot(page, "link-rate-limited-phone")
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# 3. Live refresh every 15 s while the section is visible, none once hidden or left
# ---------------------------------------------------------------------------------------------------


def test_machines_refresh_only_while_visible(page, problems, stack):
    login = unique_login()
    page.clock.install()
    page.goto("/dashboard/machines")
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard/machines$"))
    expect(page.get_by_test_id("machines-empty")).to_be_visible()

    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if r.url.endswith("/api/daemons") else None)
    page.clock.run_for(15_500)
    page.wait_for_timeout(500)
    assert len(calls) == 1, calls

    # Hidden tab: no polling; visible again: one fetch straight away, then every 15 s.
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    calls.clear()
    page.clock.run_for(46_000)
    page.wait_for_timeout(300)
    assert calls == [], calls
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_timeout(300)
    assert len(calls) == 1, calls

    # Leaving the section stops it.
    page.locator("#sidebar").get_by_role("link", name="Providers").click()
    page.wait_for_url(re.compile(r"/dashboard/providers$"))
    page.wait_for_timeout(300)
    calls.clear()
    page.clock.run_for(46_000)
    page.wait_for_timeout(300)
    assert calls == [], calls
    problems.assert_none()
