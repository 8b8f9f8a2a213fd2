"""Providers' upstream APIs over httpx: API-key validation (a model list, never a completion), RFC 8628
device authorization and token polling, token refresh, revocation and account identity.

Every failure is translated: a rejected credential is a ``ValidationFailed`` (or a permanent refresh
error), an unreachable or overloaded upstream is ``UpstreamUnavailable`` (retryable). Token values
never appear in an exception or a log line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx

from relay_cloud.domain.errors import DependencyUnavailable, ValidationFailed
from relay_cloud.domain.providers import ProviderSpec

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "agent-relay-cloud"


class UpstreamUnavailable(DependencyUnavailable):
    """Network error, 429 or 5xx: worth retrying with backoff. Its class name is the error the
    device-flow workflow's Retry matches on."""

    def __init__(self, provider: str):
        super().__init__(f"{provider} could not be reached", code="UPSTREAM_UNAVAILABLE", provider=provider)


class PermanentRefreshError(Exception):
    """The provider refused the refresh token for good (invalid_grant, revoked, unauthorized client)."""

    def __init__(self, reason: str, *, revoked: bool):
        super().__init__(reason)
        self.reason = reason
        self.revoked = revoked


@dataclass(frozen=True)
class TokenSet:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_in: int | None = None
    scope: str | None = None
    token_type: str = "bearer"

    def secret_payload(self) -> dict:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": self.token_type, "scope": self.scope}


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str = field(repr=False)
    user_code: str = ""
    verification_uri: str = ""
    verification_uri_complete: str | None = None
    expires_in: int = 900
    interval: int = 5


@dataclass(frozen=True)
class PollResult:
    outcome: str  # tokens | pending | slow_down | denied | expired | error
    tokens: TokenSet | None = None
    interval: int | None = None
    error: str | None = None


class ProviderClient:
    def __init__(self, *, github_api_url: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
                 retries: int = 2, backoff_s: float = 0.2):
        self._github_api_url = github_api_url.rstrip("/")
        self._retries, self._backoff_s = retries, backoff_s
        self._http = httpx.Client(timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT},
                                  follow_redirects=False)

    # -- API keys ------------------------------------------------------------------------------

    def validate_api_key(self, spec: ProviderSpec, api_key: str) -> None:
        """One model-list call: free, proves the key works, never bills the user."""
        if spec.key_check == "anthropic":
            request = ("GET", f"{spec.api_url}/v1/models", {"x-api-key": api_key, "anthropic-version": "2023-06-01"},
                       {"limit": "1"})
        elif spec.key_check == "openai":
            request = ("GET", f"{spec.api_url}/v1/models", {"Authorization": f"Bearer {api_key}"}, {})
        elif spec.key_check == "google":
            request = ("GET", f"{spec.api_url}/v1beta/models", {"x-goog-api-key": api_key}, {"pageSize": "1"})
        else:
            raise ValidationFailed(f"{spec.display_name} has no API-key check", code="METHOD_NOT_ALLOWED")
        method, url, headers, params = request
        response = self._idempotent(spec, method, url, headers=headers, params=params)
        if response.status_code == 200:
            return
        if response.status_code in (401, 403) or (spec.key_check == "google" and response.status_code == 400):
            raise ValidationFailed(f"{spec.display_name} rejected this API key", code="INVALID_CREDENTIAL",
                                   provider=spec.id)
        raise UpstreamUnavailable(spec.id)

    # -- RFC 8628 device flow ------------------------------------------------------------------

    def start_device_authorization(self, spec: ProviderSpec) -> DeviceAuthorization:
        data = {"client_id": spec.client_id or "", "scope": " ".join(spec.scopes)}
        if spec.client_secret and spec.token_style != "github":  # confidential client (RFC 6749 §2.3.1)
            data["client_secret"] = spec.client_secret
        response = self._post(spec, spec.device_authorization_url, data)
        body = _json(response)
        if response.status_code != 200 or "device_code" not in body:
            if response.status_code >= 500 or response.status_code == 429:
                raise UpstreamUnavailable(spec.id)
            raise ValidationFailed(f"{spec.display_name} refused to start a device authorization",
                                   code="DEVICE_FLOW_UNAVAILABLE", upstream_error=str(body.get("error", ""))[:64])
        return DeviceAuthorization(
            device_code=body["device_code"], user_code=body["user_code"], verification_uri=body["verification_uri"],
            verification_uri_complete=body.get("verification_uri_complete"),
            expires_in=int(body.get("expires_in", 900)), interval=int(body.get("interval", 5)),
        )

    def poll_device_token(self, spec: ProviderSpec, device_code: str) -> PollResult:
        """One poll of the token endpoint (RFC 8628 §3.4-3.5). Never retried here: the workflow waits."""
        data = {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": spec.client_id or ""}
        if spec.client_secret and spec.token_style != "github":
            data["client_secret"] = spec.client_secret
        response = self._post(spec, spec.token_url, data)
        if response.status_code >= 500 or response.status_code == 429:
            raise UpstreamUnavailable(spec.id)
        body = _json(response)
        if response.status_code == 200 and body.get("access_token"):
            return PollResult("tokens", tokens=_token_set(body))
        error = str(body.get("error") or f"http_{response.status_code}")
        interval = int(body["interval"]) if str(body.get("interval", "")).isdigit() else None
        outcome = {"authorization_pending": "pending", "slow_down": "slow_down", "access_denied": "denied",
                   "expired_token": "expired"}.get(error, "error")
        return PollResult(outcome, interval=interval, error=None if outcome != "error" else error[:64])

    # -- refresh, revoke, identity -------------------------------------------------------------

    def refresh(self, spec: ProviderSpec, refresh_token: str) -> TokenSet:
        data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": spec.client_id or ""}
        if spec.client_secret:
            data["client_secret"] = spec.client_secret
        response = self._post(spec, spec.token_url, data)
        if response.status_code >= 500 or response.status_code == 429:
            raise UpstreamUnavailable(spec.id)
        body = _json(response)
        if response.status_code == 200 and body.get("access_token"):
            return _token_set(body)
        error = str(body.get("error") or f"http_{response.status_code}")[:64]
        description = str(body.get("error_description") or "")[:120]
        reason = f"{error}: {description}" if description else error
        raise PermanentRefreshError(reason, revoked=error in ("invalid_grant", "unauthorized_client", "bad_refresh_token"))

    def revoke(self, spec: ProviderSpec, tokens: dict) -> bool:
        """Best effort: True when the provider confirmed. A provider without revocation returns False."""
        try:
            if spec.token_style == "github" and spec.revoke_url and spec.client_secret:
                response = self._http.request(
                    "DELETE", spec.revoke_url, json={"access_token": tokens.get("access_token")},
                    auth=(spec.client_id or "", spec.client_secret), headers={"Accept": "application/vnd.github+json"},
                )
                return response.status_code in (204, 404)
            if spec.revoke_url:
                ok = True
                for hint in ("refresh_token", "access_token"):
                    if tokens.get(hint):
                        data = {"token": tokens[hint], "token_type_hint": hint, "client_id": spec.client_id or ""}
                        if spec.client_secret:
                            data["client_secret"] = spec.client_secret
                        ok = self._http.post(spec.revoke_url, data=data).status_code == 200 and ok
                return ok
        except httpx.HTTPError:
            return False
        return False

    def identity(self, spec: ProviderSpec, access_token: str) -> str | None:
        """The account the token belongs to (a login or an email), or None when it cannot be told."""
        if spec.token_style == "github":
            url, headers = f"{self._github_api_url}/user", {"Accept": "application/vnd.github+json"}
        elif spec.userinfo_url:
            url, headers = spec.userinfo_url, {"Accept": "application/json"}
        else:
            return None
        headers["Authorization"] = f"Bearer {access_token}"
        try:
            response = self._idempotent(spec, "GET", url, headers=headers)
        except UpstreamUnavailable:
            return None
        if response.status_code != 200:
            return None
        body = _json(response)
        account = body.get("login") or body.get("preferred_username") or body.get("email") or body.get("sub")
        return str(account)[:200] if account else None

    # -- transport -----------------------------------------------------------------------------

    def _post(self, spec: ProviderSpec, url: str | None, data: dict) -> httpx.Response:
        if not url:
            raise ValidationFailed(f"{spec.display_name} has no such endpoint configured", code="METHOD_NOT_ALLOWED")
        try:
            return self._http.post(url, data=data, headers={"Accept": "application/json"})
        except httpx.HTTPError:
            raise UpstreamUnavailable(spec.id) from None

    def _idempotent(self, spec: ProviderSpec, method: str, url: str, **kwargs) -> httpx.Response:
        response = None
        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code not in RETRYABLE_STATUS:
                return response
            if attempt < self._retries:
                time.sleep(self._backoff_s * (2**attempt))
        raise UpstreamUnavailable(spec.id)


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _token_set(body: dict) -> TokenSet:
    expires_in = body.get("expires_in")
    return TokenSet(
        access_token=str(body["access_token"]),
        refresh_token=body.get("refresh_token"),
        expires_in=int(expires_in) if str(expires_in or "").isdigit() else None,
        scope=body.get("scope"),
        token_type=str(body.get("token_type", "bearer")),
    )
