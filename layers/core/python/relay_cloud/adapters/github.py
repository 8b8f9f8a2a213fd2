"""GitHub OAuth web flow and the user API, over httpx (base URLs configurable: that is how the sandbox
and tests plug in). Upstream failures are translated into typed errors; no token ever reaches a message."""

from __future__ import annotations

import time

import httpx

from relay_cloud.domain.auth import GithubProfile
from relay_cloud.domain.errors import DependencyUnavailable, ValidationFailed

SIGN_IN_SCOPES = "read:user user:email"  # identity only; repository access is a separate, explicit grant
USER_AGENT = "agent-relay-cloud"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class GithubOAuth:
    def __init__(self, *, oauth_url: str, api_url: str, client_id: str, client_secret: str, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None, retries: int = 2, backoff_s: float = 0.2):
        self.oauth_url = oauth_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self._retries = retries
        self._backoff_s = backoff_s
        self._http = httpx.Client(
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def authorize_url(self, *, state: str, code_challenge: str, redirect_uri: str) -> str:
        query = httpx.QueryParams(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            scope=SIGN_IN_SCOPES,
            state=state,
            code_challenge=code_challenge,
            code_challenge_method="S256",
            allow_signup="true",
        )
        return f"{self.oauth_url}/login/oauth/authorize?{query}"

    def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> str:
        """The access token for a one-time code. Never retried: the code is single-use."""
        try:
            response = self._http.post(
                f"{self.oauth_url}/login/oauth/access_token",
                data={
                    "client_id": self.client_id,
                    "client_secret": self._client_secret,
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": code_verifier,
                },
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError:
            raise DependencyUnavailable("GitHub could not be reached", code="UPSTREAM_UNAVAILABLE") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise DependencyUnavailable("GitHub is unavailable", code="UPSTREAM_UNAVAILABLE")
        try:
            body = response.json()
        except ValueError:
            raise DependencyUnavailable("GitHub answered unexpectedly", code="UPSTREAM_UNAVAILABLE") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not token:
            # bad_verification_code, redirect_uri_mismatch, incorrect_client_credentials, ...
            error = body.get("error", "invalid") if isinstance(body, dict) else "invalid"
            raise ValidationFailed(
                "GitHub did not accept the sign-in code", code="OAUTH_CODE_INVALID", upstream_error=str(error)[:64]
            )
        return token

    def profile(self, token: str) -> GithubProfile:
        user = self._get_json("/user", token)
        email = user.get("email")
        emails = self._get_json("/user/emails", token)
        primary = next((e for e in emails if e.get("primary") and e.get("verified")), None)
        if primary is not None:
            email = primary["email"]
        elif not any(e.get("email") == email and e.get("verified") for e in emails):
            email = None  # never trust an unverified address
        return GithubProfile(
            github_id=int(user["id"]),
            login=str(user["login"]),
            name=user.get("name"),
            email=email,
            avatar_url=user.get("avatar_url"),
        )

    def revoke_grant(self, token: str) -> bool:
        """Revoke the user's whole authorization of our OAuth app (GitHub's DELETE
        /applications/{client_id}/grant); best effort: False when GitHub did not confirm."""
        try:
            response = self._http.request(
                "DELETE", f"{self.api_url}/applications/{self.client_id}/grant", json={"access_token": token},
                auth=(self.client_id, self._client_secret),
                headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
            )
        except httpx.HTTPError:
            return False
        return response.status_code in (204, 404)

    def _get_json(self, path: str, token: str):
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        for attempt in range(self._retries + 1):
            try:
                response = self._http.get(f"{self.api_url}{path}", headers=headers)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code not in RETRYABLE_STATUS:
                break
            if attempt < self._retries:
                time.sleep(self._backoff_s * (2**attempt))
        if response is None or response.status_code in RETRYABLE_STATUS:
            raise DependencyUnavailable("GitHub is unavailable", code="UPSTREAM_UNAVAILABLE")
        if response.status_code == 401:
            raise ValidationFailed("GitHub rejected the token", code="OAUTH_CODE_INVALID")
        if response.status_code != 200:
            raise DependencyUnavailable("GitHub answered unexpectedly", code="UPSTREAM_UNAVAILABLE")
        return response.json()
