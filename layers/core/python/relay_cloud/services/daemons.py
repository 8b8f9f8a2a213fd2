"""Daemon linking (SPEC C4; the contract is docs/design/daemon-linking.md): our own RFC 8628 authorization
server for ``relay-cloud link``, the dashboard's decision on a link request, listing and unlinking
machines, and daemon-key authentication.

Secrets handled here: the device code (returned once by the device authorization, stored only as its
SHA-256) and the daemon key's secret (minted at the token exchange, returned once, stored only as its
SHA-256). Neither is logged, audited or put in an error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from relay_cloud.domain.daemons import (
    APPROVED,
    BUSY_HEARTBEAT_INTERVAL_SECONDS,
    CLIENT_ID,
    CONSUMED,
    DAEMON_ID_PATTERN,
    DAEMON_SCOPE,
    DENIED,
    DEVICE_GRANT_TYPE,
    HEARTBEAT_INTERVAL_SECONDS,
    LINK_REQUEST_WINDOW_SECONDS,
    LINK_REQUESTS_PER_ADDRESS,
    LINK_TTL_SECONDS,
    PENDING,
    POLL_INTERVAL_SECONDS,
    SLOW_DOWN_SECONDS,
    Daemon,
    DaemonKeyClaim,
    DaemonPrincipal,
    DeviceGrantError,
    LinkRequest,
    address_bucket,
    bearer_token,
    daemon_key,
    format_user_code,
    key_matches,
    new_daemon_id,
    new_device_code,
    new_key_secret,
    new_user_code,
    normalize_user_code,
    parse_daemon_key,
    presence,
    sha256_hex,
    validate_heartbeat,
    validate_link_request,
)
from relay_cloud.domain.errors import Conflict, NotFound, RateLimited, Unauthenticated, ValidationFailed

LOOKUP_SCOPE = "link-lookup"  # the rate limiter's counter of failed user-code lookups, per user
LOOKUP_LIMIT = 10  # failed user-code lookups per user and window
LOOKUP_WINDOW_SECONDS = 600
USER_CODE_ATTEMPTS = 5  # new codes tried when a user code is taken
MAX_ALLOWED_PROVIDERS = 32


@dataclass
class DaemonService:
    links: object
    daemons: object
    audit: object
    registry: object
    public_url: str
    clock: Callable[[], float] = time.time
    user_codes: Callable[[], str] = new_user_code  # tests pass a sequence to force a collision
    # RateLimiter (SPEC C14): link requests per address, failed user-code lookups per user; None = not limited
    limiter: object = None

    def _now(self) -> int:
        return int(self.clock())

    # -- RFC 8628 §3.1-3.2: device authorization (public) -----------------------------------------

    def device_authorization(self, params: dict, *, requesting_ip: str | None) -> dict:
        if params.get("client_id") != CLIENT_ID:
            raise DeviceGrantError("invalid_client", "Unknown client", status=401)
        scope = params.get("scope")
        if scope not in (None, "", DAEMON_SCOPE):
            raise DeviceGrantError("invalid_scope", "The only scope is 'daemon'")
        wanted = validate_link_request(params)
        self._limit_link_requests(requesting_ip)
        for _ in range(USER_CODE_ATTEMPTS):
            device_code, user_code, now = new_device_code(), self.user_codes(), self._now()
            request = LinkRequest(
                device_hash=sha256_hex(device_code), user_code=user_code, client_id=CLIENT_ID,
                machine_id=wanted.machine_id, name=wanted.name, public_key=wanted.public_key,
                requesting_ip=(requesting_ip or None) and str(requesting_ip)[:64], status=PENDING, user_id=None,
                allowed_providers=(), daemon_id=None, interval=POLL_INTERVAL_SECONDS, last_polled_at=None,
                created_at=now,
            )
            try:
                self.links.create(request)
            except Conflict:
                continue  # the user code is live elsewhere: draw new codes
            shown = format_user_code(user_code)
            verification_uri = f"{self.public_url}/dashboard/link"
            return {
                "device_code": device_code,
                "user_code": shown,
                "verification_uri": verification_uri,
                "verification_uri_complete": f"{verification_uri}?user_code={shown}",
                "expires_in": LINK_TTL_SECONDS,
                "interval": POLL_INTERVAL_SECONDS,
            }
        raise DeviceGrantError("temporarily_unavailable", "Could not allocate a user code, retry", status=503)

    def _limit_link_requests(self, requesting_ip: str | None) -> None:
        """20 valid link requests per address (an IPv6 /64) per 10-minute window: the route is public,
        so there is no user to count."""
        if self.limiter is None:
            return
        now = self._now()
        if not self.limiter.hit("link-device", address_bucket(requesting_ip), limit=LINK_REQUESTS_PER_ADDRESS,
                                window_seconds=LINK_REQUEST_WINDOW_SECONDS, now=now):
            wait = LINK_REQUEST_WINDOW_SECONDS - now % LINK_REQUEST_WINDOW_SECONDS
            refused = DeviceGrantError("slow_down", f"Too many link requests from this address; retry in {wait} "
                                       "seconds", status=429)
            refused.headers = {"Retry-After": str(wait)}
            raise refused

    # -- RFC 8628 §3.4-3.5: the token endpoint (public) -------------------------------------------

    def token(self, params: dict) -> dict:
        grant_type = params.get("grant_type")
        if not grant_type:
            raise DeviceGrantError("invalid_request", "grant_type is required")
        if grant_type != DEVICE_GRANT_TYPE:
            raise DeviceGrantError("unsupported_grant_type", "Only the device_code grant is supported")
        if params.get("client_id") != CLIENT_ID:
            raise DeviceGrantError("invalid_client", "Unknown client")
        device_code = params.get("device_code")
        if not isinstance(device_code, str) or not device_code or len(device_code) > 256:
            raise DeviceGrantError("invalid_request", "device_code is required")
        device_hash, now = sha256_hex(device_code), self._now()
        request = self.links.get(device_hash)
        if request is None or request.status == CONSUMED:
            raise DeviceGrantError("invalid_grant", "Unknown or already used device code")
        if request.client_id != params["client_id"]:
            raise DeviceGrantError("invalid_client", "The device code was issued to another client")
        if request.expired(now):
            raise DeviceGrantError("expired_token", "The device code has expired; run the link again")
        if request.status == DENIED:
            raise DeviceGrantError("access_denied", "The link request was denied")
        if request.status == APPROVED:
            return self._exchange(request, now)
        too_fast = request.last_polled_at is not None and now - request.last_polled_at < request.interval
        interval = request.interval + SLOW_DOWN_SECONDS if too_fast else request.interval
        recorded = self.links.record_poll(device_hash, previous_polled_at=request.last_polled_at, now=now,
                                          interval=interval)
        if too_fast or not recorded:  # not recorded: a concurrent poll of the same code
            raise DeviceGrantError("slow_down", f"Poll at most every {interval} seconds")
        raise DeviceGrantError("authorization_pending", "Waiting for the user to approve in the dashboard")

    def _exchange(self, request: LinkRequest, now: int) -> dict:
        secret = new_key_secret()
        if not self.links.exchange(request.device_hash, request.daemon_id, sha256_hex(secret), now=now):
            raise DeviceGrantError("invalid_grant", "Unknown or already used device code")
        return {"access_token": daemon_key(request.daemon_id, secret), "token_type": "Bearer",
                "daemon_id": request.daemon_id, "scope": DAEMON_SCOPE}

    # -- the dashboard: look up, approve, deny (session) ------------------------------------------

    def _refuse_if_limited(self, user_id: str, now: int) -> None:
        """Only failed lookups count, but once a window holds LOOKUP_LIMIT of them every lookup is refused."""
        if self.limiter is not None and self.limiter.count(
                LOOKUP_SCOPE, user_id, window_seconds=LOOKUP_WINDOW_SECONDS, now=now) >= LOOKUP_LIMIT:
            raise RateLimited("Too many unknown codes; wait a few minutes", code="RATE_LIMITED")

    def _not_found(self, user_id: str, now: int) -> NotFound:
        if self.limiter is not None and not self.limiter.hit(
                LOOKUP_SCOPE, user_id, limit=LOOKUP_LIMIT, window_seconds=LOOKUP_WINDOW_SECONDS, now=now):
            return RateLimited("Too many unknown codes; wait a few minutes", code="RATE_LIMITED")
        return NotFound("No such link request, or it has expired", code="LINK_REQUEST_NOT_FOUND")

    def _visible_request(self, user_id: str, raw_code: str, now: int) -> LinkRequest:
        """The live request behind a user code: anyone signed in may see a pending one (holding the code
        is the point); a decided one only its decider. Everything else is 404 and counts as a failed
        lookup (10 per 10 minutes, then 429 for every lookup)."""
        self._refuse_if_limited(user_id, now)
        code = normalize_user_code(raw_code)
        device_hash = self.links.device_hash_for(code, now) if code else None
        request = self.links.get(device_hash) if device_hash else None
        if (request is None or request.expired(now) or request.user_code != code
                or (request.status != PENDING and request.user_id != user_id)):
            raise self._not_found(user_id, now)
        return request

    @staticmethod
    def _request_view(request: LinkRequest) -> dict:
        return {
            "user_code": format_user_code(request.user_code),
            "machine_id": request.machine_id,
            "name": request.name,
            "requesting_ip": request.requesting_ip,
            "requested_at": request.created_at,
            "expires_at": request.expires_at,
            "status": request.status,
        }

    def lookup(self, principal, raw_code: str) -> dict:
        return self._request_view(self._visible_request(principal.user_id, raw_code, self._now()))

    def _allowed_providers(self, body: dict) -> tuple[str, ...]:
        providers = body.get("allowed_providers", [])
        if providers is None:
            return ()
        if (not isinstance(providers, list) or len(providers) > MAX_ALLOWED_PROVIDERS
                or not all(isinstance(p, str) for p in providers)):
            raise ValidationFailed("allowed_providers must be a list of provider ids", field="allowed_providers")
        unknown = sorted({p for p in providers if self.registry.get(p) is None})
        if unknown:
            raise ValidationFailed("Unknown provider", code="PROVIDER_NOT_FOUND", field="allowed_providers",
                                   unknown=[p[:64] for p in unknown][:5])
        return tuple(dict.fromkeys(providers))

    def approve(self, principal, raw_code: str, body: dict) -> dict:
        allowed = self._allowed_providers(body)
        now = self._now()
        request = self._visible_request(principal.user_id, raw_code, now)
        if request.status != PENDING:
            raise Conflict("This link request was already decided", code="LINK_REQUEST_DECIDED")
        daemon = Daemon(daemon_id=new_daemon_id(), user_id=principal.user_id, name=request.name,
                        machine_id=request.machine_id, public_key=request.public_key, key_hash=None,
                        allowed_providers=allowed, linked_at=now)
        try:
            self.links.approve(request.device_hash, daemon, now=now)
        except Conflict:
            self._visible_request(principal.user_id, raw_code, self._now())  # 404 when someone else decided
            raise Conflict("This link request was already decided", code="LINK_REQUEST_DECIDED") from None
        self.audit.record(subject_user_id=principal.user_id, action="daemon.link", actor=principal.user_id,
                          detail={"daemon_id": daemon.daemon_id, "machine_id": daemon.machine_id,
                                  "allowed_providers": list(allowed)})
        return {"daemon_id": daemon.daemon_id, "name": daemon.name, "machine_id": daemon.machine_id}

    def deny(self, principal, raw_code: str) -> None:
        now = self._now()
        request = self._visible_request(principal.user_id, raw_code, now)
        if request.status != PENDING:
            raise Conflict("This link request was already decided", code="LINK_REQUEST_DECIDED")
        if not self.links.deny(request.device_hash, user_id=principal.user_id, now=now):
            self._visible_request(principal.user_id, raw_code, self._now())
            raise Conflict("This link request was already decided", code="LINK_REQUEST_DECIDED")
        self.audit.record(subject_user_id=principal.user_id, action="daemon.link_denied", actor=principal.user_id,
                          detail={"machine_id": request.machine_id})

    # -- machines ----------------------------------------------------------------------------------

    def _linked(self, user_id: str) -> list[Daemon]:
        return [d for d in self.daemons.owned_by(user_id) if d.active and d.user_id == user_id]

    def list(self, principal) -> dict:
        now = self._now()
        return {"daemons": [{
            "daemon_id": d.daemon_id,
            "name": d.name,
            "machine_id": d.machine_id,
            "linked_at": d.linked_at,
            "last_seen_at": d.last_seen_at,
            "presence": presence(d.last_seen_at, now),
            "agents": list(d.agents),
            "allowed_providers": list(d.allowed_providers),
            "heartbeat_interval_s": HEARTBEAT_INTERVAL_SECONDS,
        } for d in self._linked(principal.user_id)]}

    def unlink(self, principal, daemon_id: str) -> None:
        """Revoke a machine's key from the dashboard; effective on its very next request."""
        if not DAEMON_ID_PATTERN.fullmatch(daemon_id or "") or not self.daemons.revoke(
                daemon_id, user_id=principal.user_id, now=self._now()):
            raise NotFound("No such machine", code="DAEMON_NOT_FOUND")
        self.audit.record(subject_user_id=principal.user_id, action="daemon.unlink", actor=principal.user_id,
                          detail={"daemon_id": daemon_id})

    # -- daemon routes (daemon key) -----------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> DaemonPrincipal:
        """``Authorization: Bearer rly_<daemon_id>_<secret>``: one GetItem, a constant-time hash compare."""
        parsed = parse_daemon_key(bearer_token(authorization))
        daemon = self.daemons.get(parsed.daemon_id) if parsed else None
        if daemon is None or not key_matches(parsed.secret, daemon.key_hash):
            raise Unauthenticated("A valid daemon key is required", code="DAEMON_KEY_INVALID")
        if daemon.revoked_at is not None:
            raise Unauthenticated("This machine was unlinked; run relay-cloud link again", code="DAEMON_KEY_REVOKED")
        return DaemonPrincipal(daemon.daemon_id, daemon.user_id, daemon.public_key, daemon.allowed_providers)

    def unlink_self(self, caller: DaemonPrincipal) -> None:
        """The CLI's unlink: revoke the calling daemon's own key (idempotent under a concurrent unlink)."""
        if self.daemons.revoke(caller.daemon_id, user_id=caller.user_id, now=self._now()):
            self.audit.record(subject_user_id=caller.user_id, action="daemon.unlink", actor=caller.daemon_id,
                              reason="cli", detail={"daemon_id": caller.daemon_id})

    def agents(self, caller: DaemonPrincipal) -> dict:
        now = self._now()
        return {"daemons": [{"daemon_id": d.daemon_id, "name": d.name, "presence": presence(d.last_seen_at, now),
                             "agents": list(d.agents)} for d in self._linked(caller.user_id)]}

    def heartbeat(self, claim: DaemonKeyClaim, body: dict) -> dict:
        """SPEC C4: ``{agents, metrics}`` -> ``{commands, heartbeat_interval_s}``. The key is verified by the
        write itself (one conditional UpdateItem, no read): a wrong, unknown or revoked key is the same
        401 DAEMON_KEY_INVALID, so the heartbeat never tells which. ``commands`` are the live queued ones;
        while any is queued the daemon comes back every 2 s instead of 15 (a login's prompts move quickly)."""
        report = validate_heartbeat(body)
        commands = self.daemons.heartbeat(claim.daemon_id, key_hash=claim.key_hash, now=self._now(),
                                          agents=report.agents, metrics=report.metrics)
        if commands is None:
            raise Unauthenticated("A valid daemon key is required", code="DAEMON_KEY_INVALID")
        interval = BUSY_HEARTBEAT_INTERVAL_SECONDS if commands else HEARTBEAT_INTERVAL_SECONDS
        return {"commands": commands, "heartbeat_interval_s": interval}
