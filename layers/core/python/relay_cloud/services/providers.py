"""Provider connections (SPEC C2): the registry with each user's connection health, API keys,
RFC 8628 device flows (polled by a Step Functions workflow), provider logins run on the user's own
machine (``workspace_login``: started and dispatched here, run by services/machine_logins.py), and
disconnecting.

The cloud holds a provider's secret only through ``_seal``, which refuses any provider whose terms
do not let the cloud hold its tokens (``vault_allowed: false``), whatever the route. A login on the
machine stores no secret at all: the cloud relays the provider's prompt (URL, user code) to the
dashboard and the code the user pastes back, sealed to the machine's key; the token stays there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from relay_cloud.domain.auth import Principal, new_id
from relay_cloud.domain.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ValidationFailed,
    VaultError,
)
from relay_cloud.domain.providers import API_KEY, DEVICE_FLOW, WORKSPACE_LOGIN, ProviderSpec, health, refresh_due_at
from relay_cloud.services.machine_logins import is_login_id

CONNECTION_PURPOSE = {API_KEY: "api_key", DEVICE_FLOW: "oauth_tokens"}
DEVICE_CODE_PURPOSE = "device_code"
MAX_API_KEY_LENGTH = 512
SLOW_DOWN_SECONDS = 5  # RFC 8628 §3.5: for this and every later poll
DEVICE_FLOW_STARTS = 10  # per user and 10-minute window: each start calls the provider and starts a workflow


@dataclass
class ProviderService:
    registry: object
    connections: object
    flows: object
    vault: object
    upstream: object
    workflow: object
    audit: object
    clock: Callable[[], float] = time.time
    machine_logins: object = None  # MachineLoginService: workspace_login
    limiter: object = None  # RateLimiter: device-flow starts per user (SPEC C14); None = not limited

    def _now(self) -> int:
        return int(self.clock())

    def _provider(self, provider_id: str) -> ProviderSpec:
        spec = self.registry.get(provider_id)
        if spec is None:
            raise NotFound("No such provider", code="PROVIDER_NOT_FOUND")
        return spec

    def _context(self, user_id: str, provider: str, credential_id: str, purpose: str):
        from relay_cloud.adapters.vault import VaultContext

        return VaultContext(user_id, provider, credential_id, purpose)

    @staticmethod
    def _guard(spec: ProviderSpec) -> None:
        if not spec.vault_allowed:
            raise Forbidden(f"{spec.display_name}'s terms do not let the cloud hold its credentials",
                            code="PROVIDER_NOT_VAULTABLE")

    def _seal(self, spec: ProviderSpec, user_id: str, credential_id: str, purpose: str, secret: dict):
        """The only way a provider secret reaches the vault (the caller stores the result)."""
        self._guard(spec)
        plaintext = json.dumps(secret, separators=(",", ":")).encode()
        return self.vault.seal(self._context(user_id, spec.id, credential_id, purpose), plaintext)

    # -- listing ---------------------------------------------------------------------------------

    def entry(self, spec: ProviderSpec, item, now: int) -> dict:
        connection = None
        if item is not None:
            connection = {
                "method": item.method,
                "account": item.account,
                "connected_at": int(item.created_at),
                "last_refreshed_at": int(item.last_refreshed_at) if item.last_refreshed_at else None,
                "expires_at": int(item.token_expires_at) if item.token_expires_at else None,
                "failure_reason": item.failure_reason,
            }
            if item.method == WORKSPACE_LOGIN:  # the machine holding the token
                metadata = item.metadata.as_dict() if item.metadata is not None else {}
                connection["daemon_id"] = metadata.get("daemon_id")
        state = health(
            status=item.status if item is not None else None,
            expires_at=int(item.token_expires_at) if item is not None and item.token_expires_at else None,
            refresh_due=int(item.refresh_due_at) if item is not None and item.refresh_due_at else None,
            now=now,
        )
        return {**spec.to_public(), "health": state, "connection": connection}

    def list(self, principal: Principal) -> dict:
        now = self._now()
        connected = self.connections.all(principal.user_id)
        return {"providers": [self.entry(spec, connected.get(spec.id), now) for spec in self.registry.all()]}

    # -- connecting -------------------------------------------------------------------------------

    def connect(self, principal: Principal, provider_id: str, body: dict) -> tuple[int, dict]:
        spec = self._provider(provider_id)
        method = body.get("method")
        if method not in spec.methods:
            raise ValidationFailed(f"{spec.display_name} cannot be connected with {str(method)[:32]!r}",
                                   code="METHOD_NOT_ALLOWED", allowed=list(spec.methods))
        if method == API_KEY:
            return 201, {"provider": self._connect_api_key(principal.user_id, spec, body.get("api_key"))}
        if method == DEVICE_FLOW:
            return 202, self._start_device_flow(principal.user_id, spec)
        assert method == WORKSPACE_LOGIN
        return 202, self.machine_logins.start(principal.user_id, spec, body.get("daemon_id"))

    def _connect_api_key(self, user_id: str, spec: ProviderSpec, api_key) -> dict:
        if not isinstance(api_key, str) or not api_key.strip() or len(api_key) > MAX_API_KEY_LENGTH:
            raise ValidationFailed("An API key is required", code="VALIDATION_FAILED", field="api_key")
        api_key = api_key.strip()
        self.upstream.validate_api_key(spec, api_key)  # 400 INVALID_CREDENTIAL / 503: nothing stored
        from relay_cloud.adapters.dynamo.connections import NewConnection

        sealed = self._seal(spec, user_id, "default", CONNECTION_PURPOSE[API_KEY], {"api_key": api_key})
        now = self._now()
        self.connections.save(
            NewConnection(user_id, spec.id, API_KEY, CONNECTION_PURPOSE[API_KEY], sealed.ciphertext,
                          sealed.key_version, account=None, issued_at=now, token_expires_at=None, refresh_due_at=None),
            now=now, new_data_key=sealed.new_data_key,
        )
        self.audit.record(subject_user_id=user_id, action="provider.connect", actor=user_id, reason=API_KEY,
                          detail={"provider": spec.id})
        return self.entry(spec, self.connections.get(user_id, spec.id), now)

    def _start_device_flow(self, user_id: str, spec: ProviderSpec) -> dict:
        from relay_cloud.adapters.dynamo.connections import NewDeviceFlow
        from relay_cloud.adapters.vault import key_version_of

        self._guard(spec)  # before anything is asked of the provider
        if self.limiter is not None and not self.limiter.hit(
                "provider-device-flow", user_id, limit=DEVICE_FLOW_STARTS, window_seconds=600, now=self._now()):
            raise RateLimited("Too many provider logins started; wait a few minutes", code="RATE_LIMITED")
        authorization = self.upstream.start_device_authorization(spec)
        flow_id, now = new_id("flow"), self._now()
        device_code = self.vault.encrypt(  # stores the user's first data key itself when needed
            self._context(user_id, spec.id, flow_id, DEVICE_CODE_PURPOSE),
            json.dumps({"device_code": authorization.device_code}).encode(),
        )
        self.flows.create(NewDeviceFlow(
            flow_id, user_id, spec.id, authorization.user_code, authorization.verification_uri,
            authorization.verification_uri_complete, authorization.interval, now + authorization.expires_in,
            device_code, key_version_of(device_code),
        ), now=now)
        # The workflow's input holds no secret: the poll task unseals the device code itself.
        arn = self.workflow.start(flow_id, {"flow_id": flow_id, "user_id": user_id, "interval": authorization.interval})
        self.flows.update(user_id, flow_id, now=now, execution_arn=arn)
        return {**self._flow_view(self.flows.get(user_id, flow_id), now), "expires_in": authorization.expires_in}

    @staticmethod
    def _flow_view(flow, now: int) -> dict:
        view = {
            "flow_id": flow.flow_id,
            "provider": flow.provider,
            "status": flow.status,
            "user_code": flow.user_code,
            "verification_uri": flow.verification_uri,
            "verification_uri_complete": flow.verification_uri_complete or flow.verification_uri,
            "expires_at": int(flow.flow_expires_at),
            "interval": int(flow.interval),
        }
        if flow.status == "pending" and now >= flow.flow_expires_at:
            view["status"] = "expired"  # the workflow records it on its next poll
        if flow.error:
            view["error"] = flow.error
        return view

    def flow_status(self, principal: Principal, flow_id: str) -> dict:
        if is_login_id(flow_id):
            return self.machine_logins.status(principal.user_id, flow_id)
        flow = self.flows.get(principal.user_id, flow_id)
        if flow is None:
            raise NotFound("No such device flow", code="FLOW_NOT_FOUND")
        return self._flow_view(flow, self._now())

    def cancel_flow(self, principal: Principal, flow_id: str) -> None:
        if is_login_id(flow_id):
            return self.machine_logins.cancel(principal.user_id, flow_id)
        flow = self.flows.get(principal.user_id, flow_id)
        if flow is None:
            raise NotFound("No such device flow", code="FLOW_NOT_FOUND")
        if self.flows.update(principal.user_id, flow_id, now=self._now(), status="cancelled") and flow.execution_arn:
            self.workflow.stop(flow.execution_arn, cause="cancelled by the user")

    # -- the workflow's task ----------------------------------------------------------------------

    def poll_flow(self, user_id: str, flow_id: str) -> dict:
        """One poll for the device-flow workflow: {"status", "interval"}; raises UpstreamUnavailable on a
        network error, 429 or 5xx so the workflow retries with backoff."""
        now = self._now()
        flow = self.flows.get(user_id, flow_id)
        if flow is None:
            return {"status": "error", "interval": 0}
        if flow.status != "pending":
            return {"status": flow.status, "interval": int(flow.interval)}
        if now >= flow.flow_expires_at:
            self.flows.update(user_id, flow_id, now=now, status="expired")
            return {"status": "expired", "interval": int(flow.interval)}
        spec = self._provider(flow.provider)
        secret = self.vault.decrypt(self._context(user_id, spec.id, flow_id, DEVICE_CODE_PURPOSE), flow.device_code,
                                    actor="workflow:device-flow", reason="poll the token endpoint")
        result = self.upstream.poll_device_token(spec, json.loads(secret)["device_code"])
        interval = int(flow.interval)
        if result.outcome == "pending":
            return {"status": "pending", "interval": interval}
        if result.outcome == "slow_down":
            interval = max(interval + SLOW_DOWN_SECONDS, result.interval or 0)
            self.flows.update(user_id, flow_id, now=now, interval=interval)
            return {"status": "pending", "interval": interval}
        if result.outcome != "tokens":
            self.flows.update(user_id, flow_id, now=now, status=result.outcome, error=result.error)
            return {"status": result.outcome, "interval": interval}
        return {"status": self._store_flow_tokens(spec, user_id, flow_id, result.tokens), "interval": interval}

    def _store_flow_tokens(self, spec: ProviderSpec, user_id: str, flow_id: str, tokens) -> str:
        from relay_cloud.adapters.dynamo.connections import NewConnection

        now = self._now()
        sealed = self._seal(spec, user_id, "default", CONNECTION_PURPOSE[DEVICE_FLOW], tokens.secret_payload())
        expires_at = now + tokens.expires_in if tokens.expires_in else None
        connection = NewConnection(
            user_id, spec.id, DEVICE_FLOW, CONNECTION_PURPOSE[DEVICE_FLOW], sealed.ciphertext, sealed.key_version,
            account=self.upstream.identity(spec, tokens.access_token), issued_at=now, token_expires_at=expires_at,
            refresh_due_at=refresh_due_at(now, expires_at) if tokens.refresh_token else None,
        )
        try:
            self.connections.save(connection, now=now, new_data_key=sealed.new_data_key, complete_flow=flow_id)
        except Conflict:
            # Cancelled while the provider answered: give the tokens back rather than keep them.
            self.upstream.revoke(spec, tokens.secret_payload())
            flow = self.flows.get(user_id, flow_id)
            return flow.status if flow is not None else "cancelled"
        self.audit.record(subject_user_id=user_id, action="provider.connect", actor=user_id, reason=DEVICE_FLOW,
                          detail={"provider": spec.id})
        return "connected"

    def fail_flow(self, user_id: str, flow_id: str, error: str) -> dict:
        """The workflow gave up (retries exhausted or an unexpected error): record it on the flow."""
        self.flows.update(user_id, flow_id, now=self._now(), status="error", error=str(error)[:64])
        return {"status": "error", "interval": 0}

    # -- disconnecting ----------------------------------------------------------------------------

    def disconnect(self, principal: Principal, provider_id: str) -> None:
        """Revoke upstream where the provider supports it, then delete the ciphertext."""
        spec = self._provider(provider_id)
        item = self.connections.get(principal.user_id, spec.id)
        if item is None:
            raise NotFound(f"{spec.display_name} is not connected", code="NOT_CONNECTED")
        if item.method == DEVICE_FLOW and spec.revoke_url:
            try:
                secret = self.vault.decrypt(self._context(principal.user_id, spec.id, "default", item.purpose),
                                            item.ciphertext, actor=principal.user_id, reason="revoke on disconnect")
            except VaultError:
                secret = None  # unreadable: nothing to revoke with, and no reason to keep it
            if secret is not None:
                self.upstream.revoke(spec, json.loads(secret))
        self.connections.delete(principal.user_id, spec.id)
        self.audit.record(subject_user_id=principal.user_id, action="provider.disconnect", actor=principal.user_id,
                          detail={"provider": spec.id})

