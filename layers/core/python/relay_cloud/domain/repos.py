"""Repositories (SPEC C5, docs/design/repositories.md): what a repository is to us, GitHub's naming rules,
and the shapes the API answers with. No I/O."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from relay_cloud.domain.errors import Conflict

RESOURCE = "repositories"  # the plan catalog's limit name (domain/plans.py LIMITS)
MAX_BULK = 50
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100  # GitHub's own maximum for /user/repos
MAX_PAGE = 1000

ADDED, EXISTS, NOT_FOUND, INVALID, LIMIT_EXCEEDED = "added", "exists", "not_found", "invalid", "limit_exceeded"

# GitHub's rules: a login is 1-39 letters, digits or hyphens and does not start with a hyphen (older
# accounts may end with one or hold "--", so those are accepted); a repository name is 1-100 of letters,
# digits, ".", "-", "_".
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
REPO_ID = re.compile(r"repo_[0-9a-f]{24}")


class RepoExists(Conflict):
    """The user already added this GitHub repository; ``repo_id`` is the one they have."""

    code = "REPO_EXISTS"

    def __init__(self, repo_id: str | None):
        super().__init__("This repository is already added")
        self.repo_id = repo_id


def new_repo_id() -> str:
    return f"repo_{secrets.token_hex(12)}"


def parse_full_name(raw) -> tuple[str, str] | None:
    """``(owner, name)`` of an ``owner/name`` that GitHub could hold, or None. A trailing ``.git`` is
    dropped, as GitHub drops it when a repository is created with one."""
    if not isinstance(raw, str) or len(raw) > 200:
        return None
    owner, slash, name = raw.strip().partition("/")
    if not slash:
        return None
    if name.endswith(".git"):
        name = name[: -len(".git")]
    if not _OWNER.fullmatch(owner) or not _NAME.fullmatch(name):
        return None
    if name in (".", "..") or name.lower().endswith(".wiki"):
        return None
    return owner, name


@dataclass(frozen=True)
class GithubRepo:
    """A repository as GitHub describes it to the user's token."""

    github_id: int
    full_name: str
    name: str
    owner: str
    private: bool
    default_branch: str
    html_url: str | None = None
    description: str | None = None
    language: str | None = None
    updated_at: str | None = None

    def to_public(self) -> dict:
        return {
            "github_id": self.github_id, "full_name": self.full_name, "name": self.name, "owner": self.owner,
            "description": self.description, "private": self.private, "default_branch": self.default_branch,
            "language": self.language, "updated_at": self.updated_at, "html_url": self.html_url,
        }


@dataclass(frozen=True)
class GithubRepoPage:
    repos: tuple[GithubRepo, ...]
    has_next: bool


@dataclass(frozen=True)
class Repo:
    """A repository a user added (the owner's, and only theirs, to attach to a workspace)."""

    repo_id: str
    user_id: str
    github_id: int
    full_name: str
    name: str
    owner: str
    private: bool
    default_branch: str
    html_url: str | None
    added_at: int
    attached_workspace_id: str | None = None

    @classmethod
    def from_github(cls, repo_id: str, user_id: str, github: GithubRepo, *, added_at: int) -> Repo:
        return cls(repo_id=repo_id, user_id=user_id, github_id=github.github_id, full_name=github.full_name,
                   name=github.name, owner=github.owner, private=github.private,
                   default_branch=github.default_branch, html_url=github.html_url, added_at=added_at)

    def to_public(self) -> dict:
        return {
            "id": self.repo_id, "github_id": self.github_id, "full_name": self.full_name, "name": self.name,
            "owner": self.owner, "default_branch": self.default_branch, "private": self.private,
            "html_url": self.html_url, "added_at": self.added_at,
            "attached_workspace_id": self.attached_workspace_id,
        }
