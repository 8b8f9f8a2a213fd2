"""Browser fixtures: one Chromium per module, a fresh context and page per test, CSP and JS errors
watched on every page (the local server sends the production Content-Security-Policy)."""

from __future__ import annotations

import shutil

import pytest

from tests.browser.support import CHROMIUM_ARGS, DESKTOP, TIMEOUT_MS, Problems

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium")
    if not executable:
        pytest.skip("Debian chromium is not installed")
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def stack(local_stack):
    return local_stack


@pytest.fixture
def context(browser, stack):
    ctx = browser.new_context(viewport=DESKTOP, base_url=stack.url)
    ctx.set_default_timeout(TIMEOUT_MS)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def problems():
    return Problems()


@pytest.fixture
def page(context, problems):
    pg = context.new_page()
    problems.watch(pg)
    return pg
