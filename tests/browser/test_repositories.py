"""The Repositories section in a real headless Chromium against the local stack (SPEC C5, C8, C13;
docs/design/repositories.md): sign in, page through the GitHub picker, add several at once with
per-item results and the Free plan's upgrade message, add by name, remove with confirmation, and the
phone layout at 375 px. Like the other browser tests: Debian chromium, the production CSP (an inline
script or style fails the test), no uncaught JS errors, screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import re

import pytest

from tests.browser import support
from tests.browser.support import DESKTOP, assert_no_horizontal_overflow, authorize_on_sandbox

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser
NARROW_PHONE = {"width": 375, "height": 812}


def shot(page, name: str, *, full_page: bool = False):
    return support.shot(page, f"repositories-{name}", full_page=full_page)


def test_pick_add_limit_remove_and_phone_layout(page, problems, stack):
    login = support.unique_login("octo-repo")
    page.goto("/dashboard/repositories")
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard/repositories$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Repositories")
    expect(page.get_by_test_id("repos-empty")).to_be_visible()
    expect(page.get_by_test_id("repos-usage")).to_have_text("0 of 3 on Free")
    expect(page.locator('.side-nav a[data-section="repositories"]')).to_have_attribute("aria-current", "page")

    # The picker: 20 a page from GitHub (public ones only with the sign-in token), Next and Previous.
    page.get_by_test_id("repos-add-open").click()
    picker = page.get_by_test_id("repos-picker")
    boxes = picker.locator('[data-testid="picker-list"] input[type="checkbox"]')
    expect(boxes).to_have_count(20)
    expect(page.get_by_test_id("picker-public-only")).to_be_visible()
    expect(page.get_by_test_id("picker-prev")).to_be_disabled()
    expect(page.get_by_test_id("picker-submit")).to_be_disabled()
    first_page = picker.locator(".rp-pick-name").all_inner_texts()
    assert all(name.startswith(f"{login}/") for name in first_page)
    boxes.nth(0).check()
    boxes.nth(1).check()
    expect(page.get_by_test_id("picker-submit")).to_have_text("Add selected (2)")
    shot(page, "picker-desktop")
    page.get_by_test_id("picker-next").click()
    expect(page.get_by_test_id("picker-page")).to_have_text("Page 2")
    expect(picker.locator(".rp-pick-name").first).not_to_have_text(first_page[0])
    boxes.nth(0).check()
    boxes.nth(1).check()
    expect(page.get_by_test_id("picker-submit")).to_have_text("Add selected (4)")

    # Four picked on Free (3 repositories): three added, one over the limit, and the upgrade message.
    page.get_by_test_id("picker-submit").click()
    results = page.get_by_test_id("bulk-results")
    expect(results.locator('[data-status="added"]')).to_have_count(3)
    expect(results.locator('[data-status="limit_exceeded"]')).to_have_count(1)
    upgrade = page.get_by_test_id("repos-upgrade")
    expect(upgrade).to_contain_text("Free plan includes 3 repositories")
    expect(page.get_by_test_id("repos-upgrade-link")).to_have_attribute("href", "/pricing")
    rows = page.get_by_test_id("repos-list").locator("li.rp-row")
    expect(rows).to_have_count(3)
    expect(page.get_by_test_id("repos-usage")).to_have_text("3 of 3 on Free")
    # Page 2 is still shown: its first pick was added (the third), its second was over the limit.
    expect(picker.locator(".rp-pick.is-added")).to_have_count(1)
    expect(boxes.nth(1)).not_to_be_checked()
    shot(page, "limit-desktop", full_page=True)

    # Adding by name at the limit is the same 402 message; an unknown repository says so.
    page.get_by_test_id("picker-close").click()
    expect(picker).to_be_hidden()
    page.get_by_test_id("repos-by-name-input").fill(f"{login}/no-such-repo")
    page.get_by_test_id("repos-by-name-submit").click()
    expect(page.get_by_test_id("repos-problem")).to_contain_text("doesn't exist")
    page.get_by_test_id("repos-by-name-input").fill(first_page[5])
    page.get_by_test_id("repos-by-name-submit").click()
    expect(page.get_by_test_id("repos-upgrade")).to_be_visible()

    # Remove one, confirmed in the dialog: the slot is free again and adding by name works.
    first_row = rows.first
    name = first_row.locator(".rp-name").inner_text()
    first_row.get_by_role("button", name=f"Remove {name}").click()
    dialog = page.get_by_test_id("repo-remove-dialog")
    expect(dialog).to_contain_text(f"Remove {name}?")
    page.get_by_test_id("repo-remove-cancel").click()
    expect(rows).to_have_count(3)
    first_row.get_by_role("button", name=f"Remove {name}").click()
    page.get_by_test_id("repo-remove-confirm").click()
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("repos-list")).not_to_contain_text(name)
    expect(page.get_by_test_id("repos-usage")).to_have_text("2 of 3 on Free")
    page.get_by_test_id("repos-by-name-input").fill(first_page[5])
    page.get_by_test_id("repos-by-name-submit").click()
    expect(rows).to_have_count(3)
    expect(page.get_by_test_id("repos-notices")).to_be_empty()

    # 375 px: nothing overflows, with the picker open too.
    page.set_viewport_size(NARROW_PHONE)
    assert_no_horizontal_overflow(page)
    shot(page, "list-phone", full_page=True)
    page.get_by_test_id("repos-add-open").click()
    expect(picker.locator('[data-testid="picker-list"] input[type="checkbox"]')).to_have_count(20)
    assert_no_horizontal_overflow(page)
    shot(page, "picker-phone", full_page=True)
    page.set_viewport_size(DESKTOP)
    problems.assert_none()


def test_the_overview_links_to_repositories(page, problems, stack):
    page.goto("/dashboard")
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, support.unique_login("octo-rov"))
    page.wait_for_url(re.compile(r"/dashboard$"))
    page.get_by_test_id("onboarding").get_by_role("link", name="Add repo").click()
    page.wait_for_url(re.compile(r"/dashboard/repositories$"))
    expect(page.get_by_test_id("repos-empty")).to_be_visible()
    problems.assert_none()
