"""Log in on my machine (workspace_login) in a real headless Chromium against the local stack
(SPEC §2.1, C4; docs/design/daemon-messaging.md "Provider logins on the machine").

The machine is played with httpx exactly as `relay-cloud daemon` does it: linked through the real RFC 8628
endpoints with a real X25519 key, it reads its commands from POST /api/daemons/heartbeat and reports
through POST /api/daemons/commands/{id}/result; the code the user pastes reaches it sealed to that key.
Like the other browser tests: Debian chromium, the production Content-Security-Policy (an inline script
or style fails the test), no uncaught JS errors, screenshots in test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import json
import re
import time

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption

from relay_cloud.domain.sealing import login_code_aad, open_sealed
from tests.browser import support
from tests.browser.support import DESKTOP, assert_no_horizontal_overflow
from tests.browser.test_providers import sign_in_to_providers

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser

PHONE_375 = {"width": 375, "height": 812}
CLIENT_ID = "relay-cloud-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLAUDE_URL = "https://claude.ai/oauth/authorize?code=true&client_id=9d1c250a&state=xyz"


def shot(page, name: str, *, full_page: bool = False):
    return support.shot(page, f"workspace-login-{name}", full_page=full_page)


def unique_login() -> str:
    return support.unique_login("octo-wl")


# --- the machine, as relay-cloud link and relay-cloud daemon do it --------------------------------------


class Machine:
    """A linked daemon: its X25519 key pair, its daemon key, and the two calls a login needs."""

    def __init__(self, stack, page, name: str):
        self.name = name
        self.private_key = X25519PrivateKey.generate()
        public = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        grant = httpx.post(f"{stack.url}/api/daemons/link/device", data={
            "client_id": CLIENT_ID, "machine_id": f"m-{name}", "name": name,
            "public_key": base64.urlsafe_b64encode(public).rstrip(b"=").decode(),
        }, timeout=10)
        assert grant.status_code == 200, grant.text
        codes = grant.json()
        # The user approves in the browser session that runs the test.
        csrf = page.request.get("/api/auth/session").json()["csrf_token"]
        approved = page.request.post(f"/api/daemons/link/requests/{codes['user_code']}/approve",
                                     headers={"X-CSRF-Token": csrf}, data={"allowed_providers": []})
        assert approved.status == 200, approved.text()
        token = httpx.post(f"{stack.url}/api/daemons/link/token", data={
            "grant_type": DEVICE_GRANT, "device_code": codes["device_code"], "client_id": CLIENT_ID,
        }, timeout=10)
        assert token.status_code == 200, token.text
        self.daemon_id = token.json()["daemon_id"]
        self.http = httpx.Client(base_url=stack.url, timeout=10,
                                 headers={"Authorization": f"Bearer {token.json()['access_token']}"})

    def close(self) -> None:
        self.http.close()

    def heartbeat(self) -> dict:
        answer = self.http.post("/api/daemons/heartbeat", json={"agents": []})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def command(self, kind: str, login_id: str) -> dict:
        """The queued command of that type for that login (the machine picks it up on its next heartbeat)."""
        beat = self.heartbeat()
        found = [c for c in beat["commands"] if c["type"] == kind and c["args"].get("login_id") == login_id]
        assert found, beat
        assert beat["heartbeat_interval_s"] == 2, beat  # a login's prompts and codes move quickly
        return found[0]

    def report(self, command: dict, status: str, *, output: dict | None = None, error: dict | None = None) -> dict:
        body: dict = {"status": status}
        if output is not None:
            body["output"] = output
        if error is not None:
            body["error"] = error
        answer = self.http.post(f"/api/daemons/commands/{command['command_id']}/result", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def open_code(self, command: dict) -> str:
        raw = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        aad = login_code_aad(self.daemon_id, command["args"]["login_id"])
        return open_sealed(raw, command["args"]["sealed"], aad).decode()


@pytest.fixture
def machines(stack, page):
    made: list[Machine] = []

    def link(name: str) -> Machine:
        machine = Machine(stack, page, name)
        made.append(machine)
        return machine

    yield link
    for machine in made:
        machine.close()


def is_connect(r) -> bool:
    return r.url.endswith("/api/providers/anthropic/connect") and r.request.method == "POST"


def open_workspace_login(page):
    card = page.get_by_test_id("provider-card-anthropic")
    card.get_by_test_id("connect-anthropic").click()
    method = card.get_by_test_id("method-workspace_login")
    expect(method).to_contain_text("Log in on my machine")
    method.click()
    panel = card.get_by_test_id("workspace-login-panel")
    expect(panel).to_be_visible()
    return card, panel


def start_login(page, panel, machine: Machine) -> dict:
    with page.expect_response(is_connect) as started:
        panel.get_by_test_id("wl-connect").click()
    assert started.value.status == 202, started.value.text()
    assert started.value.request.headers.get("x-csrf-token")
    assert json.loads(started.value.request.post_data) == {"method": "workspace_login", "daemon_id": machine.daemon_id}
    view = started.value.json()
    assert view["status"] == "pending" and view["stage"] == "waiting_for_machine" and view["prompt"] is None
    expect(panel).to_have_attribute("data-login-id", view["login_id"])
    return view


def polls_of(page, login_id: str) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.method) if r.url.endswith(f"/api/providers/flows/{login_id}") else None)
    return seen


# ---------------------------------------------------------------------------------------------------
# 1. The whole relay: machine chosen, prompt shown, code pasted and sealed to the machine, connected
# ---------------------------------------------------------------------------------------------------


def test_the_login_prompt_and_the_code_are_relayed_through_the_machine(page, problems, stack, machines):
    sign_in_to_providers(page, unique_login())
    machine = machines("studio-mac")

    card, panel = open_workspace_login(page)
    # The only linked machine is listed with its presence, and already chosen.
    option = panel.get_by_test_id(f"wl-machine-{machine.daemon_id}")
    expect(option).to_contain_text("studio-mac")
    expect(option.locator("[data-presence]")).to_have_text(re.compile(r"^(Online|Stale|Offline)$"))
    expect(option.get_by_role("radio")).to_be_checked()
    expect(panel).to_contain_text("claude setup-token")
    shot(page, "choose-machine")

    view = start_login(page, panel, machine)
    login_id = view["login_id"]
    status = panel.get_by_test_id("wl-status")
    expect(status).to_have_attribute("data-stage", "waiting_for_machine")
    expect(panel.get_by_test_id("wl-wait")).to_contain_text("Asking studio-mac to start the login")
    expect(panel.get_by_test_id("wl-countdown")).to_have_text(re.compile(r"^1[45]:\d{2}$"))

    # The machine picks the command up and runs the CLI, which prints a URL and waits for a code.
    command = machine.command("provider_login", login_id)
    assert command["args"] == {"login_id": login_id, "provider": "anthropic"}
    machine.report(command, "running", output={"stage": "awaiting_user", "url": CLAUDE_URL, "needs_code": True})

    expect(status).to_have_attribute("data-stage", "awaiting_user")
    opener = panel.get_by_test_id("wl-open")
    expect(opener).to_have_attribute("href", CLAUDE_URL)
    expect(opener).to_have_attribute("target", "_blank")
    expect(opener).to_have_attribute("rel", "noopener noreferrer")
    expect(panel.get_by_test_id("wl-user-code")).to_have_count(0)
    code_input = panel.get_by_test_id("wl-code-input")
    expect(code_input).to_be_visible()
    expect(panel.get_by_test_id("wl-cancel")).to_be_visible()
    shot(page, "prompt-desktop")

    # A phone: everything fits in 375 px, nothing scrolls sideways.
    page.set_viewport_size(PHONE_375)
    code_input.scroll_into_view_if_needed()
    assert_no_horizontal_overflow(page)
    expect(panel.get_by_test_id("wl-code-submit")).to_be_visible()
    shot(page, "prompt-phone")

    # A half-typed code survives the page's polls (the view is only rebuilt when it changes).
    code = "a1B2c3D4#e5F6-g7H8_i9J0"
    code_input.fill(code[:6])
    with page.expect_response(lambda r: r.url.endswith(f"/api/providers/flows/{login_id}")):
        pass
    expect(code_input).to_have_value(code[:6])
    code_input.fill(code)
    with page.expect_response(lambda r: r.url.endswith(f"/api/providers/logins/{login_id}/code")) as sent:
        panel.get_by_test_id("wl-code-submit").click()
    assert sent.value.status == 202, sent.value.text()
    assert sent.value.request.headers.get("x-csrf-token")
    assert json.loads(sent.value.request.post_data) == {"code": code}
    assert code not in sent.value.text()
    expect(status).to_have_attribute("data-stage", "verifying")
    expect(panel.get_by_test_id("wl-code-input")).to_have_count(0)
    assert code not in page.content()
    assert page.evaluate("code => [...document.querySelectorAll('input')].some(i => i.value === code)", code) is False
    assert_no_horizontal_overflow(page)
    page.set_viewport_size(DESKTOP)

    # The code reaches the machine sealed to its key; the CLI finishes and the login is recorded.
    code_command = machine.command("provider_login_code", login_id)
    assert code not in json.dumps(code_command)
    assert machine.open_code(code_command) == code
    machine.report(code_command, "succeeded")
    machine.report(command, "succeeded", output={"account": "octo@example.com"})

    expect(status).to_have_attribute("data-status", "connected")
    expect(panel.get_by_test_id("wl-outcome")).to_contain_text("Claude is connected on studio-mac")
    health = card.get_by_test_id("provider-health-anthropic")
    expect(health).to_have_text("Valid")
    expect(card.get_by_test_id("provider-machine-anthropic")).to_have_text("On studio-mac")
    expect(card).to_contain_text("Token stays on your machine")
    expect(card).to_contain_text("octo@example.com")
    card.scroll_into_view_if_needed()
    shot(page, "connected")
    expect(panel).to_have_count(0, timeout=10_000)  # the success state closes by itself

    listed = page.request.get("/api/providers").json()["providers"]
    anthropic = next(p for p in listed if p["id"] == "anthropic")
    assert anthropic["connection"]["method"] == "workspace_login"
    assert anthropic["connection"]["daemon_id"] == machine.daemon_id

    # Polling stopped with the final status.
    polls = polls_of(page, login_id)
    page.wait_for_timeout(4_500)
    assert polls == [], polls

    page.set_viewport_size(PHONE_375)
    card.scroll_into_view_if_needed()
    assert_no_horizontal_overflow(page)
    shot(page, "connected-phone")
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# 2. No machine linked: say why, and link to the Machines page
# ---------------------------------------------------------------------------------------------------


def test_without_a_machine_the_panel_explains_and_links_to_machines(page, problems, stack):
    sign_in_to_providers(page, unique_login())
    page.set_viewport_size(PHONE_375)
    _, panel = open_workspace_login(page)
    hint = panel.get_by_test_id("wl-no-machine")
    expect(hint).to_contain_text("Link a machine first")
    expect(hint).to_contain_text("relay-cloud link")
    expect(panel.get_by_test_id("wl-connect")).to_have_count(0)
    assert_no_horizontal_overflow(page)
    shot(page, "no-machine-phone")
    link = hint.get_by_test_id("wl-link-machine")
    expect(link).to_have_attribute("href", "/dashboard/machines")
    link.click()
    page.wait_for_url(re.compile(r"/dashboard/machines$"))
    expect(page.get_by_test_id("machines-empty")).to_be_visible()
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# 3. The machine's errors, cancelling, and no polling once the panel is closed
# ---------------------------------------------------------------------------------------------------


def test_errors_cancel_and_close(page, problems, stack, machines):
    sign_in_to_providers(page, unique_login())
    laptop = machines("laptop")
    machines("build-box")

    card, panel = open_workspace_login(page)
    # Two machines: none chosen for the user, who must pick one.
    expect(panel.get_by_role("radio")).to_have_count(2)
    panel.get_by_test_id("wl-connect").click()
    expect(panel.get_by_test_id("wl-start-error")).to_have_text("Choose the machine to log in on.")
    panel.get_by_test_id(f"wl-machine-{laptop.daemon_id}").click()
    expect(panel.get_by_test_id("wl-start-error")).to_be_hidden()

    # The CLI is not installed on that machine: say which one, and how to install it.
    view = start_login(page, panel, laptop)
    command = laptop.command("provider_login", view["login_id"])
    laptop.report(command, "failed", error={"code": "CLI_NOT_INSTALLED", "message": "claude: command not found"})
    outcome = panel.get_by_test_id("wl-outcome")
    expect(outcome).to_have_attribute("data-code", "CLI_NOT_INSTALLED")
    expect(outcome).to_contain_text("Claude Code isn't installed on laptop")
    expect(panel.get_by_test_id("wl-install-command")).to_have_text("npm install -g @anthropic-ai/claude-code")
    expect(panel.get_by_test_id("wl-status")).to_have_attribute("data-status", "error")
    expect(panel.get_by_test_id("wl-retry")).to_be_focused()
    shot(page, "cli-not-installed")
    page.set_viewport_size(PHONE_375)
    assert_no_horizontal_overflow(page)
    shot(page, "cli-not-installed-phone")
    page.set_viewport_size(DESKTOP)

    # The CLI failed: its own words under ours.
    panel.get_by_test_id("wl-retry").click()
    panel.get_by_test_id(f"wl-machine-{laptop.daemon_id}").click()
    view = start_login(page, panel, laptop)
    command = laptop.command("provider_login", view["login_id"])
    laptop.report(command, "failed", error={"code": "LOGIN_FAILED", "message": "OAuth error: invalid code"})
    expect(outcome).to_have_attribute("data-code", "LOGIN_FAILED")
    expect(outcome).to_contain_text("The login didn't complete")
    expect(panel.get_by_test_id("wl-error-detail")).to_have_text("OAuth error: invalid code")

    # A machine that sends a plain-http address: the server refuses it, the page shows no link.
    panel.get_by_test_id("wl-retry").click()
    panel.get_by_test_id(f"wl-machine-{laptop.daemon_id}").click()
    view = start_login(page, panel, laptop)
    command = laptop.command("provider_login", view["login_id"])
    laptop.report(command, "running", output={"stage": "awaiting_user", "url": "http://claude.ai/oauth", "needs_code": True})
    expect(panel.get_by_test_id("wl-status")).to_have_attribute("data-status", "error")
    expect(panel.locator("a[href^='http:']")).to_have_count(0)
    expect(panel.get_by_test_id("wl-code-input")).to_have_count(0)

    # Cancel while the prompt is shown: DELETE, the machine is told to stop, the panel says so.
    panel.get_by_test_id("wl-retry").click()
    panel.get_by_test_id(f"wl-machine-{laptop.daemon_id}").click()
    view = start_login(page, panel, laptop)
    login_id = view["login_id"]
    command = laptop.command("provider_login", login_id)
    laptop.report(command, "running", output={"stage": "awaiting_user", "url": CLAUDE_URL,
                                              "user_code": "WDJB-MJHT", "needs_code": False})
    expect(panel.get_by_test_id("wl-user-code")).to_have_text("WDJB-MJHT")
    expect(panel.get_by_test_id("wl-code-input")).to_have_count(0)
    expect(panel.get_by_test_id("wl-copy")).to_be_visible()
    with page.expect_response(lambda r: r.url.endswith(f"/api/providers/flows/{login_id}")
                              and r.request.method == "DELETE") as cancelled:
        panel.get_by_test_id("wl-cancel").click()
    assert cancelled.value.status == 204, cancelled.value.text()
    assert cancelled.value.request.headers.get("x-csrf-token")
    expect(panel.get_by_test_id("wl-status")).to_have_attribute("data-status", "cancelled")
    expect(outcome).to_contain_text("Login cancelled")
    assert page.request.get(f"/api/providers/flows/{login_id}").json()["status"] == "cancelled"
    laptop.command("provider_login_cancel", login_id)

    # Closing the panel while a login waits cancels it, and the page stops polling.
    panel.get_by_test_id("wl-retry").click()
    panel.get_by_test_id(f"wl-machine-{laptop.daemon_id}").click()
    view = start_login(page, panel, laptop)
    login_id = view["login_id"]
    with page.expect_request(lambda r: r.url.endswith(f"/api/providers/flows/{login_id}") and r.method == "GET"):
        pass
    polls = polls_of(page, login_id)
    with page.expect_response(lambda r: r.url.endswith(f"/api/providers/flows/{login_id}")
                              and r.request.method == "DELETE"):
        panel.get_by_role("button", name=re.compile(r"^Close .* connection panel$")).click()
    expect(card.get_by_test_id("workspace-login-panel")).to_have_count(0)
    polls.clear()
    page.wait_for_timeout(4_500)  # more than two polling intervals
    assert polls == [], polls
    expect(card.get_by_test_id("provider-health-anthropic")).to_have_text("Not connected")
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# 4. Defence in depth: a prompt URL that is not https is never a link (answers stubbed in the page)
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://claude.ai.evil.example/login", "javascript:alert(document.domain)"])
def test_a_prompt_url_that_is_not_https_is_never_rendered_as_a_link(page, problems, stack, url):
    now = int(time.time())
    daemon = {"daemon_id": "dmn_0123456789abcdef0123456789abcdef", "name": "<b>laptop</b>", "machine_id": "m-1",
              "presence": "online", "last_seen_at": now, "linked_at": now - 60, "agents": [], "allowed_providers": []}
    view = {"flow_id": "login_" + "a" * 32, "login_id": "login_" + "a" * 32, "provider": "anthropic",
            "method": "workspace_login", "daemon_id": daemon["daemon_id"], "status": "pending",
            "stage": "awaiting_user", "prompt": {"url": url, "user_code": None, "needs_code": True},
            "expires_at": now + 900}

    def reply(body, status=200):
        return lambda route: route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r".*/api/daemons$"), reply({"daemons": [daemon]}))
    page.route(re.compile(r".*/api/providers/anthropic/connect$"), reply(view, 202))
    page.route(re.compile(r".*/api/providers/flows/login_a+$"), reply(view))
    sign_in_to_providers(page, unique_login())
    _, panel = open_workspace_login(page)
    expect(panel.get_by_test_id(f"wl-machine-{daemon['daemon_id']}")).to_contain_text("<b>laptop</b>")  # text, not markup
    panel.get_by_test_id("wl-connect").click()

    warning = panel.get_by_test_id("wl-unsafe-url")
    expect(warning).to_contain_text("isn't https")
    expect(warning).to_contain_text(url)
    expect(panel.get_by_test_id("wl-open")).to_have_count(0)
    expect(panel.locator("a")).to_have_count(0)
    expect(panel.locator("b", has_text="laptop")).to_have_count(0)
    page.set_viewport_size(PHONE_375)
    assert_no_horizontal_overflow(page)
    shot(page, "unsafe-url-phone")
    problems.assert_none()
