"""A GitHub OAuth App and REST API fake, following GitHub's documented paths and fields.

OAuth web flow (docs.github.com "Authorizing OAuth apps"):
    GET  /login/oauth/authorize       client_id, redirect_uri, scope, state, code_challenge(+_method=S256)
                                       (+ ``login=NAME``: the sandbox's no-browser approval)
    POST /login/oauth/access_token    client_id, client_secret, code, redirect_uri, code_verifier
OAuth device flow (docs.github.com "Authorizing OAuth apps" → "Device flow"):
    POST /login/device/code           client_id, scope → device_code, user_code (XXXX-XXXX),
                                       verification_uri (<base>/login/device), expires_in, interval
    POST /login/oauth/access_token    client_id, device_code, grant_type=urn:ietf:params:oauth:grant-type:device_code
                                       → access_token, token_type=bearer, scope; or (HTTP 200) error =
                                       authorization_pending | slow_down (+5 s, new ``interval`` in the body,
                                       kept for that code) | expired_token | access_denied |
                                       incorrect_device_code | unsupported_grant_type | incorrect_client_credentials
    GET  /login/device                the human page: enter the user code and a login, Authorize or Cancel
REST API (docs.github.com/rest):
    GET  /user, /user/emails
    GET  /user/repos                  page, per_page (≤ 100), sort (full_name | created | updated | pushed;
                                       default full_name), direction (asc | desc; default asc for full_name,
                                       else desc); a Link header with next/last/prev/first
    GET  /repos/{owner}/{repo}        a public repository for anyone, a private one for its owner's token with
                                       the ``repo`` scope, else 404 (as GitHub hides private repositories);
                                       owner and name are case-insensitive
    DELETE /applications/{client_id}/grant, /applications/{client_id}/token (Basic client credentials)

Like GitHub, token endpoint errors are HTTP 200 with an ``error`` field, JSON when ``Accept`` asks for it
and form-encoded otherwise. Codes are single-use and expire after 10 minutes; a code is spent by any
exchange attempt that presents the right client credentials (a failed PKCE check cannot be retried).
``/user/emails`` needs the ``user:email`` (or ``user``) scope and private repositories need ``repo``,
as on GitHub. Device codes follow ``relay_cloud.sandbox.device`` (single-use after success).
Everything lives in memory behind locks; ``clock`` is injectable (tests move time with it).

Sandbox control surface (SPEC §5; never faulted):
    POST /device/approve, /device/deny   {"user_code", "login"}: decide a pending device authorization
                                          (approve creates the user if new, as the authorize endpoint does)
    POST /_repos                          {"login", "name", "private"?, "default_branch"?, "description"?}:
                                          create a repository for a login (the user too, if new) → 201 its JSON
    GET|POST /_config                     {"device_interval", "device_expires_in"} (seconds; defaults 5 and 900)
    POST /_faults {"oauth_error": "slow_down", ...}  answers HTTP 200 {"error": "slow_down", "interval": n, ...}
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import string
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from relay_cloud.sandbox import device
from relay_cloud.sandbox.base import (
    Request,
    Response,
    Sandbox,
    html_response,
    json_response,
    page,
    redirect,
    update_settings,
    with_query,
)

CODE_TTL_SECONDS = 600
REPOS_PER_USER = 45
DOCS = "https://docs.github.com"
_TOKEN_ERRORS = "/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
_AUTHORIZE_ERRORS = "/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/"
_DEVICE_ERRORS = "/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps#error-codes-for-the-device-flow"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_DEVICE_INTERVAL = 5
DEFAULT_DEVICE_EXPIRES_IN = 900
_DEVICE_ERROR_TEXT = {
    "authorization_pending": "The authorization request is still pending.",
    "slow_down": "Too many requests have been made in the same timeframe.",
    "expired_token": "The device_code has expired.",
    "access_denied": "The authorization request was denied.",
    "incorrect_device_code": "The device_code provided is not valid.",
    "unsupported_grant_type": "The grant type must be urn:ietf:params:oauth:grant-type:device_code.",
    "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
}
_ALPHABET = string.ascii_letters + string.digits
_REPO_WORDS = (
    "relay", "atlas", "beacon", "cobalt", "delta", "ember", "falcon", "garnet", "harbor", "indigo",
    "juniper", "kestrel", "lumen", "meridian", "nimbus", "orbit", "pylon", "quartz", "raven", "sierra",
    "tundra", "umbra", "vertex", "willow", "xenon", "yarrow", "zephyr",
)
_REPO_KINDS = ("api", "web", "cli", "infra", "docs")
_LANGUAGES = ("Python", "TypeScript", "Go", "Rust", "Shell", None)


@dataclass
class OAuthClient:
    client_id: str
    client_secret: str
    callback_url: str | None = None  # when set, redirect_uri must be on it (GitHub's rule)


@dataclass
class User:
    id: int
    login: str
    name: str
    created_at: str

    @property
    def email(self) -> str:
        return f"{self.login.lower()}@users.sandbox.test"


@dataclass
class Grant:
    code: str
    client_id: str
    redirect_uri: str  # the one the user was sent back to
    scope: str
    code_challenge: str | None
    user_login: str
    expires_at: float


@dataclass
class Token:
    client_id: str
    user_login: str
    scope: str
    created_at: float = 0.0

    @property
    def scopes(self) -> set[str]:
        return {s for s in self.scope.split(",") if s}


def _random(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _normalize_scope(raw: str | None) -> str:
    parts = [p for p in (raw or "").replace(",", " ").split() if p]
    return ",".join(dict.fromkeys(parts))


def _valid_login(login: str) -> bool:
    return 0 < len(login) <= 39 and all(c.isascii() and (c.isalnum() or c == "-") for c in login) and not login.startswith("-")


class GitHubSandbox(device.DeviceApproval, Sandbox):
    name = "github"
    device_title = "Device activation (sandbox GitHub)"
    device_path = "/login/device"
    valid_login = staticmethod(_valid_login)

    def __init__(self, base_url: str = "", *, clock=time.time) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, OAuthClient] = {}
        self._users: dict[str, User] = {}  # by lower-cased login
        self._ids: set[int] = set()
        self._grants: dict[str, Grant] = {}
        self._tokens: dict[str, Token] = {}
        self._created_repos: dict[str, list[dict]] = {}  # by lower-cased login: repositories made with /_repos
        self.settings = {"device_interval": DEFAULT_DEVICE_INTERVAL, "device_expires_in": DEFAULT_DEVICE_EXPIRES_IN}
        self.devices = device.DeviceStore()
        self.route("GET", "/login/oauth/authorize", self.authorize)
        self.route("POST", "/login/device/code", self.device_code)
        self.route("GET", "/login/device", self.device_page)
        self.route("POST", "/login/device", self.device_page_submit)
        self.route("POST", "/device/approve", self.device_approve, control=True)
        self.route("POST", "/device/deny", self.device_deny, control=True)
        self.route("GET", "/_config", self.get_config)
        self.route("POST", "/_config", self.set_config)
        self.route("POST", "/login/oauth/access_token", self.access_token)
        self.route("GET", "/user", self.get_user)
        self.route("GET", "/user/emails", self.get_emails)
        self.route("GET", "/user/repos", self.get_repos)
        self.route("GET", "/repos/{owner}/{repo}", self.get_repo)
        self.route("POST", "/_repos", self.create_repo)
        self.route("GET", "/avatars/u/{user_id}", self.avatar)
        self.route("DELETE", "/applications/{client_id}/grant", self.delete_grant)
        self.route("DELETE", "/applications/{client_id}/token", self.delete_token)

    # -- state ------------------------------------------------------------------------------------

    def register_client(self, client_id: str, client_secret: str, callback_url: str | None = None) -> None:
        with self._lock:
            self._clients[client_id] = OAuthClient(client_id, client_secret, callback_url)

    def ensure_user(self, login: str) -> User:
        """The user with this login, created on first use with a stable numeric id."""
        key = login.lower()
        with self._lock:
            user = self._users.get(key)
            if user is None:
                user_id = int(hashlib.sha256(key.encode()).hexdigest()[:7], 16) + 10_000_000
                while user_id in self._ids:
                    user_id += 1
                self._ids.add(user_id)
                name = " ".join(part.capitalize() for part in login.replace("_", "-").split("-") if part)
                user = User(user_id, login, name or login, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                self._users[key] = user
            return user

    def _base(self, request: Request) -> str:
        return self.base_url or request.base_url

    def user_json(self, user: User, request: Request) -> dict:
        base = self._base(request)
        return {
            "login": user.login,
            "id": user.id,
            "node_id": base64.b64encode(f"04:User{user.id}".encode()).decode(),
            "avatar_url": f"{base}/avatars/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": f"{base}/users/{user.login}",
            "html_url": f"{base}/{user.login}",
            "repos_url": f"{base}/users/{user.login}/repos",
            "type": "User",
            "site_admin": False,
            "name": user.name,
            "company": None,
            "blog": "",
            "location": None,
            "email": None,  # GitHub returns the public email only; sandbox users keep theirs private
            "bio": None,
            "public_repos": REPOS_PER_USER - REPOS_PER_USER // 5,
            "followers": 0,
            "following": 0,
            "created_at": user.created_at,
            "updated_at": user.created_at,
        }

    # -- OAuth web flow -----------------------------------------------------------------------------

    def authorize(self, request: Request) -> Response:
        client_id = request.arg("client_id", "")
        with self._lock:
            client = self._clients.get(client_id or "")
        if client is None:
            return html_response(page("Error - sandbox GitHub", "<h1>404</h1><p>The OAuth application "
                                      "(client_id) is unknown to the sandbox GitHub.</p>"), 400)
        state = request.arg("state")
        redirect_uri = request.arg("redirect_uri") or client.callback_url
        if not redirect_uri or not _redirect_allowed(redirect_uri, client.callback_url):
            if client.callback_url:
                return redirect(with_query(client.callback_url, {
                    "error": "redirect_uri_mismatch",
                    "error_description": "The redirect_uri MUST match the registered callback URL for this application.",
                    "error_uri": DOCS + _AUTHORIZE_ERRORS + "#redirect-uri-mismatch",
                    "state": state,
                }))
            return html_response(page("Error - sandbox GitHub", "<p>A redirect_uri is required.</p>"), 400)
        challenge = request.arg("code_challenge") or None
        method = request.arg("code_challenge_method") or ("S256" if challenge else None)
        if challenge and method != "S256":
            return html_response(page("Error - sandbox GitHub", "<p>Only the S256 code_challenge_method "
                                      "is supported.</p>"), 400)
        login = (request.arg("login") or "").strip()
        if not login:
            return self._consent_page(request, redirect_uri, state)
        if not _valid_login(login):
            return html_response(page("Error - sandbox GitHub", "<p>Not a valid GitHub login.</p>"), 400)
        user = self.ensure_user(login)
        code = secrets.token_hex(10)
        with self._lock:
            self._grants[code] = Grant(
                code=code,
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                scope=_normalize_scope(request.arg("scope")),
                code_challenge=challenge,
                user_login=user.login,
                expires_at=self.clock() + CODE_TTL_SECONDS,
            )
        return redirect(with_query(redirect_uri, {"code": code, "state": state}))

    def _consent_page(self, request: Request, redirect_uri: str, state: str | None) -> Response:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(values[0])}">'
            for name, values in request.query.items()
            if name != "login" and values
        )
        cancel = with_query(redirect_uri, {
            "error": "access_denied",
            "error_description": "The user has denied your application access.",
            "error_uri": DOCS + _AUTHORIZE_ERRORS + "#access-denied",
            "state": state,
        })
        scope = _normalize_scope(request.arg("scope")) or "(no scope)"
        body = (
            "<h1>Authorize Agent Relay</h1>"
            f"<p>Agent Relay wants to sign you in and read: <code>{html.escape(scope)}</code>.</p>"
            f'<form method="get" action="{html.escape(request.base_path)}/login/oauth/authorize">{hidden}'
            '<label for="login">Sign in to the sandbox as (any GitHub login)</label>'
            '<input id="login" name="login" required autofocus autocomplete="username" '
            'pattern="[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})" placeholder="octocat">'
            '<button type="submit">Authorize</button> '
            f'<a href="{html.escape(cancel)}">Cancel</a></form>'
            '<p class="note">This is the local sandbox GitHub: no real account is involved.</p>'
        )
        return html_response(page("Authorize Agent Relay (sandbox GitHub)", body))

    def access_token(self, request: Request) -> Response:
        params = request.form()
        grant_type = params.get("grant_type")
        if grant_type == DEVICE_GRANT:
            return self._device_token(request, params)
        if grant_type not in (None, "", "authorization_code") or ("device_code" in params and "code" not in params):
            return _device_error(request, "unsupported_grant_type")
        client_id = params.get("client_id", "")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or not secrets.compare_digest(client.client_secret, params.get("client_secret", "")):
            return _token_error(request, "incorrect_client_credentials",
                                "The client_id and/or client_secret passed are incorrect.")
        with self._lock:
            grant = self._grants.pop(params.get("code", ""), None)  # single use: spent by any attempt
        if grant is None or grant.client_id != client_id or grant.expires_at < self.clock():
            return _token_error(request, "bad_verification_code", "The code passed is incorrect or expired.")
        sent_redirect = params.get("redirect_uri")
        if sent_redirect is not None and sent_redirect != grant.redirect_uri:
            # Optional at the exchange (as on GitHub), but when sent it must be the authorize one.
            return _token_error(request, "redirect_uri_mismatch",
                                "The redirect_uri MUST match the registered callback URL for this application.")
        if grant.code_challenge is not None:
            verifier = params.get("code_verifier", "")
            if not verifier or not secrets.compare_digest(s256(verifier), grant.code_challenge):
                return _token_error(request, "bad_verification_code",
                                    "The code_verifier does not match the code_challenge.")
        token = "gho_" + _random(36)
        with self._lock:
            self._tokens[token] = Token(client_id, grant.user_login, grant.scope, self.clock())
        result = {"access_token": token, "token_type": "bearer", "scope": grant.scope}
        if request.wants_json():
            return json_response(result)
        return Response(200, urlencode(result).encode(), [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")])

    # -- OAuth device flow ----------------------------------------------------------------------------

    def device_code(self, request: Request) -> Response:
        params = request.form()
        with self._lock:
            client = self._clients.get(params.get("client_id", ""))
            interval, expires_in = self.settings["device_interval"], self.settings["device_expires_in"]
        if client is None:
            return _form_or_json(request, {"error": "Not Found"}, 404)
        auth = self.devices.start(client.client_id, _normalize_scope(params.get("scope")), now=self.clock(),
                                  expires_in=expires_in, interval=interval)
        return _form_or_json(request, {
            "device_code": auth.device_code,
            "user_code": auth.user_code,
            "verification_uri": f"{self._base(request)}/login/device",
            "expires_in": expires_in,
            "interval": interval,
        })

    def _device_token(self, request: Request, params: dict[str, str]) -> Response:
        client_id = params.get("client_id", "")
        with self._lock:
            client = self._clients.get(client_id)
        secret = params.get("client_secret")
        # The device flow needs only the client_id; a client_secret, when sent, must still be right.
        if client is None or (secret is not None and not secrets.compare_digest(client.client_secret, secret)):
            return _device_error(request, "incorrect_client_credentials")
        outcome, auth = self.devices.poll(params.get("device_code", ""), client_id, self.clock())
        if outcome == device.APPROVED:
            token = "gho_" + _random(36)
            with self._lock:
                self._tokens[token] = Token(client_id, auth.login, auth.scope, self.clock())
            return _form_or_json(request, {"access_token": token, "token_type": "bearer", "scope": auth.scope})
        if outcome == device.SLOW_DOWN:
            return _device_error(request, "slow_down", interval=auth.interval)
        error = {
            device.PENDING: "authorization_pending",
            device.EXPIRED: "expired_token",
            device.DENIED: "access_denied",
        }.get(outcome, "incorrect_device_code")  # unknown, another client's, or already used
        return _device_error(request, error)

    def oauth_error_response(self, request: Request, error: str, status: int | None) -> Response:
        extra = {}
        if error == "slow_down":
            interval = self.devices.slow_down(request.form().get("device_code"), self.clock())
            with self._lock:
                extra["interval"] = interval or self.settings["device_interval"] + device.SLOW_DOWN_SECONDS
        return _device_error(request, error, status=status or 200, **extra)

    def get_config(self, _request: Request) -> Response:
        with self._lock:
            return json_response(dict(self.settings))

    def set_config(self, request: Request) -> Response:
        return update_settings(request, self.settings, self._lock)

    # -- REST API -----------------------------------------------------------------------------------

    def _authenticated(self, request: Request) -> tuple[Token, User] | Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            token = self._tokens.get(value.strip()) if scheme.lower() in ("bearer", "token") else None
            user = self._users.get(token.user_login.lower()) if token else None
        if token is None or user is None:
            return json_response({"message": "Bad credentials", "documentation_url": DOCS + "/rest", "status": "401"}, 401)
        return token, user

    def _scope_headers(self, token: Token, accepted: str) -> list[tuple[str, str]]:
        return [("X-OAuth-Scopes", ", ".join(sorted(token.scopes))), ("X-Accepted-OAuth-Scopes", accepted)]

    def get_user(self, request: Request) -> Response:
        auth = self._authenticated(request)
        if isinstance(auth, Response):
            return auth
        token, user = auth
        return json_response(self.user_json(user, request), headers=self._scope_headers(token, ""))

    def get_emails(self, request: Request) -> Response:
        auth = self._authenticated(request)
        if isinstance(auth, Response):
            return auth
        token, user = auth
        if not token.scopes & {"user", "user:email"}:
            return json_response({"message": "Not Found", "documentation_url": DOCS + "/rest", "status": "404"}, 404)
        emails = [
            {"email": user.email, "primary": True, "verified": True, "visibility": "private"},
            {"email": f"{user.login.lower()}.old@users.sandbox.test", "primary": False, "verified": False,
             "visibility": None},
        ]
        return json_response(emails, headers=self._scope_headers(token, "user, user:email"))

    def get_repos(self, request: Request) -> Response:
        auth = self._authenticated(request)
        if isinstance(auth, Response):
            return auth
        token, user = auth
        try:
            page_no = max(1, int(request.arg("page", "1") or 1))
            per_page = min(100, max(1, int(request.arg("per_page", "30") or 30)))
        except ValueError:
            return json_response({"message": "Invalid page or per_page"}, 422)
        repos = _sorted(self._repos(user, request, include_private=bool(token.scopes & {"repo"})),
                        request.arg("sort", "full_name") or "full_name", request.arg("direction"))
        last = max(1, -(-len(repos) // per_page))
        chunk = repos[(page_no - 1) * per_page: page_no * per_page]
        headers = self._scope_headers(token, "")
        link = _link_header(f"{self._base(request)}/user/repos", request.query, page_no, per_page, last)
        if link:
            headers.append(("Link", link))
        return json_response(chunk, headers=headers)

    def _repos(self, user: User, request: Request, *, include_private: bool) -> list[dict]:
        """Every repository of ``user``: the generated ones and those made with ``/_repos``."""
        base = self._base(request)
        specs = []
        for i in range(REPOS_PER_USER):
            name = f"{_REPO_WORDS[i % len(_REPO_WORDS)]}-{_REPO_KINDS[i % len(_REPO_KINDS)]}"
            if i >= len(_REPO_WORDS):
                name += f"-{i // len(_REPO_WORDS) + 1}"
            specs.append({
                "id": user.id * 100 + i, "name": name, "private": i % 5 == 4,
                "description": f"Sandbox repository {i + 1} of {user.login}", "fork": i % 9 == 8,
                "default_branch": "main", "language": _LANGUAGES[i % len(_LANGUAGES)],
                "stargazers_count": (i * 7) % 50, "created": 1_700_000_000 + i * 86_400,
            })
        with self._lock:
            specs += [dict(spec) for spec in self._created_repos.get(user.login.lower(), ())]
        return [_repo_json(user, spec, base) for spec in specs if include_private or not spec["private"]]

    def get_repo(self, request: Request) -> Response:
        """GitHub's "Get a repository": private repositories of others are 404, exactly like missing ones."""
        viewer = None
        if request.headers.get("authorization"):
            auth = self._authenticated(request)
            if isinstance(auth, Response):
                return auth  # a bad token is 401 even for a public repository, as on GitHub
            viewer = auth
        with self._lock:
            owner = self._users.get(request.params["owner"].lower())
        wanted = request.params["repo"].lower()
        if owner is not None:
            sees_private = viewer is not None and viewer[1].login.lower() == owner.login.lower() and "repo" in viewer[0].scopes
            for repo in self._repos(owner, request, include_private=sees_private):
                if repo["name"].lower() == wanted:
                    return json_response(repo, headers=self._scope_headers(viewer[0], "repo") if viewer else [])
        return json_response({"message": "Not Found", "documentation_url": DOCS + "/rest/repos/repos#get-a-repository",
                              "status": "404"}, 404)

    def create_repo(self, request: Request) -> Response:
        """Control surface: a repository for ``login`` (created if new), as GitHub's create would make it."""
        data = request.json()
        if not isinstance(data, dict):
            return json_response({"message": "Expected a JSON object"}, 400)
        login, name = str(data.get("login") or ""), str(data.get("name") or "")
        if not _valid_login(login) or not name or len(name) > 100 or not all(
                c.isascii() and (c.isalnum() or c in "._-") for c in name) or name in (".", ".."):
            return json_response({"message": "Validation Failed", "errors": [
                {"resource": "Repository", "code": "custom", "field": "name", "message": "name is invalid"}]}, 422)
        user = self.ensure_user(login)
        if any(repo["name"].lower() == name.lower() for repo in self._repos(user, request, include_private=True)):
            return json_response({"message": "Repository creation failed.", "errors": [
                {"resource": "Repository", "code": "custom", "field": "name",
                 "message": "name already exists on this account"}]}, 422)
        with self._lock:
            created = self._created_repos.setdefault(user.login.lower(), [])
            spec = {
                "id": user.id * 100 + 50 + len(created), "name": name, "private": bool(data.get("private")),
                "description": str(data["description"]) if data.get("description") else None, "fork": False,
                "default_branch": str(data.get("default_branch") or "main"), "language": None,
                "stargazers_count": 0, "created": int(self.clock()),
            }
            created.append(spec)
        return json_response(_repo_json(user, spec, self._base(request)), 201)

    def avatar(self, request: Request) -> Response:
        user_id = request.params.get("user_id", "0")
        hue = int(hashlib.sha256(user_id.encode()).hexdigest()[:4], 16) % 360
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
            f'<rect width="96" height="96" fill="hsl({hue},55%,55%)"/>'
            '<circle cx="48" cy="38" r="18" fill="#fff" opacity=".9"/>'
            '<rect x="20" y="62" width="56" height="30" rx="15" fill="#fff" opacity=".9"/></svg>'
        )
        return Response(200, svg.encode(), [("Content-Type", "image/svg+xml"), ("Cache-Control", "max-age=3600")])

    def _basic_client(self, request: Request) -> OAuthClient | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
        except ValueError:
            return None
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or client_id != request.params.get("client_id") or not secrets.compare_digest(client.client_secret, secret):
            return None
        return client

    def live_tokens(self, login: str) -> int:
        """How many tokens of this user still work (for tests of revocation)."""
        with self._lock:
            return sum(1 for token in self._tokens.values() if token.user_login == login)

    def delete_grant(self, request: Request) -> Response:
        return self._revoke(request, whole_grant=True)

    def delete_token(self, request: Request) -> Response:
        return self._revoke(request, whole_grant=False)

    def _revoke(self, request: Request, *, whole_grant: bool) -> Response:
        client = self._basic_client(request)
        if client is None:
            return json_response({"message": "Not Found", "documentation_url": DOCS + "/rest", "status": "404"}, 404)
        data = request.json()
        access_token = data.get("access_token") if isinstance(data, dict) else None
        with self._lock:
            token = self._tokens.get(access_token or "")
            if token is None or token.client_id != client.client_id:
                return json_response({"message": "Not Found", "status": "404"}, 404)
            if whole_grant:
                for key in [k for k, t in self._tokens.items() if t.client_id == client.client_id and t.user_login == token.user_login]:
                    del self._tokens[key]
            else:
                del self._tokens[access_token]
        return Response(204)


def _redirect_allowed(redirect_uri: str, callback_url: str | None) -> bool:
    """GitHub's rule: same scheme, host and port as the callback URL, path equal to or below it."""
    target = urlsplit(redirect_uri)
    if target.scheme not in ("http", "https") or not target.netloc:
        return False
    if callback_url is None:
        return True
    registered = urlsplit(callback_url)
    base = registered.path.rstrip("/")
    return (target.scheme, target.netloc) == (registered.scheme, registered.netloc) and (
        target.path == registered.path or target.path.startswith(base + "/")
    )


def _token_error(request: Request, error: str, description: str) -> Response:
    anchor = error.replace("_", "-")
    body = {"error": error, "error_description": description, "error_uri": DOCS + _TOKEN_ERRORS + "#" + anchor}
    if request.wants_json():
        return json_response(body)
    return Response(200, urlencode(body).encode(), [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")])


def _form_or_json(request: Request, body: dict, status: int = 200) -> Response:
    if request.wants_json():
        return json_response(body, status)
    return Response(status, urlencode(body).encode(), [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")])


def _device_error(request: Request, error: str, *, status: int = 200, **extra) -> Response:
    """A device-flow token error as GitHub sends it: HTTP 200 with error, error_description, error_uri."""
    body = {
        "error": error,
        "error_description": _DEVICE_ERROR_TEXT.get(error, error.replace("_", " ").capitalize() + "."),
        "error_uri": DOCS + _DEVICE_ERRORS,
        **extra,
    }
    return _form_or_json(request, body, status)


def _repo_json(user: User, spec: dict, base: str) -> dict:
    """A repository as GitHub's REST API renders it (the fields our clients and most others read)."""
    owner = {
        "login": user.login, "id": user.id, "type": "User", "site_admin": False,
        "avatar_url": f"{base}/avatars/u/{user.id}?v=4", "html_url": f"{base}/{user.login}",
    }
    full_name = f"{user.login}/{spec['name']}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(spec["created"]))
    return {
        "id": spec["id"],
        "node_id": base64.b64encode(f"010:Repository{spec['id']}".encode()).decode(),
        "name": spec["name"],
        "full_name": full_name,
        "private": spec["private"],
        "visibility": "private" if spec["private"] else "public",
        "owner": owner,
        "html_url": f"{base}/{full_name}",
        "description": spec["description"],
        "fork": spec["fork"],
        "url": f"{base}/repos/{full_name}",
        "clone_url": f"{base}/{full_name}.git",
        "ssh_url": f"git@sandbox.github.test:{full_name}.git",
        "default_branch": spec["default_branch"],
        "language": spec["language"],
        "archived": False,
        "disabled": False,
        "stargazers_count": spec["stargazers_count"],
        "created_at": stamp,
        "updated_at": stamp,
        "pushed_at": stamp,
        "permissions": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
    }


def _sorted(repos: list[dict], sort: str, direction: str | None) -> list[dict]:
    """GitHub's ordering of /user/repos: ``sort`` full_name (default, ascending) or created, updated or
    pushed (descending unless ``direction`` says otherwise)."""
    field = {"created": "created_at", "updated": "updated_at", "pushed": "pushed_at"}.get(sort)
    if field is None:
        ordered = sorted(repos, key=lambda r: r["full_name"].lower())
        return ordered[::-1] if direction == "desc" else ordered
    ordered = sorted(repos, key=lambda r: (r[field], r["id"]))
    return ordered if direction == "asc" else ordered[::-1]


def _link_header(url: str, query: dict[str, list[str]], page_no: int, per_page: int, last: int) -> str:
    def link(n: int, rel: str) -> str:
        params = {k: v[0] for k, v in query.items() if v and k not in ("page", "per_page")}
        params.update(page=str(n), per_page=str(per_page))
        return f'<{url}?{urlencode(params)}>; rel="{rel}"'

    links = []
    if page_no > 1:
        links += [link(page_no - 1, "prev"), link(1, "first")]
    if page_no < last:
        links += [link(page_no + 1, "next"), link(last, "last")]
    return ", ".join(links)
