"""The Workspaces section in a real headless Chromium (SPEC C6, C8; docs/design/workspaces.md).

Two kinds of tests:
- against the REAL local stack (the `workspaces` routes, the provisioning workflow run by moto against the
  Fly sandbox): create a workspace and watch it reach running, stop/start it, the Free plan's 402 on a
  second one, a Team plan's domain claim with its DNS records, delete it with the typed-name
  confirmation — and the sandbox inventory is empty afterwards;
- with the workspace API answered by the page itself (Playwright's route()): fast, deterministic
  coverage of every status badge, the progress timeline, the error display, the plan-limit and
  feature-gate 402s, the domain's records/checks, and the 375 px layout.

Like the other browser tests: Debian chromium, the production Content-Security-Policy on every page,
no uncaught JS errors, screenshots in test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.browser import support
from tests.browser.support import assert_no_horizontal_overflow, authorize_on_sandbox

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser

NARROW = {"width": 375, "height": 812}
WORKSPACES = "/dashboard/workspaces"
STATUSES = ("provisioning", "running", "stopping", "stopped", "starting", "restarting", "error", "deleting")


def shot(page, name: str, *, full_page: bool = False):
    return support.shot(page, f"workspaces-{name}", full_page=full_page)


def sign_in_at(page, path: str, prefix: str = "octo-ws") -> str:
    login = support.unique_login(prefix)
    page.goto(path)
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(re.escape(path) + "$"))
    expect(page.get_by_test_id("user-login")).to_have_text(login)
    return login


def at_narrow_width(page, name: str) -> None:
    size = page.viewport_size
    page.set_viewport_size(NARROW)
    page.wait_for_timeout(100)
    assert_no_horizontal_overflow(page)
    shot(page, f"{name}-375", full_page=True)
    page.set_viewport_size(size)


# ---------------------------------------------------------------------------------------------------
# The stubbed API: a tiny in-test server behind page.route()
# ---------------------------------------------------------------------------------------------------


def workspace(ws_id: str, status: str, **extra) -> dict:
    now = int(time.time())
    return {
        "id": ws_id, "name": extra.pop("name", f"ws-{status}"), "status": status, "compute": "fly", "region": "iad",
        "size": "small", "repo_ids": [], "providers": [], "host": f"{ws_id.replace('_', '-')}.fly.dev",
        "error": None, "created_at": now - 3600, "updated_at": now, "running_since": None, "compute_seconds": 0,
        "domain": None, **extra,
    }


def event(step: str, state: str, message: str = "", at: float | None = None) -> dict:
    return {"step": step, "state": state, "message": message, "at": int((at or time.time()) * 1000)}


class StubApi:
    """Answers /api/workspaces… (and, when given, /api/repos and /api/providers) from Python state."""

    def __init__(self, page, *, workspaces=(), usage=None, repos=None, providers=None):
        self.workspaces = {w["id"]: w for w in workspaces}
        self.usage = usage or {"used": len(self.workspaces), "limit": 3, "plan": "pro"}
        self.events: dict[str, list[dict]] = {}
        self.repos = repos
        self.providers = providers
        self.requests: list[tuple[str, str, dict | None]] = []
        self.answers: dict[tuple[str, str], tuple[int, dict | None]] = {}  # (method, path) → a fixed answer
        self.on_get: dict[str, callable] = {}  # workspace id → called before each GET (moves the story on)
        page.route(re.compile(r".*/api/workspaces(/.*)?(\?.*)?$"), self.handle)
        if repos is not None:
            page.route(re.compile(r".*/api/repos$"), lambda route: self.json(route, 200, {
                "repositories": repos, "usage": {"used": len(repos), "limit": 3, "plan": "free"}}))
        if providers is not None:
            page.route(re.compile(r".*/api/providers$"), lambda route: self.json(route, 200, {"providers": providers}))

    @staticmethod
    def json(route, status: int, body) -> None:
        if body is None:
            route.fulfill(status=status, body="")
        else:
            route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

    def handle(self, route) -> None:
        request = route.request
        url = urlsplit(request.url)
        body = json.loads(request.post_data) if request.post_data else None
        self.requests.append((request.method, url.path, body))
        fixed = self.answers.get((request.method, url.path))
        if fixed:
            return self.json(route, *fixed)
        parts = url.path.split("/")[3:]  # ["", "api", "workspaces", ...]
        if not parts:
            if request.method == "GET":
                return self.json(route, 200, {"workspaces": list(self.workspaces.values()), "usage": self.usage})
            ws = workspace("ws_" + "c" * 20, "provisioning", name=body["name"], repo_ids=body.get("repo_ids", []),
                           providers=body.get("providers", []), size=body.get("size", "small"))
            self.workspaces[ws["id"]] = ws
            return self.json(route, 202, ws)
        ws = self.workspaces.get(parts[0])
        if ws is None:
            return self.json(route, 404, {"error": "Workspace not found", "code": "WORKSPACE_NOT_FOUND"})
        rest = parts[1:]
        if not rest and request.method == "GET":
            if parts[0] in self.on_get:
                self.on_get[parts[0]](ws)
            return self.json(route, 200, ws)
        if rest == ["events"]:
            after = parse_qs(url.query).get("after", [None])[0]
            events = self.events.get(ws["id"], [])
            start = int(after) if after else 0
            return self.json(route, 200, {"events": events[start:], "cursor": str(len(events)) if events else after})
        if rest and rest[0] in ("start", "stop", "restart"):
            allowed = {"start": "stopped", "stop": "running", "restart": "running"}[rest[0]]
            if ws["status"] != allowed:
                return self.json(route, 409, {"error": "Not now", "code": "WORKSPACE_STATE", "status": ws["status"]})
            ws["status"] = {"start": "starting", "stop": "stopping", "restart": "restarting"}[rest[0]]
            return self.json(route, 202, ws)
        if not rest and request.method == "DELETE":
            ws["status"] = "deleting"
            return self.json(route, 202, ws)
        return self.json(route, 500, {"error": "unexpected in the stub", "code": "STUB"})


# ---------------------------------------------------------------------------------------------------
# Stubbed 1. The list: every status badge, usage, the create dialog's choices, 402 on create, 375 px
# ---------------------------------------------------------------------------------------------------


def test_list_badges_usage_create_dialog_and_plan_limit(page, problems, stack):
    sign_in_at(page, "/dashboard")
    many = [workspace(f"ws_{i:020d}", status) for i, status in enumerate(STATUSES)]
    many[6]["error"] = {"code": "START_TIMEOUT", "message": "The machine did not start in time", "step": "wait"}
    repos = [
        {"id": "repo_" + "a" * 24, "full_name": "octo/api", "attached_workspace_id": None},
        {"id": "repo_" + "b" * 24, "full_name": "octo/web", "attached_workspace_id": "ws_other"},
    ]
    providers = [
        {"id": "anthropic", "display_name": "Claude", "health": "valid"},
        {"id": "openai", "display_name": "Codex", "health": "revoked"},
        {"id": "google", "display_name": "Gemini", "health": "expiring"},
    ]
    api = StubApi(page, workspaces=many, usage={"used": 8, "limit": 10, "plan": "team"}, repos=repos, providers=providers)
    page.locator("#sidebar").get_by_role("link", name="Workspaces").click()
    page.wait_for_url(re.compile(r"/dashboard/workspaces$"))
    expect(page.get_by_test_id("workspaces-list")).to_be_visible()
    expect(page.get_by_test_id("workspaces-usage")).to_have_text("8 of 10 workspaces · Team")
    for ws in many:
        badge = page.get_by_test_id(f"workspace-status-{ws['id']}")
        expect(badge).to_have_attribute("data-status", ws["status"])
        expect(badge).to_have_text(ws["status"].capitalize())
    expect(page.get_by_test_id(f"workspace-card-error-{many[6]['id']}")).to_contain_text(
        "The machine did not start in time (step: wait)")
    expect(page.get_by_test_id("workspaces-plan-limit")).to_have_count(0)
    shot(page, "list-desktop", full_page=True)
    at_narrow_width(page, "list")

    # The create dialog: repos (one attached elsewhere, so not selectable), usable providers only, sizes.
    page.get_by_test_id("workspace-new").click()
    dialog = page.get_by_test_id("workspace-create-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("workspace-name-input")).to_be_focused()
    expect(page.get_by_test_id(f"workspace-repo-{repos[0]['id']}")).to_be_enabled()
    expect(page.get_by_test_id(f"workspace-repo-{repos[1]['id']}")).to_be_disabled()
    expect(dialog).to_contain_text("In another workspace")
    expect(page.get_by_test_id("workspace-provider-anthropic")).to_be_visible()
    expect(page.get_by_test_id("workspace-provider-google")).to_be_visible()
    expect(page.get_by_test_id("workspace-provider-openai")).to_have_count(0)
    assert page.get_by_test_id("workspace-size").locator("option").evaluate_all("o => o.map(x => x.value)") == [
        "small", "medium", "large"]
    # A name is required, checked before anything is sent.
    page.get_by_test_id("workspace-create-submit").click()
    expect(page.get_by_test_id("workspace-create-error")).to_contain_text("Give the workspace a name")
    assert not [r for r in api.requests if r[0] == "POST"]
    at_narrow_width(page, "create-dialog")

    # Over the plan's limit: 402 PLAN_LIMIT_EXCEEDED shows the limit and the upgrade link; the dialog stays.
    api.answers[("POST", "/api/workspaces")] = (402, {
        "error": "Plan limit reached", "code": "PLAN_LIMIT_EXCEEDED", "resource": "workspaces", "limit": 10,
        "used": 10, "plan": "team", "upgrade_url": f"{stack.url}/pricing"})
    page.get_by_test_id("workspace-name-input").fill("backend-agents")
    page.get_by_test_id(f"workspace-repo-{repos[0]['id']}").check()
    page.get_by_test_id("workspace-provider-anthropic").check()
    page.get_by_test_id("workspace-size").select_option("medium")
    with page.expect_response(lambda r: r.url.endswith("/api/workspaces") and r.request.method == "POST") as sent:
        page.get_by_test_id("workspace-create-submit").click()
    assert sent.value.status == 402
    assert sent.value.request.headers.get("x-csrf-token")
    assert json.loads(sent.value.request.post_data) == {
        "name": "backend-agents", "repo_ids": [repos[0]["id"]], "providers": ["anthropic"], "size": "medium"}
    limit = page.get_by_test_id("workspace-plan-limit")
    expect(limit).to_contain_text("Your Team plan includes 10 workspaces and 10 are in use.")
    expect(page.get_by_test_id("workspace-plan-limit-link")).to_have_attribute("href", "/pricing")
    expect(dialog).to_be_visible()
    shot(page, "create-plan-limit")
    at_narrow_width(page, "create-plan-limit")

    # Accepted: 202 → the dialog closes and the new workspace's page opens.
    del api.answers[("POST", "/api/workspaces")]
    page.get_by_test_id("workspace-create-submit").click()
    expect(dialog).to_have_count(0)
    page.wait_for_url(re.compile(r"/dashboard/workspaces/ws_c{20}$"))
    expect(page.get_by_test_id("workspace-title")).to_have_text("backend-agents")
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "provisioning")
    problems.assert_none()


def test_empty_list_and_dialog_without_repos_or_providers(page, problems, stack):
    sign_in_at(page, WORKSPACES)
    StubApi(page, usage={"used": 1, "limit": 1, "plan": "free"}, repos=[], providers=[])
    page.reload()
    expect(page.get_by_test_id("workspaces-empty")).to_be_visible()
    expect(page.get_by_test_id("workspaces-usage")).to_have_text("1 of 1 workspace · Free")
    # At the limit already: said up front, with the upgrade link.
    expect(page.get_by_test_id("workspaces-plan-limit")).to_contain_text("Your Free plan includes 1 workspace")
    expect(page.get_by_test_id("workspaces-plan-limit-link")).to_have_attribute("href", "/pricing")
    page.get_by_test_id("workspace-new").click()
    expect(page.get_by_test_id("workspace-repos-empty")).to_contain_text("You haven't added any repositories yet.")
    expect(page.get_by_test_id("workspace-providers-empty")).to_contain_text("No provider is connected yet.")
    at_narrow_width(page, "create-empty")
    # The link goes to the Repositories page (client-side) and the dialog closes on the way.
    page.get_by_test_id("workspace-repos-link").click()
    page.wait_for_url(re.compile(r"/dashboard/repositories$"))
    expect(page.get_by_test_id("workspace-create-dialog")).to_have_count(0)
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# Stubbed 2. Live progress: polled every 2 s while provisioning, stops on error; buttons per status
# ---------------------------------------------------------------------------------------------------


def test_progress_timeline_error_with_step_and_buttons_per_status(page, problems, stack):
    sign_in_at(page, "/dashboard")
    ws = workspace("ws_" + "d" * 20, "provisioning", name="data-crunch", repo_ids=["repo_x"], providers=["anthropic"])
    api = StubApi(page, workspaces=[ws])
    t0 = time.time() - 30
    story = [
        [event("app", "started", at=t0), event("app", "succeeded", "app created", at=t0 + 1)],
        [event("ips", "started", at=t0 + 2), event("ips", "succeeded", at=t0 + 3), event("volume", "started", at=t0 + 4)],
        [event("volume", "succeeded", at=t0 + 5), event("secrets", "started", at=t0 + 6), event("secrets", "succeeded", at=t0 + 7),
         event("machine", "started", at=t0 + 8), event("machine", "failed", "Fly rejected the machine: out of capacity", at=t0 + 9),
         event("machine", "compensating", at=t0 + 10), event("machine", "compensated", at=t0 + 11)],
    ]
    api.events[ws["id"]] = list(story[0])
    gets = []

    def advance(w):
        gets.append(time.time())
        if len(gets) == 2:
            api.events[w["id"]] += story[1]
        if len(gets) == 3:
            api.events[w["id"]] += story[2]
            w.update(status="error", error={"code": "PROVIDER_REJECTED", "message": "Fly rejected the machine: out of capacity",
                                            "step": "machine"})

    api.on_get[ws["id"]] = advance
    page.goto(f"{WORKSPACES}/{ws['id']}")
    expect(page.get_by_test_id("workspace-title")).to_have_text("data-crunch")
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "provisioning")
    steps = page.get_by_test_id("workspace-events")
    # All eight steps are listed from the start, pending until they happen.
    expect(steps.locator("[data-step]")).to_have_count(8)
    expect(page.get_by_test_id("workspace-step-app")).to_have_attribute("data-state", "succeeded")
    expect(page.get_by_test_id("workspace-step-app")).to_contain_text("app created")
    expect(page.get_by_test_id("workspace-step-finish")).to_have_attribute("data-state", "pending")
    for action in ("start", "stop", "restart"):
        expect(page.get_by_test_id(f"workspace-{action}")).to_be_disabled()
    expect(page.get_by_test_id("workspace-delete")).to_be_enabled()
    shot(page, "progress")

    expect(page.get_by_test_id("workspace-step-volume")).to_have_attribute("data-state", "started", timeout=6_000)
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "error", timeout=6_000)
    expect(page.get_by_test_id("workspace-step-machine")).to_have_attribute("data-state", "compensated")
    error = page.get_by_test_id("workspace-error")
    expect(error).to_contain_text("Failed at “Create the machine”")
    expect(page.get_by_test_id("workspace-error-message")).to_have_text("Fly rejected the machine: out of capacity")
    expect(page.get_by_test_id("workspace-error-step")).to_have_text("machine")
    expect(page.get_by_test_id("workspace-error-code")).to_have_text("PROVIDER_REJECTED")
    shot(page, "error", full_page=True)
    at_narrow_width(page, "error")

    # A final status: no more polling. Gaps between GETs were the 2 s poll.
    count = len(gets)
    assert count == 3 and all(1.5 <= b - a <= 3.5 for a, b in zip(gets, gets[1:])), gets
    page.wait_for_timeout(2_600)
    assert len(gets) == count

    # Buttons per status, and the 409 WORKSPACE_STATE display.
    ws.update(status="running", error=None, running_since=int(time.time()) - 120, compute_seconds=600)
    page.reload()
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "running")
    expect(page.get_by_test_id("workspace-start")).to_be_disabled()
    expect(page.get_by_test_id("workspace-stop")).to_be_enabled()
    expect(page.get_by_test_id("workspace-restart")).to_be_enabled()
    expect(page.get_by_test_id("workspace-compute")).to_have_text("12 min")
    api.answers[("POST", f"/api/workspaces/{ws['id']}/restart")] = (409, {
        "error": "not now", "code": "WORKSPACE_STATE", "status": "stopping"})
    page.get_by_test_id("workspace-restart").click()
    expect(page.get_by_test_id("workspace-action-error")).to_have_text("It can't restart right now: it is stopping.")
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# Stubbed 3. Domains: the Team gate, records with copy buttons, checks, statuses, remove
# ---------------------------------------------------------------------------------------------------


def test_domain_gate_records_checks_and_remove(page, context, problems, stack):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    sign_in_at(page, "/dashboard")
    ws = workspace("ws_" + "e" * 20, "running", name="site")
    api = StubApi(page, workspaces=[ws])
    domain_path = f"/api/workspaces/{ws['id']}/domain"
    api.answers[("POST", domain_path)] = (402, {
        "error": "Custom domains need the Team plan", "code": "FEATURE_NOT_AVAILABLE", "feature": "custom_domains",
        "required_plan": "team", "plan": "pro", "upgrade_url": f"{stack.url}/pricing"})
    page.goto(f"{WORKSPACES}/{ws['id']}")
    page.get_by_test_id("domain-input").fill("agents.acme.dev")
    page.get_by_test_id("domain-claim").click()
    upgrade = page.get_by_test_id("domain-upgrade")
    expect(upgrade).to_contain_text("Custom domains come with the Team plan (you're on Pro).")
    expect(page.get_by_test_id("domain-upgrade-link")).to_have_attribute("href", "/pricing")
    at_narrow_width(page, "domain-upgrade")

    # A bad domain: the server's 400 message next to the field.
    api.answers[("POST", domain_path)] = (400, {"error": "That isn't a domain name you can use", "code": "INVALID_DOMAIN"})
    page.get_by_test_id("domain-claim").click()
    expect(page.get_by_test_id("domain-error")).to_have_text("That isn't a domain name you can use")
    expect(page.get_by_test_id("domain-upgrade")).to_have_count(0)

    token = "rly-" + "7" * 40
    records = [{"type": "TXT", "name": "_relay-challenge.agents.acme.dev", "value": token},
               {"type": "CNAME", "name": "agents.acme.dev", "value": ws["host"]}]
    claimed = {"domain": "agents.acme.dev", "status": "pending", "records": records, "expires_at": int(time.time()) + 48 * 3600}
    api.answers[("POST", domain_path)] = (201, claimed)
    with page.expect_response(lambda r: r.url.endswith(domain_path)) as sent:
        page.get_by_test_id("domain-claim").click()
    assert json.loads(sent.value.request.post_data) == {"domain": "agents.acme.dev"}
    expect(page.get_by_test_id("domain-status")).to_have_attribute("data-status", "pending")
    expect(page.get_by_test_id("domain-checks")).to_have_count(0)  # nothing checked yet
    expect(page.get_by_test_id("domain-record-txt-name")).to_have_text("_relay-challenge.agents.acme.dev")
    expect(page.get_by_test_id("domain-record-txt-value")).to_have_text(token)
    expect(page.get_by_test_id("domain-record-cname-name")).to_have_text("agents.acme.dev")
    expect(page.get_by_test_id("domain-record-cname-value")).to_have_text(ws["host"])
    page.get_by_test_id("domain-copy-txt-value").click()
    expect(page.get_by_test_id("domain-copy-txt-value")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    page.get_by_test_id("domain-copy-cname-value").click()
    assert page.evaluate("navigator.clipboard.readText()") == ws["host"]
    shot(page, "domain-records", full_page=True)
    at_narrow_width(page, "domain-records")

    # Verify: TXT found, CNAME not yet → still pending, with the checks shown.
    api.answers[("POST", domain_path + "/verify")] = (200, {
        **claimed, "checks": {"txt": True, "cname": False}, "checked_at": int(time.time()),
        "reasons": ["agents.acme.dev has no CNAME record"]})
    page.get_by_test_id("domain-verify").click()
    expect(page.get_by_test_id("domain-check-txt")).to_have_attribute("data-ok", "true")
    expect(page.get_by_test_id("domain-check-cname")).to_have_attribute("data-ok", "false")
    expect(page.get_by_test_id("domain-check-cname")).to_contain_text("CNAME to this workspace: not found yet")
    expect(page.get_by_test_id("domain-reasons")).to_have_text("agents.acme.dev has no CNAME record")
    expect(page.get_by_test_id("domain-card")).not_to_contain_text("null")
    api.answers[("POST", domain_path + "/verify")] = (200, {
        **claimed, "status": "active", "checks": {"txt": True, "cname": True}, "checked_at": int(time.time())})
    page.get_by_test_id("domain-verify").click()
    expect(page.get_by_test_id("domain-status")).to_have_attribute("data-status", "active")
    expect(page.get_by_test_id("domain-status")).to_have_text("Active")
    expect(page.get_by_test_id("domain-check-cname")).to_have_attribute("data-ok", "true")
    shot(page, "domain-active")

    # Remove, confirmed.
    api.answers[("DELETE", domain_path)] = (204, None)
    page.get_by_test_id("domain-remove").click()
    expect(page.get_by_test_id("domain-remove-dialog")).to_contain_text("Remove agents.acme.dev?")
    page.get_by_test_id("domain-remove-confirm").click()
    expect(page.get_by_test_id("domain-input")).to_be_visible()
    assert ("DELETE", domain_path, None) in api.requests

    # A workspace whose map already holds a claim (page reload): the records are shown from it.
    ws["domain"] = {"domain": "x.acme.org", "status": "issuing", "records": [
        {"type": "TXT", "name": "_relay-challenge.x.acme.org", "value": "tok"},
        {"type": "CNAME", "name": "x.acme.org", "value": ws["host"]}]}
    page.reload()
    expect(page.get_by_test_id("domain-status")).to_have_text("Issuing certificate")
    expect(page.get_by_test_id("domain-record-txt-name")).to_have_text("_relay-challenge.x.acme.org")
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# Stubbed 4. Delete needs the exact name; an unknown workspace says so
# ---------------------------------------------------------------------------------------------------


def test_delete_needs_the_typed_name_and_unknown_workspace(page, problems, stack):
    sign_in_at(page, "/dashboard")
    ws = workspace("ws_" + "f" * 20, "stopped", name="old-box")
    api = StubApi(page, workspaces=[ws])
    page.goto(f"{WORKSPACES}/{ws['id']}")
    expect(page.get_by_test_id("workspace-start")).to_be_enabled()
    expect(page.get_by_test_id("workspace-stop")).to_be_disabled()
    page.get_by_test_id("workspace-delete").click()
    dialog = page.get_by_test_id("workspace-delete-dialog")
    expect(dialog).to_contain_text("Delete old-box?")
    confirm = page.get_by_test_id("workspace-delete-confirm")
    expect(confirm).to_be_disabled()
    page.get_by_test_id("workspace-delete-name").fill("old-bo")
    expect(confirm).to_be_disabled()
    at_narrow_width(page, "delete-dialog")
    page.get_by_test_id("workspace-delete-cancel").click()
    expect(dialog).to_have_count(0)
    assert not [r for r in api.requests if r[0] == "DELETE"]

    page.get_by_test_id("workspace-delete").click()
    page.get_by_test_id("workspace-delete-name").fill("old-box")
    expect(confirm).to_be_enabled()
    page.get_by_test_id("workspace-delete-confirm").click()
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "deleting")
    # Once the teardown is done (404), the list opens.
    api.workspaces.pop(ws["id"])
    page.wait_for_url(re.compile(r"/dashboard/workspaces$"), timeout=6_000)
    expect(page.get_by_test_id("workspaces-empty")).to_be_visible()

    page.goto(f"{WORKSPACES}/ws_{'0' * 20}")
    expect(page.get_by_test_id("workspace-not-found")).to_be_visible()
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# Polling pauses while the tab is hidden
# ---------------------------------------------------------------------------------------------------


def test_progress_polling_pauses_while_hidden(page, problems, stack):
    sign_in_at(page, "/dashboard")
    ws = workspace("ws_" + "9" * 20, "starting", name="sleepy")
    api = StubApi(page, workspaces=[ws])
    page.clock.install()
    page.goto(f"{WORKSPACES}/{ws['id']}")
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "starting")
    gets = lambda: [r for r in api.requests if r[0] == "GET" and r[1] == f"/api/workspaces/{ws['id']}"]  # noqa: E731
    # The next poll is scheduled once the previous answer is in: step the clock poll by poll.
    for _ in range(2):
        page.clock.run_for(2_100)
        page.wait_for_timeout(300)
    assert len(gets()) == 3
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_timeout(200)
    before = len(gets())
    page.clock.run_for(10_000)
    page.wait_for_timeout(300)
    assert len(gets()) == before
    ws["status"] = "running"
    page.evaluate("""() => {
        Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "running")
    after = len(gets())
    page.clock.run_for(10_000)
    page.wait_for_timeout(300)
    assert len(gets()) == after  # running is final: no more polls
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# REAL stack: create → running, the Free plan's 402, stop/start, a Team plan's domain, delete
# ---------------------------------------------------------------------------------------------------


def fly(stack, path: str, **kwargs) -> httpx.Response:
    return httpx.request(kwargs.pop("method", "GET"), f"{stack.url}/_sandbox/fly{path}", timeout=10, **kwargs)


def inventory_of(stack, app: str) -> dict:
    everything = fly(stack, "/_inventory").json()
    return {kind: [item for item in everything[kind] if item.get("app", item.get("name")) == app]
            for kind in ("apps", "machines", "volumes", "ips", "certificates", "secrets")}


def set_plan(stack, login: str, plan: str) -> None:
    """The operator command, pointed at the stack's table the way `relay-cloud dev` prints it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "AWS_"))}
    env |= {"AWS_ENDPOINT_URL": stack.moto_url, "RELAY_TABLE_NAME": stack.env["RELAY_TABLE_NAME"]}
    done = subprocess.run([sys.executable, "-m", "relay_cloud.cli.main", "admin", "set-plan", login, plan,
                           "--reason", "browser test"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def csrf_headers(page) -> dict:
    return {"X-CSRF-Token": page.request.get("/api/auth/session").json()["csrf_token"]}


@pytest.fixture
def quick_fly(stack):
    """Fly sandbox timings shortened for this test, put back afterwards (the stack is shared)."""
    before = fly(stack, "/_config").json()
    assert fly(stack, "/_config", method="POST", json={"launch_ms": 100, "boot_ms": 300, "stop_ms": 200,
                                                       "certificate_ms": 300}).status_code < 300
    yield
    fly(stack, "/_config", method="POST", json=before)


def test_real_stack_create_running_limit_stop_start_domain_delete(page, context, problems, stack, quick_fly):
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
    login = sign_in_at(page, WORKSPACES, prefix="octo-wsreal")
    expect(page.get_by_test_id("workspaces-empty")).to_be_visible()
    expect(page.get_by_test_id("workspaces-usage")).to_have_text("0 of 1 workspace · Free")

    # Two repositories to attach (added through the API, as the Repositories page would).
    github = page.request.get("/api/repos/github?per_page=5").json()["repositories"]
    repos = []
    for listed in github[:2]:
        added = page.request.post("/api/repos", headers=csrf_headers(page), data={"full_name": listed["full_name"]})
        assert added.status in (200, 201), added.text()
        repos.append(added.json())

    # Create: the dialog → 202 → the workspace's page, where the steps tick by until it runs.
    page.get_by_test_id("workspace-new").click()
    page.get_by_test_id("workspace-name-input").fill("real box")
    for attached in repos:
        page.get_by_test_id(f"workspace-repo-{attached['id']}").check()
    with page.expect_response(lambda r: r.url.endswith("/api/workspaces") and r.request.method == "POST") as sent:
        page.get_by_test_id("workspace-create-submit").click()
    assert sent.value.status == 202, sent.value.text()
    created = sent.value.json()
    ws_id, host = created["id"], created["host"]
    app = host.split(".")[0]
    page.wait_for_url(re.compile(re.escape(f"{WORKSPACES}/{ws_id}") + "$"))
    expect(page.get_by_test_id("workspace-title")).to_have_text("real box")
    expect(page.get_by_test_id("workspace-events").locator("[data-step]")).to_have_count(8)
    shot(page, "real-provisioning")
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "running", timeout=90_000)
    for step in ("app", "ips", "volume", "secrets", "machine", "wait", "health", "finish"):
        expect(page.get_by_test_id(f"workspace-step-{step}")).to_have_attribute("data-state", "succeeded")
    for attached in repos:
        expect(page.get_by_test_id("workspace-repos-detail")).to_contain_text(attached["full_name"])
    expect(page.get_by_test_id("workspace-host")).to_have_text(host)
    expect(page.get_by_test_id("workspace-stop")).to_be_enabled()
    expect(page.get_by_test_id("workspace-start")).to_be_disabled()
    running = inventory_of(stack, app)
    assert [m["state"] for m in running["machines"]] == ["started"] and len(running["volumes"]) == 1
    shot(page, "real-running", full_page=True)
    at_narrow_width(page, "real-running")

    # The Free plan has one workspace: a second is refused with the limit and the upgrade link.
    page.get_by_test_id("workspaces-back").click()
    page.wait_for_url(re.compile(r"/dashboard/workspaces$"))
    expect(page.get_by_test_id(f"workspace-status-{ws_id}")).to_have_attribute("data-status", "running")
    expect(page.get_by_test_id("workspaces-usage")).to_have_text("1 of 1 workspace · Free")
    expect(page.get_by_test_id("workspaces-plan-limit")).to_be_visible()
    page.get_by_test_id("workspace-new").click()
    page.get_by_test_id("workspace-name-input").fill("one too many")
    with page.expect_response(lambda r: r.url.endswith("/api/workspaces") and r.request.method == "POST") as refused:
        page.get_by_test_id("workspace-create-submit").click()
    assert refused.value.status == 402, refused.value.text()
    expect(page.get_by_test_id("workspace-plan-limit")).to_contain_text("Your Free plan includes 1 workspace and 1 is in use.")
    expect(page.get_by_test_id("workspace-plan-limit-link")).to_have_attribute("href", "/pricing")
    shot(page, "real-plan-limit")
    page.get_by_test_id("workspace-create-cancel").click()
    expect(page.get_by_test_id("workspace-create-dialog")).to_have_count(0)

    # Stop keeps the volume; start brings the same machine back.
    page.get_by_test_id(f"workspace-link-{ws_id}").click()
    page.wait_for_url(re.compile(re.escape(f"{WORKSPACES}/{ws_id}") + "$"))
    expect(page.get_by_test_id("workspace-stop")).to_be_enabled()
    page.get_by_test_id("workspace-stop").click()
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "stopped", timeout=30_000)
    expect(page.get_by_test_id("workspace-start")).to_be_enabled()
    expect(page.get_by_test_id("workspace-running")).to_have_text("Not running")
    stopped = inventory_of(stack, app)
    assert [m["state"] for m in stopped["machines"]] == ["stopped"]
    assert [v["id"] for v in stopped["volumes"]] == [v["id"] for v in running["volumes"]]
    page.get_by_test_id("workspace-start").click()
    expect(page.get_by_test_id("workspace-status")).to_have_attribute("data-status", "running", timeout=30_000)
    assert [m["id"] for m in inventory_of(stack, app)["machines"]] == [m["id"] for m in running["machines"]]

    # Custom domains below Team: the upgrade hint. On Team: the exact records, then verified through DNS.
    domain = f"{ws_id.replace('_', '-')}.acme-agents.dev"
    page.get_by_test_id("domain-input").fill(domain)
    page.get_by_test_id("domain-claim").click()
    expect(page.get_by_test_id("domain-upgrade")).to_contain_text("Custom domains come with the Team plan (you're on Free).")
    set_plan(stack, login, "team")
    page.reload()
    page.get_by_test_id("domain-input").fill(domain)
    with page.expect_response(lambda r: r.url.endswith(f"/api/workspaces/{ws_id}/domain")) as claimed:
        page.get_by_test_id("domain-claim").click()
    assert claimed.value.status == 201, claimed.value.text()
    token = next(r["value"] for r in claimed.value.json()["records"] if r["type"] == "TXT")
    expect(page.get_by_test_id("domain-status")).to_have_attribute("data-status", "pending")
    expect(page.get_by_test_id("domain-record-txt-name")).to_have_text(f"_relay-challenge.{domain}")
    expect(page.get_by_test_id("domain-record-txt-value")).to_have_text(token)
    expect(page.get_by_test_id("domain-record-cname-name")).to_have_text(domain)
    expect(page.get_by_test_id("domain-record-cname-value")).to_have_text(host)
    page.get_by_test_id("domain-copy-txt-value").click()
    assert page.evaluate("navigator.clipboard.readText()") == token
    shot(page, "real-domain-records", full_page=True)
    at_narrow_width(page, "real-domain-records")

    # Nothing published yet: both checks fail. Published in the sandbox DNS: verified, then the certificate.
    page.get_by_test_id("domain-verify").click()
    expect(page.get_by_test_id("domain-check-txt")).to_have_attribute("data-ok", "false")
    expect(page.get_by_test_id("domain-check-cname")).to_have_attribute("data-ok", "false")
    dns = f"{stack.url}/_sandbox/dns/records"
    for record in ({"name": f"_relay-challenge.{domain}", "type": "TXT", "value": token},
                   {"name": domain, "type": "CNAME", "value": host}):
        assert httpx.post(dns, json=record, timeout=10).status_code in (200, 201)
    page.get_by_test_id("domain-verify").click()
    expect(page.get_by_test_id("domain-check-txt")).to_have_attribute("data-ok", "true")
    expect(page.get_by_test_id("domain-check-cname")).to_have_attribute("data-ok", "true")
    expect(page.get_by_test_id("domain-status")).to_have_attribute("data-status", re.compile("^(issuing|active)$"))
    page.wait_for_timeout(500)
    page.get_by_test_id("domain-verify").click()
    expect(page.get_by_test_id("domain-status")).to_have_attribute("data-status", "active")
    assert [c["hostname"] for c in inventory_of(stack, app)["certificates"]] == [domain]
    expect(page.get_by_test_id("domain-card")).not_to_contain_text("null")
    shot(page, "real-domain-active")

    # Delete: the exact name, then the teardown; the list is empty and so is the sandbox.
    page.get_by_test_id("workspace-delete").click()
    page.get_by_test_id("workspace-delete-name").fill("real bo")
    expect(page.get_by_test_id("workspace-delete-confirm")).to_be_disabled()
    page.get_by_test_id("workspace-delete-name").fill("real box")
    with page.expect_response(lambda r: r.url.endswith(f"/api/workspaces/{ws_id}") and r.request.method == "DELETE") as gone:
        page.get_by_test_id("workspace-delete-confirm").click()
    assert gone.value.status == 202, gone.value.text()
    page.wait_for_url(re.compile(r"/dashboard/workspaces$"), timeout=60_000)
    expect(page.get_by_test_id("workspaces-empty")).to_be_visible()
    expect(page.get_by_test_id("workspaces-usage")).to_have_text(re.compile(r"^0 of \d+ workspaces · Team$"))
    assert all(items == [] for items in inventory_of(stack, app).values())
    httpx.request("DELETE", dns, params={"name": domain}, timeout=10)
    httpx.request("DELETE", dns, params={"name": f"_relay-challenge.{domain}"}, timeout=10)
    problems.assert_none()
