"""GitHub's repository API with the user's own token (docs.github.com/rest/repos/repos):
``GET /user/repos`` (paged, ``Link`` header) and ``GET /repos/{owner}/{repo}``.

Every call is a GET, so transient failures (network, 5xx, 429, a rate-limit 403) are retried with
backoff and then become ``DependencyUnavailable``; a 401 is ``Conflict GITHUB_TOKEN_INVALID``. The token
never reaches a message, a log line or an exception.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import httpx

from relay_cloud.domain.errors import Conflict, DependencyUnavailable
from relay_cloud.domain.repos import GithubRepo, GithubRepoPage

USER_AGENT = "agent-relay-cloud"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
API_VERSION = "2022-11-28"


def _repo(data: dict) -> GithubRepo | None:
    """A repository from GitHub's JSON, or None when it lacks what we need."""
    try:
        owner = data.get("owner") or {}
        return GithubRepo(
            github_id=int(data["id"]),
            full_name=str(data["full_name"]),
            name=str(data["name"]),
            owner=str(owner.get("login") or str(data["full_name"]).partition("/")[0]),
            private=bool(data.get("private")),
            default_branch=str(data.get("default_branch") or "main"),
            html_url=data.get("html_url") if isinstance(data.get("html_url"), str) else None,
            description=str(data["description"])[:500] if data.get("description") else None,
            language=str(data["language"])[:64] if data.get("language") else None,
            updated_at=str(data["updated_at"]) if data.get("updated_at") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class GithubRepos:
    def __init__(self, *, api_url: str, timeout: float = 10.0, transport: httpx.BaseTransport | None = None,
                 retries: int = 2, backoff_s: float = 0.2):
        self.api_url = api_url.rstrip("/")
        self._retries = retries
        self._backoff_s = backoff_s
        # Renamed repositories answer 301 to their new URL; httpx drops the Authorization header on a
        # redirect to another origin.
        self._http = httpx.Client(timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT},
                                  follow_redirects=True, max_redirects=3)

    def list_repos(self, token: str, *, page: int, per_page: int) -> GithubRepoPage:
        response = self._get("/user/repos", token, params={"sort": "updated", "page": page, "per_page": per_page})
        if response.status_code != 200:
            raise DependencyUnavailable("GitHub answered unexpectedly", code="UPSTREAM_UNAVAILABLE")
        body = self._json(response)
        if not isinstance(body, list):
            raise DependencyUnavailable("GitHub answered unexpectedly", code="UPSTREAM_UNAVAILABLE")
        repos = tuple(repo for repo in (_repo(item) for item in body if isinstance(item, dict)) if repo)
        return GithubRepoPage(repos=repos, has_next="next" in response.links)

    def get_repo(self, token: str, owner: str, name: str) -> GithubRepo | None:
        """The repository if the token can see it; None when GitHub says it does not exist for this token
        (404, or a 403 such as an organization's SSO enforcement)."""
        response = self._get(f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}", token)
        if response.status_code in (403, 404):
            return None
        if response.status_code != 200:
            raise DependencyUnavailable("GitHub answered unexpectedly", code="UPSTREAM_UNAVAILABLE")
        body = self._json(response)
        repo = _repo(body) if isinstance(body, dict) else None
        if repo is None:
            raise DependencyUnavailable("GitHub answered unexpectedly", code="UPSTREAM_UNAVAILABLE")
        return repo

    @staticmethod
    def _json(response: httpx.Response):
        try:
            return response.json()
        except ValueError:
            raise DependencyUnavailable("GitHub answered unexpectedly", code="UPSTREAM_UNAVAILABLE") from None

    def _get(self, path: str, token: str, params: dict | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": API_VERSION}
        response = None
        for attempt in range(self._retries + 1):
            try:
                response = self._http.get(f"{self.api_url}{path}", params=params, headers=headers)
            except httpx.HTTPError:
                response = None
            if response is not None and not _transient(response):
                break
            if attempt < self._retries:
                time.sleep(self._backoff_s * (2**attempt))
        if response is None or _transient(response):
            raise DependencyUnavailable("GitHub is unavailable, please retry", code="UPSTREAM_UNAVAILABLE")
        if response.status_code == 401:
            raise Conflict("GitHub rejected your token; reconnect GitHub", code="GITHUB_TOKEN_INVALID")
        return response


def _transient(response: httpx.Response) -> bool:
    """5xx, 429, and the 403 GitHub sends when a rate limit is exhausted."""
    if response.status_code in RETRYABLE_STATUS:
        return True
    return response.status_code == 403 and response.headers.get("x-ratelimit-remaining") == "0"
