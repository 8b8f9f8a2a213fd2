"""Custom-domain rules (SPEC C6, issue 5 item 4): which names may be claimed, the ownership token and
where it is published, when an unverified claim lapses, and what a verification found. No I/O: the DNS
answers come in as arguments (relay_cloud.adapters.dns fetches them).

A claim is proven in two independent ways, both required:
- ownership: a TXT record at ``_relay-challenge.<domain>`` holding the claim's token (only whoever
  controls the zone can publish it, so nobody can claim a domain they do not run);
- routing: ``<domain>`` is a CNAME to the workspace's own host (exactly that host, never "any name
  containing our brand", the original's hole), so the certificate and the traffic end up at the
  workspace that claimed it.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field

from relay_cloud.domain.errors import ValidationFailed

CHALLENGE_LABEL = "_relay-challenge"
TOKEN_PREFIX = "relay-domain-verification="
TOKEN_LENGTH = 32  # base32 characters: 160 bits
_TOKEN = re.compile(rf"^{re.escape(TOKEN_PREFIX)}[a-z2-7]{{{TOKEN_LENGTH}}}$")
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"

# An unverified claim holds the name for this long; afterwards it never blocks another claim of it, so
# squatting a domain by claiming it first is pointless (the real owner's claim simply replaces it).
UNVERIFIED_CLAIM_TTL_SECONDS = 72 * 3600

MAX_DOMAIN_LENGTH = 253  # RFC 1035 §2.3.4, presentation form without the trailing dot
MAX_LABEL_LENGTH = 63
MAX_INPUT_LENGTH = 1024  # refuse absurd input before any IDNA work
_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

# Names that never resolve publicly, or that a certificate authority refuses to issue for: special-use
# names (RFC 6761, 6762, 7686, 8375, 9476), the ICANN-reserved private-use TLD ``internal``, and the
# common private suffixes that resolvers treat as local.
RESERVED_SUFFIXES = (
    "localhost", "local", "localdomain", "internal", "intranet", "lan", "home", "corp",
    "test", "example", "invalid", "onion", "alt", "arpa",
    "example.com", "example.net", "example.org",
)


@dataclass(frozen=True)
class VerificationResult:
    """What one verification found. ``reasons`` are machine codes, empty exactly when ``verified``."""

    domain: str
    challenge_name: str
    expected_token: str
    workspace_host: str
    txt_values: tuple[str, ...]
    cname_target: str | None
    ownership_ok: bool
    routing_ok: bool
    reasons: tuple[str, ...] = field(default=())

    @property
    def verified(self) -> bool:
        return self.ownership_ok and self.routing_ok

    def to_public(self) -> dict:
        """The dashboard shows exactly which record is missing or wrong, with what it found."""
        return {
            "verified": self.verified,
            "reasons": list(self.reasons),
            "records": [
                {"type": "TXT", "name": self.challenge_name, "value": self.expected_token,
                 "ok": self.ownership_ok, "found": list(self.txt_values)},
                {"type": "CNAME", "name": self.domain, "value": self.workspace_host,
                 "ok": self.routing_ok, "found": [self.cname_target] if self.cname_target else []},
            ],
        }


def _invalid(message: str, reason: str) -> ValidationFailed:
    return ValidationFailed(message, code="DOMAIN_INVALID", reason=reason)


def _to_ascii(label: str) -> str:
    """One label to its ASCII form: IDNA for non-ASCII labels (Python's codec, IDNA 2003 mapping, which
    also lower-cases), and A-labels (``xn--``) must decode to something, so no forged punycode."""
    if label.isascii():
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError as exc:
                raise _invalid("The domain has an invalid internationalized label", "BAD_IDNA") from exc
        return label
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise _invalid("The domain has an invalid internationalized label", "BAD_IDNA") from exc


def normalize_domain(raw: object) -> str:
    """The canonical form of a claimable public hostname (lower-case ASCII, IDNA A-labels, no trailing
    dot), or ValidationFailed(DOMAIN_INVALID) with a ``reason``.

    Refused: IP literals, single-label names, wildcards and underscores (hostnames only), labels over 63
    or names over 253 characters, leading/trailing hyphens, reserved ``??--`` labels that are not
    A-labels, all-numeric top-level labels, and special-use or internal suffixes (localhost, .local,
    .internal, .test, ...)."""
    if not isinstance(raw, str) or not raw.strip():
        raise _invalid("Give a domain name such as app.example.dev", "EMPTY")
    if len(raw) > MAX_INPUT_LENGTH:
        raise _invalid("The domain is too long", "TOO_LONG")
    text = raw.strip().lower()
    if text.endswith("."):
        text = text[:-1]
    if "://" in text or "/" in text or "@" in text:
        raise _invalid("Give the domain name only, without a scheme, path or user", "NOT_A_HOSTNAME")
    host = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise _invalid("An IP address is not a domain name", "IP_LITERAL")
    if ":" in text:
        raise _invalid("Give the domain name only, without a port", "NOT_A_HOSTNAME")
    labels = text.split(".")
    if any(label == "" for label in labels):
        raise _invalid("The domain has an empty label", "EMPTY_LABEL")
    labels = [_to_ascii(label).lower() for label in labels]
    for label in labels:
        if len(label) > MAX_LABEL_LENGTH:
            raise _invalid("A label of the domain is longer than 63 characters", "LABEL_TOO_LONG")
        if not _LDH_LABEL.match(label):
            raise _invalid("Use letters, digits and hyphens only (no leading or trailing hyphen)", "BAD_LABEL")
        if label[2:4] == "--" and not label.startswith("xn--"):
            raise _invalid("Labels with '--' in the third and fourth place are reserved", "RESERVED_LABEL")
    domain = ".".join(labels)
    if len(domain) > MAX_DOMAIN_LENGTH:
        raise _invalid("The domain is longer than 253 characters", "TOO_LONG")
    if len(labels) < 2:
        raise _invalid("Give a full domain name such as app.example.dev", "SINGLE_LABEL")
    if not labels[-1][0].isalpha():  # no TLD starts with a digit (this also refuses "1.2.3.4.5")
        raise _invalid("The domain's top-level label is not valid", "BAD_TLD")
    for suffix in RESERVED_SUFFIXES:
        if domain == suffix or domain.endswith("." + suffix):
            raise _invalid("Internal and reserved names cannot be used as a custom domain", "RESERVED_NAME")
    # The challenge name is published beside the domain; it must be a valid name too.
    if len(challenge_name(domain)) > MAX_DOMAIN_LENGTH:
        raise _invalid("The domain is too long to verify", "TOO_LONG")
    return domain


def challenge_name(domain: str) -> str:
    """Where the ownership TXT record lives."""
    return f"{CHALLENGE_LABEL}.{domain}"


def new_ownership_token() -> str:
    """A fresh TXT value proving control of the zone, e.g. ``relay-domain-verification=k3…``."""
    return TOKEN_PREFIX + "".join(secrets.choice(_BASE32) for _ in range(TOKEN_LENGTH))


def is_ownership_token(value: object) -> bool:
    return isinstance(value, str) and bool(_TOKEN.match(value))


def normalize_host(name: str | None) -> str | None:
    """DNS names compare case-insensitively and without the trailing dot."""
    if not name:
        return None
    return name.strip().rstrip(".").lower() or None


def claim_expired(claimed_at: int, now: int, *, verified: bool) -> bool:
    """An unverified claim lapses after UNVERIFIED_CLAIM_TTL_SECONDS; a verified one never does."""
    return not verified and now >= claimed_at + UNVERIFIED_CLAIM_TTL_SECONDS


def verify(
    txt_values: list[str] | tuple[str, ...],
    cname_target: str | None,
    expected_token: str,
    workspace_host: str,
    *,
    domain: str,
) -> VerificationResult:
    """Compare what DNS answered with what the claim expects. Reasons:

    TXT_MISSING      no TXT record at the challenge name
    TXT_MISMATCH     TXT records exist there, none of them is the token
    CNAME_MISSING    the domain is not a CNAME (absent, or A/AAAA records: an apex cannot be a CNAME)
    CNAME_MISMATCH   the domain is a CNAME to another host
    """
    if not is_ownership_token(expected_token):
        raise ValueError("expected_token is not an ownership token")
    host = normalize_host(workspace_host)
    if not host:
        raise ValueError("workspace_host is required")
    found_txt = tuple(value.strip() for value in txt_values)
    target = normalize_host(cname_target)
    reasons = []
    ownership_ok = expected_token in found_txt  # exact: a prefix or a substring proves nothing
    if not ownership_ok:
        reasons.append("TXT_MISMATCH" if found_txt else "TXT_MISSING")
    routing_ok = target == host
    if not routing_ok:
        reasons.append("CNAME_MISMATCH" if target else "CNAME_MISSING")
    return VerificationResult(
        domain=domain,
        challenge_name=challenge_name(domain),
        expected_token=expected_token,
        workspace_host=host,
        txt_values=found_txt,
        cname_target=target,
        ownership_ok=ownership_ok,
        routing_ok=routing_ok,
        reasons=tuple(reasons),
    )


# -- claims (the guard item's outcomes; relay_cloud.adapters.dynamo.domains raises them) -------------

PENDING, VERIFIED, ISSUING, ACTIVE, FAILED = "pending", "verified", "issuing", "active", "failed"
CLAIM_STATES = (PENDING, VERIFIED, ISSUING, ACTIVE, FAILED)


@dataclass(frozen=True)
class DomainGuard:
    """Who holds a domain: the guard item, unique per domain across all workspaces."""

    domain: str
    workspace_id: str
    user_id: str
    token: str
    verified: bool
    claimed_at: int
    verified_at: int | None = None
    expires_at: int | None = None  # while unverified

    def lapsed(self, now: int) -> bool:
        """An unverified claim past its expiry no longer holds the name."""
        return not self.verified and (self.expires_at is None or now > self.expires_at)


class GuardHeld(Exception):
    """The guard's condition refused: another workspace holds the domain (``holder``; None when it was
    released meanwhile, so a retry may succeed)."""

    def __init__(self, holder: DomainGuard | None):
        super().__init__("domain held")
        self.holder = holder


class ClaimChanged(Exception):
    """The workspace's ``domain`` map is not what the write expected (removed, replaced, or the workspace
    is gone or being deleted): the caller reads it again."""


def records(state: dict, host: str | None) -> list[dict]:
    """The two DNS records the user publishes."""
    return [
        {"type": "TXT", "name": challenge_name(state["domain"]), "value": state["token"]},
        {"type": "CNAME", "name": state["domain"], "value": host},
    ]


def public_view(state: dict | None, host: str | None) -> dict | None:
    """The API's domain view of a workspace's ``domain`` map (also what the Workspace answer can show)."""
    if not state:
        return None
    checks = state.get("checks") or {}
    view = {
        "domain": state["domain"],
        "status": state.get("status", PENDING),
        "records": records(state, host),
        "expires_at": state.get("expires_at"),  # only while unverified
        "verified_at": state.get("verified_at"),
        "checks": {"txt": bool(checks.get("txt")), "cname": bool(checks.get("cname"))},
        "checked_at": state.get("checked_at"),
    }
    if state.get("reasons"):
        view["reasons"] = list(state["reasons"])
    if state.get("error"):
        view["error"] = dict(state["error"])
    return view
