"""Repositories (SPEC C5, C8; the contract is docs/design/repositories.md): list the user's GitHub
repositories, add one or many (checked on GitHub with the user's own token), remove; the plan's
repository limit is enforced by the repository adapter's transaction.

The GitHub token is opened from the vault per request (the vault audits every decrypt) and only handed
to the GitHub client: it is never logged, returned or put in an error.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from relay_cloud.domain.auth import Principal
from relay_cloud.domain.errors import Conflict, NotFound, ValidationFailed, VaultError
from relay_cloud.domain.plans import LimitReached, Plan, limit_exceeded
from relay_cloud.domain.repos import (
    ADDED,
    DEFAULT_PER_PAGE,
    EXISTS,
    INVALID,
    LIMIT_EXCEEDED,
    MAX_BULK,
    MAX_PAGE,
    MAX_PER_PAGE,
    NOT_FOUND,
    REPO_ID,
    RESOURCE,
    Repo,
    RepoExists,
    new_repo_id,
    parse_full_name,
)
from relay_cloud.services.plans import plan_of

GITHUB = "github"
CONNECTION_CREDENTIAL = "default"  # the github provider connection (device flow, repo scope)
SIGN_IN_CREDENTIAL = "sign-in"  # the sign-in token (read:user user:email: public repositories only)
SIGN_IN_PURPOSE = "oauth_access_token"
FROM_CONNECTION, FROM_SIGN_IN = "connection", "sign_in"


@dataclass
class RepoService:
    repos: object  # adapters.dynamo.repos.RepoRepository
    usage: object  # adapters.dynamo.usage.UsageRepository
    users: object  # the plan, and the sign-in token's ciphertext
    connections: object  # the github provider connection
    vault: object
    github: object  # adapters.github_repos.GithubRepos
    public_url: str
    audit: object = None
    clock: Callable[[], float] = time.time
    new_id: Callable[[], str] = new_repo_id

    def _now(self) -> int:
        return int(self.clock())

    # -- the GitHub token ------------------------------------------------------------------------

    def _token(self, user_id: str, reason: str) -> tuple[str, str]:
        """(token, source): the github provider connection when it is healthy, else the sign-in token."""
        from relay_cloud.adapters.vault import VaultContext

        item = self.connections.get(user_id, GITHUB)
        if item is not None and item.ciphertext is not None and item.status == "valid" and (
                item.token_expires_at is None or int(item.token_expires_at) > self._now()):
            try:
                secret = json.loads(self.vault.decrypt(VaultContext(user_id, GITHUB, CONNECTION_CREDENTIAL, item.purpose),
                                                       bytes(item.ciphertext), actor=user_id, reason=reason))
            except (VaultError, ValueError):
                secret = None
            token = secret.get("access_token") if isinstance(secret, dict) else None
            if isinstance(token, str) and token:
                return token, FROM_CONNECTION
        ciphertext = self.users.sign_in_ciphertext(user_id, GITHUB, SIGN_IN_CREDENTIAL)
        if ciphertext is not None:
            try:
                token = self.vault.decrypt(VaultContext(user_id, GITHUB, SIGN_IN_CREDENTIAL, SIGN_IN_PURPOSE),
                                           ciphertext, actor=user_id, reason=reason).decode()
            except (VaultError, UnicodeDecodeError):
                token = ""
            if token:
                return token, FROM_SIGN_IN
        raise Conflict("Connect GitHub to list and add repositories", code="GITHUB_NOT_CONNECTED")

    def _on_github(self, call, source: str):
        try:
            return call()
        except Conflict as exc:
            if exc.code == "GITHUB_TOKEN_INVALID":
                exc.details["token_source"] = source
            raise

    # -- listing ---------------------------------------------------------------------------------

    def list(self, principal: Principal) -> dict:
        plan = plan_of(self.users, principal.user_id)
        repos = self.repos.list(principal.user_id)
        return {
            "repositories": [repo.to_public() for repo in repos],
            "usage": {"used": len(repos), "limit": plan.limit(RESOURCE), "plan": plan.tier},
        }

    def github_repos(self, principal: Principal, params: dict) -> dict:
        page = _bounded_int(params.get("page"), "page", default=1, maximum=MAX_PAGE)
        per_page = _bounded_int(params.get("per_page"), "per_page", default=DEFAULT_PER_PAGE, maximum=MAX_PER_PAGE)
        token, source = self._token(principal.user_id, "list GitHub repositories")
        listed = self._on_github(lambda: self.github.list_repos(token, page=page, per_page=per_page), source)
        added = {repo.github_id: repo.repo_id for repo in self.repos.list(principal.user_id)}
        return {
            "repositories": [
                {**repo.to_public(), "added": repo.github_id in added, "repo_id": added.get(repo.github_id)}
                for repo in listed.repos
            ],
            "page": page,
            "per_page": per_page,
            "has_next": listed.has_next,
            "token_source": source,
        }

    # -- adding ----------------------------------------------------------------------------------

    def add(self, principal: Principal, body: dict) -> tuple[int, dict]:
        """(201, repo) when added, (200, repo) when the user had it already."""
        parsed = parse_full_name(body.get("full_name"))
        if parsed is None:
            raise ValidationFailed("full_name must be a GitHub repository as owner/name", code="INVALID_REPO_NAME",
                                   field="full_name")
        plan = plan_of(self.users, principal.user_id)
        token, source = self._token(principal.user_id, "add a repository")
        outcome, repo = self._add_one(principal.user_id, plan, token, source, parsed)
        if outcome == NOT_FOUND:
            raise NotFound("No such repository, or your GitHub account cannot see it", code="REPO_NOT_FOUND")
        if outcome == LIMIT_EXCEEDED:
            raise self._limit_error(principal.user_id, plan)
        return (201 if outcome == ADDED else 200), repo.to_public()

    def add_many(self, principal: Principal, body: dict) -> dict:
        names = body.get("full_names")
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_BULK or not all(isinstance(n, str) for n in names):
            raise ValidationFailed(f"full_names must be a list of 1 to {MAX_BULK} strings", code="VALIDATION_FAILED",
                                   field="full_names")
        user_id = principal.user_id
        plan = plan_of(self.users, user_id)
        have = self.repos.list(user_id)
        by_name = {repo.full_name.lower(): repo for repo in have}
        by_github_id = {repo.github_id: repo for repo in have}
        token: tuple[str, str] | None = None  # opened on the first name that needs GitHub
        limit_hit = False
        answered: dict[str, dict] = {}  # a name given twice answers like the first time
        results = []
        for raw in names:
            parsed = parse_full_name(raw)
            if parsed is None:
                results.append({"full_name": raw[:200], "status": INVALID})
                continue
            key = f"{parsed[0]}/{parsed[1]}".lower()
            if key in answered:
                first = answered[key]
                results.append({**first, "full_name": raw[:200],
                                "status": EXISTS if first["status"] in (ADDED, EXISTS) else first["status"]})
                continue
            if key in by_name:
                result = {"full_name": raw, "status": EXISTS, "repo": by_name[key].to_public()}
            elif limit_hit:
                result = {"full_name": raw, "status": LIMIT_EXCEEDED}
            else:
                if token is None:
                    token = self._token(user_id, "add repositories")
                outcome, repo = self._add_one(user_id, plan, token[0], token[1], parsed, known=by_github_id)
                limit_hit = outcome == LIMIT_EXCEEDED
                result = {"full_name": raw, "status": outcome}
                if repo is not None:
                    result["repo"] = repo.to_public()
                    by_github_id[repo.github_id] = repo
            answered[key] = result
            results.append(result)
        answer = {"results": results, "added": sum(1 for r in results if r["status"] == ADDED)}
        if limit_hit:
            answer["plan_limit"] = self._limit_error(user_id, plan).body()
        return answer

    def _add_one(self, user_id: str, plan: Plan, token: str, source: str, parsed: tuple[str, str], *,
                 known: dict | None = None) -> tuple[str, Repo | None]:
        """Look the repository up on GitHub with the user's token and add it: (outcome, repo)."""
        found = self._on_github(lambda: self.github.get_repo(token, *parsed), source)
        if found is None:
            return NOT_FOUND, None
        if known is not None and found.github_id in known:
            return EXISTS, known[found.github_id]
        existing = self._existing(user_id, found.github_id)
        if existing is not None:
            return EXISTS, existing
        repo = Repo.from_github(self.new_id(), user_id, found, added_at=self._now())
        try:
            self.repos.add(repo, limit=plan.limit(RESOURCE))
        except RepoExists as exc:  # a concurrent add of the same repository won
            existing = self.repos.get(user_id, exc.repo_id) if exc.repo_id else None
            return EXISTS, existing
        except LimitReached:
            return LIMIT_EXCEEDED, None
        if self.audit is not None:
            self.audit.record(subject_user_id=user_id, action="repo.add", actor=user_id,
                              detail={"repo_id": repo.repo_id, "github_id": repo.github_id, "full_name": repo.full_name})
        return ADDED, repo

    def _existing(self, user_id: str, github_id: int) -> Repo | None:
        repo_id = self.repos.repo_id_for_github(user_id, github_id)
        return self.repos.get(user_id, repo_id) if repo_id else None

    def _limit_error(self, user_id: str, plan: Plan):
        return limit_exceeded(plan, RESOURCE, self.usage.used(user_id, RESOURCE), self.public_url)

    # -- removing --------------------------------------------------------------------------------

    def remove(self, principal: Principal, repo_id: str) -> None:
        if not REPO_ID.fullmatch(repo_id or ""):
            raise NotFound("No such repository", code="REPO_NOT_FOUND")  # never a key we could hold
        self.repos.remove(principal.user_id, repo_id)
        if self.audit is not None:
            self.audit.record(subject_user_id=principal.user_id, action="repo.remove", actor=principal.user_id,
                              detail={"repo_id": repo_id})


def _bounded_int(raw, name: str, *, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw))
    except ValueError:
        value = 0
    if not 1 <= value <= maximum or len(str(raw)) > 6:
        raise ValidationFailed(f"{name} must be a whole number from 1 to {maximum}", code="VALIDATION_FAILED",
                               field=name)
    return value
