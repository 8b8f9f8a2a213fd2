"""Device authorization state (RFC 8628) shared by the sandbox GitHub and the sandbox OIDC provider.

A ``DeviceStore`` holds pending authorizations behind its own lock and answers what a poll of the token
endpoint means right now; each sandbox turns that outcome into its provider's wire format (GitHub: HTTP
200 with ``error``; RFC 8628 §3.5: HTTP 400). Rules common to both:

- user codes are 8 characters of RFC 8628 §6.1's base-20 alphabet shown as ``XXXX-XXXX``; entry is
  case-insensitive and ignores the hyphen and spaces;
- a poll sooner than ``interval`` seconds after the previous poll of a still-pending code is
  ``slow_down`` and adds 5 seconds to that code's interval for every later poll (RFC 8628 §3.5);
  ``slow_down`` is a variant of ``authorization_pending``, so decided codes are never slowed down;
- after ``expires_in`` the code is ``expired`` whatever its state; a denied code stays denied; an
  approved code yields tokens exactly once and is ``consumed`` afterwards.
"""

from __future__ import annotations

import html
import secrets
import threading
from dataclasses import dataclass

from relay_cloud.sandbox.base import Request, Response, html_response, json_response, page

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alike digits
SLOW_DOWN_SECONDS = 5

PENDING, APPROVED, DENIED, CONSUMED = "pending", "approved", "denied", "consumed"
# poll outcomes
UNKNOWN, WRONG_CLIENT, EXPIRED, SLOW_DOWN = "unknown", "wrong_client", "expired", "slow_down"


@dataclass
class DeviceAuthorization:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    created_at: float
    expires_at: float
    interval: int
    last_poll: float | None = None
    status: str = PENDING
    login: str | None = None


def normalize_user_code(raw: str | None) -> str:
    letters = "".join(c for c in (raw or "").upper() if c.isalnum())
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == 8 else letters


class DeviceStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_device: dict[str, DeviceAuthorization] = {}
        self._by_user: dict[str, str] = {}

    def start(self, client_id: str, scope: str, *, now: float, expires_in: int, interval: int,
              device_code: str | None = None) -> DeviceAuthorization:
        with self._lock:
            while True:
                user_code = normalize_user_code("".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8)))
                live = self._by_device.get(self._by_user.get(user_code, ""))
                if live is None or live.expires_at <= now:
                    break
            auth = DeviceAuthorization(
                device_code=device_code or secrets.token_hex(20),
                user_code=user_code,
                client_id=client_id,
                scope=scope,
                created_at=now,
                expires_at=now + expires_in,
                interval=interval,
            )
            self._by_device[auth.device_code] = auth
            self._by_user[user_code] = auth.device_code
            # Forget authorizations that ended long ago so a long-running dev server stays small.
            for code in [c for c, a in self._by_device.items() if a.expires_at + 3600 < now]:
                stale = self._by_device.pop(code)
                if self._by_user.get(stale.user_code) == code:
                    del self._by_user[stale.user_code]
            return auth

    def poll(self, device_code: str, client_id: str, now: float) -> tuple[str, DeviceAuthorization | None]:
        """What a token request for ``device_code`` means now; an approved code is consumed by it."""
        with self._lock:
            auth = self._by_device.get(device_code or "")
            if auth is None:
                return UNKNOWN, None
            if auth.client_id != client_id:
                return WRONG_CLIENT, auth
            previous, auth.last_poll = auth.last_poll, now
            if auth.status == CONSUMED:
                return CONSUMED, auth
            if auth.expires_at <= now:
                return EXPIRED, auth
            if auth.status == DENIED:
                return DENIED, auth
            if auth.status == APPROVED:
                auth.status = CONSUMED
                return APPROVED, auth
            if previous is not None and now - previous < auth.interval:
                auth.interval += SLOW_DOWN_SECONDS
                return SLOW_DOWN, auth
            return PENDING, auth

    def slow_down(self, device_code: str | None, now: float) -> int | None:
        """Count a poll answered ``slow_down`` by other means (an injected fault): the code's interval
        rises by 5 s as with a real one. The new interval; None for an unknown code."""
        with self._lock:
            auth = self._by_device.get(device_code or "")
            if auth is None:
                return None
            auth.last_poll = now
            auth.interval += SLOW_DOWN_SECONDS
            return auth.interval

    def find(self, user_code: str, now: float) -> DeviceAuthorization | None:
        with self._lock:
            auth = self._by_device.get(self._by_user.get(normalize_user_code(user_code), ""))
            return auth if auth is not None and auth.expires_at > now else None

    def decide(self, user_code: str, login: str, *, approve: bool, now: float) -> tuple[str, DeviceAuthorization | None]:
        """Approve or deny a pending authorization: ("ok" | "unknown" | "expired" | "decided", auth)."""
        with self._lock:
            auth = self._by_device.get(self._by_user.get(normalize_user_code(user_code), ""))
            if auth is None:
                return UNKNOWN, None
            if auth.expires_at <= now:
                return EXPIRED, auth
            if auth.status != PENDING:
                return "decided", auth
            auth.status = APPROVED if approve else DENIED
            auth.login = login
            return "ok", auth


# -- the shared control surface and human page -------------------------------------------------------


def decide_control(request: Request, store: DeviceStore, *, approve: bool, now: float, valid_login, on_approve) -> Response:
    """``POST .../device/approve|deny`` with ``{"user_code", "login"}`` (SPEC §5)."""
    data = request.json()
    if not isinstance(data, dict):
        data = request.form()
    user_code = str(data.get("user_code") or "")
    login = str(data.get("login") or "").strip()
    if not user_code:
        return json_response({"message": "user_code is required"}, 400)
    if approve and not valid_login(login):
        return json_response({"message": "login is required and must be a valid login"}, 400)
    if not approve and login and not valid_login(login):
        return json_response({"message": "login must be a valid login"}, 400)
    outcome, auth = store.decide(user_code, login, approve=approve, now=now)
    if outcome == UNKNOWN:
        return json_response({"message": "Unknown user_code"}, 404)
    if outcome == EXPIRED:
        return json_response({"message": "This user_code has expired", "status": "expired"}, 410)
    if outcome == "decided":
        return json_response({"message": "This user_code was already decided", "status": auth.status}, 409)
    if approve:
        on_approve(login)
    return json_response({
        "user_code": auth.user_code,
        "login": login or None,
        "status": auth.status,
        "client_id": auth.client_id,
        "scope": auth.scope,
    })


def device_page(request: Request, *, title: str, heading: str, action: str, message: str = "",
                user_code: str = "", status: int = 200) -> Response:
    note = f'<p class="note" role="status">{html.escape(message)}</p>' if message else ""
    body = (
        f"<h1>{html.escape(heading)}</h1>{note}"
        f'<form method="post" action="{html.escape(action)}">'
        '<label for="user_code">Enter the code shown on your device</label>'
        f'<input id="user_code" name="user_code" required autocomplete="off" autocapitalize="characters" '
        f'spellcheck="false" placeholder="XXXX-XXXX" value="{html.escape(user_code)}">'
        '<label for="login">Sign in to the sandbox as (any login)</label>'
        '<input id="login" name="login" autocomplete="username" placeholder="octocat">'
        '<button type="submit" name="action" value="authorize">Authorize</button> '
        '<button type="submit" name="action" value="cancel" style="background:#59636e">Cancel</button>'
        "</form>"
        '<p class="note">This is a local sandbox provider: no real account is involved.</p>'
    )
    return html_response(page(title, body), status)


def device_page_submit(request: Request, store: DeviceStore, *, title: str, action: str, now: float,
                       valid_login, on_approve) -> Response:
    form = request.form()
    approve = form.get("action", "authorize") != "cancel"
    login = (form.get("login") or "").strip()
    user_code = form.get("user_code", "")
    if approve and not valid_login(login):
        return device_page(request, title=title, heading="Device activation", action=action, user_code=user_code,
                           message="Enter a valid login to authorize this device.", status=400)
    outcome, auth = store.decide(user_code, login, approve=approve, now=now)
    if outcome in (UNKNOWN, EXPIRED):
        return device_page(request, title=title, heading="Device activation", action=action, user_code=user_code,
                           message="That code is not valid or has expired. Check the code on your device.",
                           status=400 if outcome == UNKNOWN else 410)
    if outcome == "decided":
        return device_page(request, title=title, heading="Device activation", action=action,
                           message="That code has already been used.", status=409)
    if approve:
        on_approve(login)
        done = "<h1>Congratulations, you're all set!</h1><p>Your device is now connected. You can close this page.</p>"
    else:
        done = "<h1>Access denied</h1><p>The device was not authorized. You can close this page.</p>"
    return html_response(page(title, done))


class DeviceApproval:
    """The human activation page and the SPEC §5 approve/deny control surface, for a sandbox that has
    ``devices`` (a DeviceStore), ``clock``, ``ensure_user(login)``, and sets ``device_title``,
    ``device_path`` (below the sandbox's base path) and ``valid_login``."""

    device_title = "Device activation"
    device_path = "/device"

    def _approve_login(self, login: str) -> None:
        self.ensure_user(login)

    def _decide(self, request: Request, approve: bool) -> Response:
        return decide_control(request, self.devices, approve=approve, now=self.clock(),
                              valid_login=self.valid_login, on_approve=self._approve_login)

    def device_approve(self, request: Request) -> Response:
        return self._decide(request, True)

    def device_deny(self, request: Request) -> Response:
        return self._decide(request, False)

    def device_page(self, request: Request) -> Response:
        return device_page(request, title=self.device_title, heading="Device activation",
                           action=f"{request.base_path}{self.device_path}", user_code=request.arg("user_code", "") or "")

    def device_page_submit(self, request: Request) -> Response:
        return device_page_submit(request, self.devices, title=self.device_title,
                                  action=f"{request.base_path}{self.device_path}", now=self.clock(),
                                  valid_login=self.valid_login, on_approve=self._approve_login)
