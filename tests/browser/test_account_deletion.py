"""Account deletion from the dashboard's Overview against the real local stack: the typed-login
confirmation, the server's refusal while a workspace exists shown as the server words it
(``WORKSPACES_EXIST``: delete your workspaces first), then, once the workspace is gone, the deletion
itself (back on the landing page, the session ended)."""

from __future__ import annotations

import re
import time

import pytest

from tests.browser import support
from tests.browser.support import authorize_on_sandbox

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect


def csrf_headers(page) -> dict:
    return {"X-CSRF-Token": page.request.get("/api/auth/session").json()["csrf_token"]}


def wait_for(check, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_account_deletion_waits_for_the_workspaces_and_says_so(page, problems, stack):
    login = support.unique_login("octo-leave")
    page.goto("/dashboard")
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard$"))
    expect(page.get_by_test_id("user-login")).to_have_text(login)

    created = page.request.post("/api/workspaces", headers=csrf_headers(page), data={"name": "still here"})
    assert created.status == 202, created.text()
    path = f"/api/workspaces/{created.json()['id']}"

    page.get_by_test_id("account-delete").click()
    confirm = page.get_by_test_id("account-delete-confirm")
    expect(confirm).to_be_disabled()  # until the login is typed exactly
    page.get_by_test_id("account-delete-login").fill(login)
    with page.expect_response(lambda r: r.url.endswith("/api/account")) as answered:
        confirm.click()
    assert answered.value.status == 409
    dialog = page.get_by_test_id("account-delete-dialog")
    expect(dialog.get_by_role("alert")).to_contain_text("Delete your workspaces first")
    support.shot(page, "account-delete-refused")
    page.get_by_test_id("account-delete-cancel").click()
    expect(dialog).to_have_count(0)

    wait_for(lambda: page.request.get(path).json().get("status") in ("running", "error"), "never settled")
    assert page.request.delete(path, headers=csrf_headers(page)).status == 202
    wait_for(lambda: page.request.get(path).status == 404, "the teardown never finished")

    page.get_by_test_id("account-delete").click()
    page.get_by_test_id("account-delete-login").fill(login)
    with page.expect_response(lambda r: r.url.endswith("/api/account")) as answered:
        page.get_by_test_id("account-delete-confirm").click()
    assert answered.value.status == 204
    page.wait_for_url(re.compile(r"/$"))
    assert page.request.get("/api/auth/me").status == 401
    problems.assert_none()
