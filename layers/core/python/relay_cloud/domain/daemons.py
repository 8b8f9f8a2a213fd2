"""Daemon linking rules (SPEC C4, docs/design/daemon-linking.md): user codes, device codes, daemon keys,
input validation for the device authorization request, and the presence rule. No I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import math
import re
import secrets
from dataclasses import dataclass

from relay_cloud.domain.errors import RelayError, ValidationFailed

CLIENT_ID = "relay-cloud-cli"
DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DAEMON_SCOPE = "daemon"

LINK_TTL_SECONDS = 600  # expires_in of a device code
LINK_RETENTION_SECONDS = 24 * 3600  # the request item's TTL is creation + 600 s + a day
POLL_INTERVAL_SECONDS = 5
SLOW_DOWN_SECONDS = 5  # RFC 8628 §3.5: added to the device code's interval on every slow_down

# SPEC C14: link requests (the public device authorization) per requesting address, fixed windows.
LINK_REQUESTS_PER_ADDRESS = 20
LINK_REQUEST_WINDOW_SECONDS = 600

HEARTBEAT_INTERVAL_SECONDS = 15
BUSY_HEARTBEAT_INTERVAL_SECONDS = 2  # while a live command is queued (a login's prompts and codes move quickly)
PRESENCE_GRACE_SECONDS = 5

# RFC 8628 §6.1: consonants only (no vowels: no words; no Y), case-insensitive, 8 characters.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8

KEY_PREFIX = "rly_"
_DAEMON_ID = r"dmn_[0-9a-f]{32}"
_KEY = re.compile(rf"rly_({_DAEMON_ID})_([A-Za-z0-9_-]{{43}})")
DAEMON_ID_PATTERN = re.compile(_DAEMON_ID)
_MACHINE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MAX_NAME_LENGTH = 64
PUBLIC_KEY_BYTES = 32


class DeviceGrantError(RelayError):
    """An RFC 6749 §5.2 / RFC 8628 §3.5 error of the device authorization or token endpoint: the body is
    ``{"error", "error_description"}`` (what OAuth clients parse), not the API's ``{"error", "code"}``."""

    status = 400

    def __init__(self, error: str, description: str = "", *, status: int = 400):
        super().__init__(description or error, code=error)
        self.status = status
        self.error = error

    def body(self) -> dict:
        body = {"error": self.error}
        if self.message and self.message != self.error:
            body["error_description"] = self.message
        return body


def address_bucket(requesting_ip: str | None) -> str:
    """What a per-address limit counts: an IPv4 address, or the /64 of an IPv6 one (one subscriber
    usually holds a whole /64, so single addresses would be free to rotate). No address at all (never
    behind API Gateway) is one shared bucket: fail closed rather than unlimited."""
    try:
        address = ipaddress.ip_address(str(requesting_ip or "").strip())
    except ValueError:
        return str(requesting_ip)[:64] if requesting_ip else "unknown"
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# -- user codes -------------------------------------------------------------------------------------

def new_user_code() -> str:
    """8 letters from the 20-letter alphabet (20^8 ≈ 2.6e10, about 34 bits), unformatted."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def format_user_code(code: str) -> str:
    """'BCDFGHJK' -> 'BCDF-GHJK' (how it is shown and put in verification_uri_complete)."""
    return f"{code[:4]}-{code[4:]}"


def normalize_user_code(raw: object) -> str | None:
    """What the user typed -> the canonical 8 letters, or None when it cannot be a user code.
    Hyphens and spaces are ignored and any case is accepted (RFC 8628 §6.1)."""
    if not isinstance(raw, str) or len(raw) > 32:
        return None
    code = raw.replace("-", "").replace(" ", "").upper()
    if len(code) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in code):
        return None
    return code


# -- device codes and daemon keys -------------------------------------------------------------------

def new_device_code() -> str:
    """32 random bytes, url-safe: a bearer secret, stored only as its SHA-256."""
    return secrets.token_urlsafe(32)


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_daemon_id() -> str:
    return f"dmn_{secrets.token_hex(16)}"


def new_key_secret() -> str:
    """32 random bytes, url-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def daemon_key(daemon_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}{daemon_id}_{secret}"


@dataclass(frozen=True)
class ParsedKey:
    daemon_id: str
    secret: str


def parse_daemon_key(raw: object) -> ParsedKey | None:
    """'rly_<daemon_id>_<secret>' -> its parts; None for anything else. The daemon id has a fixed shape,
    so the separator is unambiguous even though url-safe secrets may contain '_'."""
    if not isinstance(raw, str):
        return None
    match = _KEY.fullmatch(raw)
    return ParsedKey(match.group(1), match.group(2)) if match else None


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an 'Authorization: Bearer <token>' header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def key_matches(secret: str, stored_hash: str | None) -> bool:
    """Constant-time comparison of SHA-256(secret) with the stored hex digest."""
    return bool(stored_hash) and hmac.compare_digest(sha256_hex(secret).encode(), stored_hash.encode())


@dataclass(frozen=True)
class DaemonPrincipal:
    """Who is calling a daemon route: the daemon a valid key belongs to, and its owner."""

    daemon_id: str
    user_id: str
    public_key: str = ""  # base64url raw X25519: what leases and relayed login codes are sealed to
    allowed_providers: tuple[str, ...] = ()


@dataclass(frozen=True)
class DaemonKeyClaim:
    """What a heartbeat's Authorization header claims, checked for format only: the daemon id and the
    SHA-256 (hex) of the key's secret. Not yet verified: the heartbeat's conditional write verifies it."""

    daemon_id: str
    key_hash: str


def daemon_key_claim(authorization: str | None) -> DaemonKeyClaim | None:
    """'Bearer rly_<daemon_id>_<secret>' -> (daemon id, sha256(secret) hex); None for any other header."""
    parsed = parse_daemon_key(bearer_token(authorization))
    return DaemonKeyClaim(parsed.daemon_id, sha256_hex(parsed.secret)) if parsed else None


# -- heartbeat input (SPEC C4: {agents, metrics}) ----------------------------------------------------

MAX_AGENTS = 100
AGENT_STATUSES = frozenset({"running", "idle", "starting", "stopped", "crashed"})
MAX_PROVIDER_LENGTH = 32
MAX_PID = 2**31 - 1
MAX_METRICS = 32
MAX_METRIC_VALUE = 1e15
_AGENT_NAME = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9._-]{1,64}")  # not "." or "..": a daemon keeps a directory per agent


def is_agent_name(value: object) -> bool:
    """1-64 characters of A-Z a-z 0-9 . _ -, except "." and ".." (heartbeat inventories, message targets)."""
    return isinstance(value, str) and _AGENT_NAME.fullmatch(value) is not None

_METRIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class HeartbeatInput:
    agents: list  # [{"name", "provider"?, "status"?, "pid"?}], names unique
    metrics: dict  # {name: int | float}


def _invalid(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, field=field)


def _agent(raw: object, index: int) -> dict:
    field = f"agents[{index}]"
    if not isinstance(raw, dict):
        raise _invalid("Each agent must be an object", field)
    name = raw.get("name")
    if not is_agent_name(name):
        raise _invalid("name must be 1-64 characters of A-Z a-z 0-9 . _ -", f"{field}.name")
    agent: dict = {"name": name}
    provider = raw.get("provider")
    if provider is not None:
        if (not isinstance(provider, str) or not provider or len(provider) > MAX_PROVIDER_LENGTH
                or not provider.isprintable()):
            raise _invalid(f"provider must be 1-{MAX_PROVIDER_LENGTH} printable characters", f"{field}.provider")
        agent["provider"] = provider
    status = raw.get("status")
    if status is not None:
        if not isinstance(status, str) or status not in AGENT_STATUSES:
            raise _invalid("status must be one of " + ", ".join(sorted(AGENT_STATUSES)), f"{field}.status")
        agent["status"] = status
    pid = raw.get("pid")
    if pid is not None:
        if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= MAX_PID:
            raise _invalid("pid must be a positive integer", f"{field}.pid")
        agent["pid"] = pid
    return agent  # fields other than these four are not stored


def _metric(value: object) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
            and abs(value) <= MAX_METRIC_VALUE)


def validate_heartbeat(body: dict) -> HeartbeatInput:
    """The reported inventory (required; it replaces the previous one, so an empty list means no agents)
    and optional metrics: at most 32 names of 1-64 characters [A-Za-z0-9._-], each a finite number."""
    agents = body.get("agents")
    if not isinstance(agents, list) or len(agents) > MAX_AGENTS:
        raise _invalid(f"agents must be a list of at most {MAX_AGENTS} agents", "agents")
    checked = [_agent(raw, index) for index, raw in enumerate(agents)]
    names = [agent["name"] for agent in checked]
    if len(set(names)) != len(names):
        raise _invalid("Agent names must be unique on a machine", "agents")
    metrics = body.get("metrics")
    if metrics is None:
        metrics = {}
    if (not isinstance(metrics, dict) or len(metrics) > MAX_METRICS
            or not all(isinstance(k, str) and _METRIC_NAME.fullmatch(k) and _metric(v) for k, v in metrics.items())):
        raise _invalid(f"metrics must map at most {MAX_METRICS} names (1-64 characters of A-Z a-z 0-9 . _ -) "
                       "to finite numbers", "metrics")
    return HeartbeatInput(checked, dict(metrics))


# -- the device authorization request ---------------------------------------------------------------

@dataclass(frozen=True)
class LinkRequestInput:
    machine_id: str
    name: str
    public_key: str


def validate_link_request(params: dict) -> LinkRequestInput:
    """Check the device authorization parameters (client_id is checked by the caller first)."""
    machine_id, name, public_key = params.get("machine_id"), params.get("name"), params.get("public_key")
    if not isinstance(machine_id, str) or not _MACHINE_ID.fullmatch(machine_id):
        raise DeviceGrantError("invalid_request", "machine_id must be 1-128 characters of [A-Za-z0-9._:-]")
    if (not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH or not name.isprintable()
            or not name.strip()):
        raise DeviceGrantError("invalid_request", "name must be 1-64 printable characters")
    if not is_x25519_public_key(public_key):
        raise DeviceGrantError("invalid_request",
                               "public_key must be the base64url (unpadded) raw 32-byte X25519 public key")
    return LinkRequestInput(machine_id, name, public_key)


def is_x25519_public_key(value: object) -> bool:
    if not isinstance(value, str) or len(value) != 43 or not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        return False
    try:
        raw = base64.urlsafe_b64decode(value + "=")
    except ValueError:
        return False
    # The canonical encoding only: the last character's unused low bits must be zero.
    return len(raw) == PUBLIC_KEY_BYTES and base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == value


# -- presence ---------------------------------------------------------------------------------------

ONLINE, STALE, OFFLINE = "online", "stale", "offline"


def presence(last_seen_at: int | float | None, now: int | float,
             interval: int = HEARTBEAT_INTERVAL_SECONDS, grace: int = PRESENCE_GRACE_SECONDS) -> str:
    """online when seen within one interval plus the grace, stale within two intervals (one heartbeat
    missed), else offline (two or more missed); a daemon never seen is offline."""
    if last_seen_at is None:
        return OFFLINE
    age = now - last_seen_at
    if age <= interval + grace:
        return ONLINE
    if age <= 2 * interval:
        return STALE
    return OFFLINE


# -- what the stores hold ---------------------------------------------------------------------------

PENDING, APPROVED, DENIED, CONSUMED = "pending", "approved", "denied", "consumed"


@dataclass(frozen=True)
class LinkRequest:
    device_hash: str
    user_code: str  # canonical 8 letters
    client_id: str
    machine_id: str
    name: str
    public_key: str
    requesting_ip: str | None
    status: str
    user_id: str | None  # who decided it
    allowed_providers: tuple[str, ...]
    daemon_id: str | None
    interval: int
    last_polled_at: int | None
    created_at: int

    @property
    def expires_at(self) -> int:
        return self.created_at + LINK_TTL_SECONDS

    def expired(self, now: int) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class Daemon:
    daemon_id: str
    user_id: str
    name: str
    machine_id: str
    public_key: str
    key_hash: str | None
    allowed_providers: tuple[str, ...]
    linked_at: int
    last_seen_at: int | None = None
    revoked_at: int | None = None
    agents: tuple = ()

    @property
    def active(self) -> bool:
        """Has a key (the token exchange happened) that was not revoked."""
        return bool(self.key_hash) and self.revoked_at is None
