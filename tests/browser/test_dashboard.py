"""The web app in a real headless Chromium against the local stack (SPEC C1, C8, C13).

Uses Debian's chromium (never `playwright install`) and the session-scoped `local_stack` fixture
from tests/conftest.py. The local server sends every app page with the production Content-Security-Policy
(relay_cloud.http.web_policy, as CloudFront does), so an inline script or style is a violation and fails.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.browser import support
from tests.browser.support import DESKTOP, PHONE, assert_no_horizontal_overflow, authorize_on_sandbox

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser


def shot(page, name: str, *, full_page: bool = False):
    return support.shot(page, f"{name}", full_page=full_page)


def unique_login(prefix: str = "octo-browser") -> str:
    return support.unique_login(prefix)



def session_cookie(context) -> dict:
    cookies = [c for c in context.cookies() if c["name"].endswith("relay_session")]
    assert cookies, f"no session cookie in {[c['name'] for c in context.cookies()]}"
    return cookies[0]


def spoil_session_cookie(context) -> None:
    cookie = session_cookie(context)
    context.add_cookies([{
        "name": cookie["name"],
        "value": "bogus-" + uuid.uuid4().hex,
        "domain": cookie["domain"],
        "path": cookie["path"],
        "httpOnly": cookie["httpOnly"],
        "secure": cookie["secure"],
        "sameSite": cookie["sameSite"],
    }])


# ---------------------------------------------------------------------------------------------------
# The sign-in journey
# ---------------------------------------------------------------------------------------------------


def test_sign_in_sign_out_and_expired_session_journey(page, context, problems, stack):
    login = unique_login()

    # Landing → "Sign in with GitHub" → sandbox GitHub → back on the dashboard.
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    page.get_by_test_id("signin-button").first.click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard$"))

    expect(page.get_by_test_id("user-login")).to_have_text(login)
    expect(page.get_by_test_id("user-plan")).to_have_text("Free")
    expect(page.get_by_test_id("user-avatar")).to_have_attribute("alt", login)
    expect(page.get_by_test_id("user-menu")).to_be_visible()
    # The Overview greets the user with /api/auth/me data and shows onboarding.
    expect(page.get_by_test_id("onboarding")).to_be_visible()
    expect(page.get_by_test_id("onboarding")).to_contain_text("Sign in with GitHub")
    expect(page.get_by_test_id("onboarding")).to_contain_text("1 of 4 done")
    expect(page.locator("main")).not_to_contain_text("1970")  # created_at read with the right unit
    assert session_cookie(context)["httpOnly"] is True
    shot(page, "dashboard-desktop")

    # The same dashboard on a phone: no sideways scrolling, navigation behind a menu button.
    page.set_viewport_size(PHONE)
    expect(page.get_by_test_id("user-login")).to_be_visible()
    assert_no_horizontal_overflow(page)
    shot(page, "dashboard-phone")
    menu = page.get_by_role("button", name="Open navigation")
    expect(menu).to_be_visible()
    menu.click()
    expect(page.locator("#sidebar").get_by_role("link", name="Providers")).to_be_visible()
    shot(page, "dashboard-phone-menu")
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 360, "height": 780})
    expect(page.get_by_test_id("signout-button")).to_be_visible()
    assert_no_horizontal_overflow(page)
    page.set_viewport_size(DESKTOP)

    # A "coming next" section, reached through client-side routing under /dashboard/<section>.
    page.locator("#sidebar").get_by_role("link", name="Machines").click()
    page.wait_for_url(re.compile(r"/dashboard/machines$"))
    expect(page.get_by_test_id("machines-empty")).to_be_visible()

    # Sign out: POST /api/auth/logout carries the CSRF token from /api/auth/session, answers 204.
    with page.expect_response(lambda r: r.url.endswith("/api/auth/logout")) as logout:
        page.get_by_test_id("signout-button").click()
    assert logout.value.status == 204
    assert logout.value.request.headers.get("x-csrf-token")
    expect(page.get_by_test_id("signin-card")).to_be_visible()
    expect(page.get_by_test_id("user-menu")).to_have_count(0)
    shot(page, "signed-out")
    status = page.request.get("/api/auth/session").json()
    assert status["authenticated"] is False

    # Sign in again from the sign-in card: it returns to the page we were on.
    page.get_by_test_id("signin-button").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard/machines$"))
    expect(page.get_by_test_id("user-login")).to_have_text(login)

    # Go somewhere specific, then let the session "expire" (a cookie the server does not know).
    page.locator("#sidebar").get_by_role("link", name="Usage").click()
    page.wait_for_url(re.compile(r"/dashboard/usage$"))
    spoil_session_cookie(context)
    page.reload()
    modal = page.get_by_test_id("session-expired-modal")
    expect(modal).to_be_visible()
    expect(modal).to_have_attribute("role", "dialog")
    expect(modal).to_have_attribute("aria-modal", "true")
    expect(modal.get_by_role("heading", name="Your session expired")).to_be_visible()
    shot(page, "session-expired")

    # "Sign in again" → sandbox GitHub → back on exactly the same dashboard path.
    page.get_by_test_id("session-expired-signin").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard/usage$"))
    expect(page.get_by_test_id("user-login")).to_have_text(login)
    expect(page.get_by_test_id("session-expired-modal")).to_have_count(0)
    expect(page.get_by_test_id("coming-next-usage")).to_be_visible()

    # An API call (not the page load) that meets an expired session opens the same modal.
    spoil_session_cookie(context)
    with page.expect_response(lambda r: r.url.endswith("/api/auth/me")) as me:
        page.locator("#sidebar").get_by_role("link", name="Overview").click()
    assert me.value.status == 401
    assert me.value.json()["code"] == "SESSION_EXPIRED"
    expect(page.get_by_test_id("session-expired-modal")).to_be_visible()
    expect(page.get_by_role("heading", name="Your session expired")).to_be_visible()
    page.get_by_test_id("session-expired-signin").click()
    authorize_on_sandbox(page, login)
    page.wait_for_url(re.compile(r"/dashboard$"))
    expect(page.get_by_test_id("user-login")).to_have_text(login)

    problems.assert_none()


def test_sign_in_button_carries_the_current_path_as_next(page, problems):
    page.goto("/dashboard/team?tab=invites")
    button = page.get_by_test_id("signin-button")
    expect(button).to_be_visible()
    href = button.get_attribute("href")
    parsed = urlparse(href)
    assert parsed.path == "/api/auth/github/login"
    assert parse_qs(parsed.query)["next"] == ["/dashboard/team?tab=invites"]
    problems.assert_none()


@pytest.mark.parametrize(
    ("code", "headline"),
    [
        ("OAUTH_DENIED", "GitHub access wasn't granted"),
        ("OAUTH_STATE_INVALID", "That sign-in link has expired"),
        ("OAUTH_STATE_MISSING", "We couldn't match this sign-in to your browser"),
        ("OAUTH_CODE_INVALID", "GitHub couldn't confirm your sign-in"),
        ("UPSTREAM_UNAVAILABLE", "GitHub isn't responding right now"),
        ("SOMETHING_NEW", "Sign-in didn't complete"),
    ],
)
def test_sign_in_error_page_explains_and_offers_retry(page, problems, code, headline):
    page.goto(f"/dashboard?auth_error={code}")
    card = page.get_by_test_id("auth-error")
    expect(card).to_be_visible()
    expect(card.get_by_role("heading", level=1)).to_have_text(headline)
    expect(card).to_contain_text(code)
    retry = card.get_by_test_id("signin-button")
    expect(retry).to_have_text("Try again")
    # Trying again must not carry the error along.
    assert parse_qs(urlparse(retry.get_attribute("href")).query)["next"] == ["/dashboard"]
    if code == "OAUTH_DENIED":
        shot(page, "auth-error")
    problems.assert_none()


# ---------------------------------------------------------------------------------------------------
# Pricing and landing
# ---------------------------------------------------------------------------------------------------


def test_pricing_is_rendered_from_the_plan_catalog(page, problems, stack):
    # No price is baked into the HTML: it all comes from GET /api/billing/plans.
    raw = page.request.get(stack.url + "/pricing").text()
    assert "$29" not in raw and "$278" not in raw

    page.goto("/pricing")
    cards = page.locator('[data-testid^="pricing-card-"]')
    expect(cards).to_have_count(4)
    for tier in ("free", "pro", "team", "enterprise"):
        expect(page.get_by_test_id(f"pricing-card-{tier}")).to_be_visible()

    pro = page.get_by_test_id("pricing-card-pro")
    expect(pro.get_by_test_id("price-pro")).to_have_text("$29")
    expect(pro).to_contain_text("Most popular")
    expect(page.get_by_test_id("pricing-card-free").get_by_test_id("price-free")).to_have_text("$0")
    enterprise = page.get_by_test_id("pricing-card-enterprise")
    expect(enterprise).to_contain_text("Custom")
    expect(enterprise).to_contain_text("Contact sales")
    expect(enterprise).to_contain_text("Unlimited workspaces")
    shot(page, "pricing-monthly", full_page=True)

    toggle = page.get_by_test_id("billing-toggle")
    expect(toggle).to_have_attribute("aria-checked", "false")
    toggle.click()
    expect(toggle).to_have_attribute("aria-checked", "true")
    expect(pro.get_by_test_id("price-pro")).to_have_text("$278")
    expect(pro).to_contain_text("/year")
    expect(pro).to_contain_text(re.compile(r"save 20%", re.I))
    expect(page.get_by_test_id("pricing-card-team").get_by_test_id("price-team")).to_have_text("$950")
    expect(enterprise).to_contain_text("Custom")
    shot(page, "pricing-yearly")

    toggle.click()
    expect(pro.get_by_test_id("price-pro")).to_have_text("$29")
    problems.assert_none()


def test_pricing_shows_an_error_with_retry_when_the_catalog_fails(page, problems):
    calls = {"n": 0}

    def flaky(route) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            route.fulfill(status=503, content_type="application/json",
                          body='{"error": "unavailable", "code": "UPSTREAM_UNAVAILABLE"}')
        else:
            route.continue_()

    page.route("**/api/billing/plans", flaky)
    page.goto("/pricing")
    error = page.get_by_test_id("pricing-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("couldn't load pricing")
    shot(page, "pricing-error")
    page.get_by_test_id("pricing-retry").click()
    expect(page.locator('[data-testid^="pricing-card-"]')).to_have_count(4)
    problems.assert_none()


@pytest.mark.parametrize("width", [390, 360])
def test_landing_fits_a_phone(page, problems, width):
    page.set_viewport_size({"width": width, "height": 844})
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert_no_horizontal_overflow(page)
    # The nav collapses behind a menu button that opens it.
    toggle = page.get_by_role("button", name="Open menu")
    expect(toggle).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    toggle.click()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Pricing")).to_be_visible()
    if width == 390:
        shot(page, "landing-phone-menu")
        page.get_by_role("button", name="Close menu").click()
        shot(page, "landing-phone")
    page.goto("/pricing")
    expect(page.locator('[data-testid^="pricing-card-"]')).to_have_count(4)
    assert_no_horizontal_overflow(page)
    problems.assert_none()


def test_landing_desktop(page, problems):
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("agents")
    for name in ("How it works", "Agents", "Features", "Pricing"):
        expect(page.get_by_role("navigation", name="Main").get_by_role("link", name=name)).to_be_visible()
    for text in ("Claude Code", "Codex CLI", "Gemini CLI", "Cloud workspaces", "Link your machines",
                 "Cross-machine messaging", "Encrypted credential vault", "Teams and roles"):
        expect(page.locator("main")).to_contain_text(text)
    href = page.get_by_test_id("signin-button").first.get_attribute("href")
    assert href.startswith("/api/auth/github/login?next=")
    shot(page, "landing-desktop")
    problems.assert_none()


def test_pages_are_served_with_the_production_content_security_policy(stack):
    from relay_cloud.http.web_policy import CONTENT_SECURITY_POLICY

    for path in ("/", "/pricing", "/dashboard/usage"):
        response = httpx.get(f"{stack.url}{path}")
        assert response.status_code == 200
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
