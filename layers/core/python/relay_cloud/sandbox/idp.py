"""A generic OAuth 2.0 / OpenID Connect provider for admin-configured custom providers (SPEC C2, §5).

Standards it follows:
    GET  /.well-known/openid-configuration   OpenID Connect Discovery 1.0 (the endpoints below)
    POST /oauth/device_authorization         RFC 8628 §3.1-3.2: client_id, scope → device_code, user_code,
                                              verification_uri (<base>/device), verification_uri_complete
                                              (<base>/device?user_code=...), expires_in, interval
    POST /oauth/token                        grant_type=urn:ietf:params:oauth:grant-type:device_code
                                              (RFC 8628 §3.4-3.5) or refresh_token (RFC 6749 §6)
                                              → access_token, token_type=Bearer, expires_in, refresh_token, scope
    POST /oauth/revoke                       RFC 7009: token, token_type_hint → 200 (also for unknown tokens)
    GET|POST /userinfo                       OIDC Core §5.3 with a Bearer access token (RFC 6750 errors)
    GET  /device                             the human page: enter the user code and a login

Errors are RFC 6749 §5.2 JSON ``{"error", "error_description"}`` with HTTP 400 (``invalid_client``: 401
with ``WWW-Authenticate`` when the client tried HTTP Basic, as §5.2 requires). Clients authenticate with
``client_secret_basic`` or ``client_secret_post`` (not both at once); a client registered without a secret
is public and sends only ``client_id``.

Refresh tokens ROTATE and are single-use. Every token descends from one device authorization, its
*family*. Presenting a refresh token that was already used is treated as theft (OAuth 2.0 Security BCP
§4.14): the answer is ``invalid_grant`` and the whole family is revoked, every access and refresh token
in it. Unknown, expired, revoked or another client's refresh tokens are ``invalid_grant`` too. Revoking a
refresh token (RFC 7009 §2.1) revokes its family; revoking an access token revokes only that token.
Access tokens expire after ``access_token_ttl`` seconds (``expires_in``); refresh tokens do not expire.

Sandbox control surface (never faulted):
    POST /device/approve, /device/deny   {"user_code", "login"}: decide a pending device authorization
                                          (approve creates the user if new)
    GET|POST /_config                     {"access_token_ttl", "device_interval", "device_expires_in"}
                                          (seconds; defaults 3600, 5, 900)
    GET /_stats, DELETE /_stats           {"token_requests", "refresh_grants", "refresh_reuse_detected",
                                          "families_revoked", ...}: counters, and their reset
    POST /_faults {"oauth_error": "slow_down", ...}   answers HTTP 400 {"error": "slow_down"}
Everything lives in memory behind one lock; ``clock`` is injectable (tests move time with it).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from relay_cloud.sandbox import device
from relay_cloud.sandbox.base import Request, Response, Sandbox, json_response, update_settings

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_GRANT = "refresh_token"
DEFAULT_SETTINGS = {"access_token_ttl": 3600, "device_interval": 5, "device_expires_in": 900}
SUPPORTED_SCOPES = ("openid", "profile", "email", "offline_access")
_NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
_ERROR_TEXT = {
    "authorization_pending": "The user has not yet approved the device.",
    "slow_down": "Polling too fast: wait 5 seconds more between requests.",
    "access_denied": "The user denied the authorization request.",
    "expired_token": "The device_code has expired.",
    "invalid_client": "Client authentication failed.",
    "invalid_grant": "The grant is invalid, expired, revoked or was already used.",
    "invalid_request": "The request is missing a required parameter or is malformed.",
    "invalid_scope": "The requested scope exceeds the scope granted.",
    "unsupported_grant_type": "The grant type is not supported by this server.",
}


@dataclass
class Client:
    client_id: str
    client_secret: str | None  # None: a public client


@dataclass
class User:
    sub: str
    login: str
    name: str

    @property
    def email(self) -> str:
        return f"{self.login.lower()}@idp.sandbox.test"


@dataclass
class Family:
    id: str
    client_id: str
    login: str
    scope: str
    revoked: bool = False
    access_tokens: set[str] = field(default_factory=set)
    refresh_tokens: set[str] = field(default_factory=set)


@dataclass
class AccessToken:
    family_id: str
    expires_at: float
    revoked: bool = False


@dataclass
class RefreshToken:
    family_id: str
    used: bool = False
    revoked: bool = False


def _valid_login(login: str) -> bool:
    return 0 < len(login) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_.") for c in login)


class IdpSandbox(device.DeviceApproval, Sandbox):
    name = "idp"
    device_title = "Device activation (sandbox OIDC)"
    device_path = "/device"
    valid_login = staticmethod(_valid_login)

    def __init__(self, base_url: str = "", *, clock=time.time) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self._lock = threading.Lock()
        self.settings = dict(DEFAULT_SETTINGS)
        self.devices = device.DeviceStore()
        self._clients: dict[str, Client] = {}
        self._users: dict[str, User] = {}
        self._families: dict[str, Family] = {}
        self._access: dict[str, AccessToken] = {}
        self._refresh: dict[str, RefreshToken] = {}
        self._stats = self._zero_stats()
        self.route("GET", "/.well-known/openid-configuration", self.discovery)
        self.route("GET", "/jwks", self.jwks)
        self.route("POST", "/oauth/device_authorization", self.device_authorization)
        self.route("POST", "/oauth/token", self.token)
        self.route("POST", "/oauth/revoke", self.revoke)
        self.route("GET", "/userinfo", self.userinfo)
        self.route("POST", "/userinfo", self.userinfo)
        self.route("GET", "/device", self.device_page)
        self.route("POST", "/device", self.device_page_submit)
        self.route("POST", "/device/approve", self.device_approve, control=True)
        self.route("POST", "/device/deny", self.device_deny, control=True)
        self.route("GET", "/_config", self.get_config)
        self.route("POST", "/_config", self.set_config)
        self.route("GET", "/_stats", self.get_stats)
        self.route("DELETE", "/_stats", self.reset_stats)

    # -- state --------------------------------------------------------------------------------------

    @staticmethod
    def _zero_stats() -> dict[str, int]:
        return {
            "token_requests": 0,  # every POST /oauth/token, whatever the grant and outcome
            "device_grants": 0,  # device codes exchanged for tokens
            "refresh_requests": 0,  # every refresh_token grant request
            "refresh_grants": 0,  # successful refreshes (rotations)
            "refresh_reuse_detected": 0,  # an already-used refresh token was presented
            "families_revoked": 0,  # token families revoked (reuse detection or RFC 7009)
            "revocations": 0,  # POST /oauth/revoke requests from authenticated clients
            "userinfo_requests": 0,
        }

    def register_client(self, client_id: str, client_secret: str | None) -> None:
        with self._lock:
            self._clients[client_id] = Client(client_id, client_secret)

    def ensure_user(self, login: str) -> User:
        key = login.lower()
        with self._lock:
            user = self._users.get(key)
            if user is None:
                sub = hashlib.sha256(f"idp-sandbox:{key}".encode()).hexdigest()[:24]
                name = " ".join(p.capitalize() for p in login.replace("_", "-").replace(".", "-").split("-") if p)
                user = User(sub, login, name or login)
                self._users[key] = user
            return user

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def _base(self, request: Request) -> str:
        return self.base_url or request.base_url

    # -- discovery ----------------------------------------------------------------------------------

    def discovery(self, request: Request) -> Response:
        base = self._base(request)
        return json_response({
            "issuer": base,
            "device_authorization_endpoint": f"{base}/oauth/device_authorization",
            "token_endpoint": f"{base}/oauth/token",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "scopes_supported": list(SUPPORTED_SCOPES),
            "grant_types_supported": [DEVICE_GRANT, REFRESH_GRANT],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "preferred_username", "name", "email", "email_verified"],
        })

    def jwks(self, _request: Request) -> Response:
        return json_response({"keys": []})  # no ID tokens are issued

    # -- client authentication ------------------------------------------------------------------------

    def _client(self, request: Request, params: dict[str, str]) -> Client | Response:
        """RFC 6749 §2.3: HTTP Basic (client_secret_basic) or body parameters (client_secret_post)."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        basic = scheme.lower() == "basic"
        if basic:
            if "client_secret" in params:
                return _error("invalid_request", "Use one client authentication method, not two.")
            try:
                raw_id, sep, raw_secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except ValueError:
                return _invalid_client(basic=True)
            if not sep:
                return _invalid_client(basic=True)
            client_id, secret = unquote(raw_id), unquote(raw_secret)  # §2.3.1: form-urlencoded first
            if params.get("client_id") not in (None, client_id):
                return _error("invalid_request", "client_id does not match the authenticated client.")
        else:
            client_id, secret = params.get("client_id", ""), params.get("client_secret")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None:
            return _invalid_client(basic=basic)
        if client.client_secret is None:
            return client if not secret else _invalid_client(basic=basic)
        if secret is None or not secrets.compare_digest(client.client_secret, secret):
            return _invalid_client(basic=basic)
        return client

    # -- device authorization -----------------------------------------------------------------------

    def device_authorization(self, request: Request) -> Response:
        params = request.form()
        client = self._client(request, params)
        if isinstance(client, Response):
            return client
        scopes = (params.get("scope") or "").split()
        unknown = [s for s in scopes if s not in SUPPORTED_SCOPES]
        if unknown:
            return _error("invalid_scope", f"Unsupported scope: {' '.join(unknown)}")
        with self._lock:
            interval, expires_in = self.settings["device_interval"], self.settings["device_expires_in"]
        auth = self.devices.start(client.client_id, " ".join(dict.fromkeys(scopes)), now=self.clock(),
                                  expires_in=expires_in, interval=interval, device_code=secrets.token_urlsafe(32))
        base = self._base(request)
        return json_response({
            "device_code": auth.device_code,
            "user_code": auth.user_code,
            "verification_uri": f"{base}/device",
            "verification_uri_complete": f"{base}/device?user_code={quote(auth.user_code)}",
            "expires_in": expires_in,
            "interval": interval,
        }, headers=_NO_STORE)

    # -- token endpoint -----------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        with self._lock:
            self._stats["token_requests"] += 1
        params = request.form()
        client = self._client(request, params)
        if isinstance(client, Response):
            return client
        grant_type = params.get("grant_type")
        if not grant_type:
            return _error("invalid_request", "grant_type is required.")
        if grant_type == DEVICE_GRANT:
            return self._device_grant(client, params)
        if grant_type == REFRESH_GRANT:
            return self._refresh_grant(client, params)
        return _error("unsupported_grant_type")

    def _device_grant(self, client: Client, params: dict[str, str]) -> Response:
        if not params.get("device_code"):
            return _error("invalid_request", "device_code is required.")
        outcome, auth = self.devices.poll(params["device_code"], client.client_id, self.clock())
        if outcome == device.APPROVED:
            self.ensure_user(auth.login)
            with self._lock:
                self._stats["device_grants"] += 1
                family = Family(secrets.token_hex(8), client.client_id, auth.login, auth.scope)
                self._families[family.id] = family
                return self._issue(family)
        error = {
            device.PENDING: "authorization_pending",
            device.SLOW_DOWN: "slow_down",
            device.DENIED: "access_denied",
            device.EXPIRED: "expired_token",
        }.get(outcome, "invalid_grant")  # unknown, another client's, or already exchanged
        return _error(error)

    def _issue(self, family: Family) -> Response:
        """New access + refresh tokens in ``family`` (call with the lock held)."""
        ttl = self.settings["access_token_ttl"]
        access, refresh = "idp_at_" + secrets.token_urlsafe(32), "idp_rt_" + secrets.token_urlsafe(32)
        self._access[access] = AccessToken(family.id, self.clock() + ttl)
        self._refresh[refresh] = RefreshToken(family.id)
        family.access_tokens.add(access)
        family.refresh_tokens.add(refresh)
        return json_response({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "scope": family.scope,
        }, headers=_NO_STORE)

    def _revoke_family(self, family: Family) -> None:
        """Revoke every token of ``family`` (call with the lock held)."""
        if family.revoked:
            return
        family.revoked = True
        self._stats["families_revoked"] += 1
        for token in family.access_tokens:
            self._access[token].revoked = True
        for token in family.refresh_tokens:
            self._refresh[token].revoked = True

    def _refresh_grant(self, client: Client, params: dict[str, str]) -> Response:
        presented = params.get("refresh_token")
        if not presented:
            return _error("invalid_request", "refresh_token is required.")
        with self._lock:
            self._stats["refresh_requests"] += 1
            record = self._refresh.get(presented)
            family = self._families.get(record.family_id) if record else None
            if record is None or family is None or family.client_id != client.client_id:
                return _error("invalid_grant")
            if record.used:
                # Reuse of a rotated refresh token: someone holds a stolen copy. Kill the family.
                self._stats["refresh_reuse_detected"] += 1
                self._revoke_family(family)
                return _error("invalid_grant", "The refresh token was already used; the grant has been revoked.")
            if record.revoked or family.revoked:
                return _error("invalid_grant")
            requested = (params.get("scope") or "").split()
            if requested and not set(requested) <= set(family.scope.split()):
                return _error("invalid_scope")
            record.used = True
            self._stats["refresh_grants"] += 1
            return self._issue(family)

    # -- revocation ---------------------------------------------------------------------------------

    def revoke(self, request: Request) -> Response:
        params = request.form()
        client = self._client(request, params)
        if isinstance(client, Response):
            return client
        token = params.get("token")
        if not token:
            return _error("invalid_request", "token is required.")
        hint = params.get("token_type_hint")
        if hint not in (None, "", "access_token", "refresh_token"):
            return _error("unsupported_token_type", "token_type_hint must be access_token or refresh_token.")
        with self._lock:
            self._stats["revocations"] += 1
            # The hint only orders the lookup (RFC 7009 §2.1); both kinds are searched.
            refresh = self._refresh.get(token)
            access = self._access.get(token)
            if refresh is not None:
                family = self._families[refresh.family_id]
                if family.client_id == client.client_id:
                    self._revoke_family(family)  # §2.1: revoking a refresh token ends its grant
            elif access is not None:
                family = self._families[access.family_id]
                if family.client_id == client.client_id:
                    access.revoked = True
        return Response(200, b"", list(_NO_STORE))

    # -- userinfo -----------------------------------------------------------------------------------

    def userinfo(self, request: Request) -> Response:
        with self._lock:
            self._stats["userinfo_requests"] += 1
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return Response(401, b"", [("WWW-Authenticate", 'Bearer realm="sandbox-idp"')])
        with self._lock:
            token = self._access.get(value.strip())
            family = self._families.get(token.family_id) if token else None
            valid = (token is not None and family is not None and not token.revoked and not family.revoked
                     and token.expires_at > self.clock())
        if not valid:
            return json_response(
                {"error": "invalid_token", "error_description": "The access token is invalid, expired or revoked."},
                401,
                [("WWW-Authenticate", 'Bearer realm="sandbox-idp", error="invalid_token", '
                                      'error_description="The access token is invalid, expired or revoked"')],
            )
        user = self.ensure_user(family.login)
        scopes = set(family.scope.split())
        claims: dict = {"sub": user.sub}
        if "profile" in scopes:
            claims |= {"preferred_username": user.login, "name": user.name}
        if "email" in scopes:
            claims |= {"email": user.email, "email_verified": True}
        return json_response(claims, headers=[("Cache-Control", "no-store")])

    # -- device approval: human page and control surface ---------------------------------------------

    def get_config(self, _request: Request) -> Response:
        with self._lock:
            return json_response(dict(self.settings))

    def set_config(self, request: Request) -> Response:
        return update_settings(request, self.settings, self._lock)

    def get_stats(self, _request: Request) -> Response:
        return json_response(self.stats())

    def reset_stats(self, _request: Request) -> Response:
        with self._lock:
            self._stats = self._zero_stats()
        return Response(204)

    def oauth_error_response(self, request: Request, error: str, status: int | None) -> Response:
        if error == "slow_down" and request.path == "/oauth/token":
            self.devices.slow_down(request.form().get("device_code"), self.clock())  # the client adds 5 s; so does the server
        return _error(error, status=status or 400)


def _error(error: str, description: str | None = None, *, status: int = 400) -> Response:
    body = {"error": error, "error_description": description or _ERROR_TEXT.get(error, error.replace("_", " "))}
    return json_response(body, status, list(_NO_STORE))


def _invalid_client(*, basic: bool) -> Response:
    if basic:
        return json_response({"error": "invalid_client", "error_description": _ERROR_TEXT["invalid_client"]}, 401,
                             [*_NO_STORE, ("WWW-Authenticate", 'Basic realm="sandbox-idp"')])
    return _error("invalid_client")
