"""Sign-in rules: random identifiers, PKCE (RFC 7636, S256), safe ``next`` paths, session lifetime."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

OAUTH_LOGIN_TTL_SECONDS = 600
# A session's expiry slides forward at most this often, so most requests cost a single read.
SESSION_SLIDE_AFTER_SECONDS = 3600
DEFAULT_NEXT = "/dashboard"
MAX_NEXT_LENGTH = 512


def new_id(prefix: str) -> str:
    """Random, opaque ids: ``usr_…`` with 128 bits of entropy."""
    return f"{prefix}_{secrets.token_hex(16)}"


def new_secret() -> str:
    """256-bit URL-safe secrets for session ids, state, CSRF tokens and the pre-login cookie."""
    return secrets.token_urlsafe(32)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for S256: the challenge is BASE64URL(SHA256(verifier))."""
    verifier = secrets.token_urlsafe(64)[:96]
    return verifier, pkce_challenge(verifier)


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same_secret(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def safe_next(candidate: str | None) -> str:
    """Only same-site absolute paths: '/dashboard#x' is kept; '//evil', 'https://evil', '/\\evil' are not."""
    if not candidate or len(candidate) > MAX_NEXT_LENGTH:
        return DEFAULT_NEXT
    if not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
        return DEFAULT_NEXT
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in candidate):
        return DEFAULT_NEXT
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return candidate


@dataclass(frozen=True)
class GithubProfile:
    github_id: int
    login: str
    name: str | None
    email: str | None
    avatar_url: str | None


@dataclass(frozen=True)
class User:
    user_id: str
    github_id: int
    github_login: str
    name: str | None
    email: str | None
    avatar_url: str | None
    plan: str
    created_at: int

    def to_public(self) -> dict:
        return {
            "id": self.user_id,
            "github_login": self.github_login,
            "name": self.name,
            "email": self.email,
            "avatar_url": self.avatar_url,
            "plan": self.plan,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class Session:
    session_id: str
    user_id: str
    csrf_token: str
    created_at: int
    expires_at: int

    def needs_slide(self, now: int, ttl: int) -> bool:
        return self.expires_at - now < ttl - SESSION_SLIDE_AFTER_SECONDS


@dataclass(frozen=True)
class PendingLogin:
    """A sign-in in progress; stored under the digest of its state, consumed exactly once."""

    state: str
    code_verifier: str
    browser_binding: str  # digest of the pre-login cookie this sign-in started in
    next_path: str
    expires_at: int


@dataclass(frozen=True)
class Principal:
    """Who is calling: the authenticated user behind a session."""

    user_id: str
    session_id: str
    csrf_token: str
