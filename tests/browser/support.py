"""What every browser test shares: Debian chromium's launch arguments, viewports, screenshots, the
sandbox GitHub consent page, and the phone-layout check."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
# Debian chromium as root in a closed network (never `playwright install`).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000


def shot(page, name: str, *, full_page: bool = False) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    return path


def unique_login(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def authorize_on_sandbox(page, login: str) -> None:
    """The sandbox GitHub consent page: type a login and press Authorize."""
    page.wait_for_url(re.compile(r"/_sandbox/github/"))
    page.locator('input[name="login"]').fill(login)
    page.get_by_role("button", name="Authorize").click()


def assert_no_horizontal_overflow(page) -> None:
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width, f"horizontal overflow: {scroll_width} > {inner_width} on {page.url}"


class Problems:
    """CSP violations and uncaught exceptions seen by a page: there must be none."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def watch(self, page) -> None:
        def on_console(message) -> None:
            text = message.text
            if "Content Security Policy" in text or "Content-Security-Policy" in text:
                self.items.append(f"CSP on {page.url}: {text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.items.append(f"JS error on {page.url}: {error}"))

    def assert_none(self) -> None:
        assert not self.items, "\n".join(self.items)
