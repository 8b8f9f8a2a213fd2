"""Credential leases (SPEC §2.3, docs/design/daemon-messaging.md): ``GET /api/daemons/credentials``
hands a daemon short-lived, access-only credentials for the providers its owner allowed on that machine,
each sealed to the machine's X25519 public key (only its private key opens them).

An API key is leased for an hour; a device-flow connection leases its access token only, never the
refresh token (that stays in the vault, where the refresh sweep uses it), until the token's own expiry
or an hour, whichever comes first. Every lease is audited (``credential.lease``) besides the vault's own
decrypt audit. Nothing here logs or returns a plaintext.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from relay_cloud.domain.daemons import DaemonPrincipal
from relay_cloud.domain.errors import VaultError
from relay_cloud.domain.providers import API_KEY, DEVICE_FLOW, WORKSPACE_LOGIN, health
from relay_cloud.domain.sealing import lease_aad, public_key_bytes, seal

logger = logging.getLogger(__name__)

LEASE_SECONDS = 3600
NOT_CONNECTED, ON_MACHINE, UNHEALTHY, EXPIRED = "not_connected", "on_machine", "unhealthy", "expired"


def new_lease_id() -> str:
    return f"lse_{secrets.token_hex(16)}"


@dataclass
class LeaseService:
    connections: object
    vault: object
    registry: object
    audit: object
    clock: Callable[[], float] = time.time

    def leases(self, caller: DaemonPrincipal) -> dict:
        now = int(self.clock())
        recipient = public_key_bytes(caller.public_key)
        connected = self.connections.all(caller.user_id)
        leases, skipped = [], []
        for provider in dict.fromkeys(caller.allowed_providers):  # only what the owner allowed on this machine
            item = connected.get(provider)
            reason = self._refusal(item, now) if self.registry.get(provider) is not None else NOT_CONNECTED
            lease = None if reason else self._lease(caller, item, recipient, now)
            if lease is None:
                skipped.append({"provider": provider, "reason": reason or UNHEALTHY})
            else:
                leases.append(lease)
        return {"leases": leases, "skipped": skipped}

    @staticmethod
    def _refusal(item, now: int) -> str | None:
        """Why a connection cannot be leased, or None when it can."""
        if item is None:
            return NOT_CONNECTED
        if item.method == WORKSPACE_LOGIN:
            return ON_MACHINE  # the token lives on that machine; the cloud never had it
        if item.method not in (API_KEY, DEVICE_FLOW) or item.ciphertext is None:
            return NOT_CONNECTED
        state = health(status=item.status, expires_at=int(item.token_expires_at) if item.token_expires_at else None,
                       refresh_due=None, now=now)
        if state == "not_connected":
            return NOT_CONNECTED
        if state in ("refresh_failed", "revoked"):
            return UNHEALTHY
        if state == "expiring":  # refresh_due is not passed: "expiring" here means past its expiry
            return EXPIRED
        return None

    def _lease(self, caller: DaemonPrincipal, item, recipient: bytes, now: int) -> dict | None:
        """Open the connection's secret, take the access part only, and seal it to the daemon; None when
        the stored secret cannot be opened or holds no usable value (reported as unhealthy)."""
        from relay_cloud.adapters.vault import VaultContext

        lease_id = new_lease_id()
        ctx = VaultContext(caller.user_id, item.provider, "default", item.purpose)
        try:
            secret = json.loads(self.vault.decrypt(ctx, item.ciphertext, actor=caller.daemon_id,
                                                   reason=f"credential lease {lease_id}"))
        except (VaultError, ValueError):
            logger.warning("credential lease skipped: the stored secret did not open",
                           extra={"provider": item.provider, "daemon_id": caller.daemon_id})
            return None
        if item.method == API_KEY:
            kind, value, expires_at = "api_key", secret.get("api_key"), now + LEASE_SECONDS
        else:
            token_expiry = int(item.token_expires_at) if item.token_expires_at else now + LEASE_SECONDS
            kind, value, expires_at = "access_token", secret.get("access_token"), min(token_expiry, now + LEASE_SECONDS)
        del secret  # holds the refresh token of a device-flow connection: nothing below may see it
        if not isinstance(value, str) or not value:
            return None
        plaintext = json.dumps({"provider": item.provider, "kind": kind, "value": value, "expires_at": expires_at},
                               separators=(",", ":")).encode()
        sealed = seal(recipient, plaintext, lease_aad(caller.daemon_id, item.provider, lease_id, expires_at))
        self.audit.record(subject_user_id=caller.user_id, action="credential.lease", actor=caller.daemon_id,
                          detail={"provider": item.provider, "lease_id": lease_id, "daemon_id": caller.daemon_id})
        return {"lease_id": lease_id, "provider": item.provider, "kind": kind, "expires_at": expires_at,
                "sealed": sealed}
