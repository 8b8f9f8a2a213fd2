"""Provider connections (SPEC C2): the registry with each user's connection health, API keys,
RFC 8628 device flows (polled by a Step Functions workflow), provider logins run on the user's own
machine (``workspace_login``, docs/design/daemon-messaging.md), and disconnecting.

The cloud holds a provider's secret only through ``_seal``, which refuses any provider whose terms
do not let the cloud hold its tokens (``vault_allowed: false``), whatever the route. A login on the
machine stores no secret at all: the cloud relays the provider's prompt (URL, user code) to the
dashboard and the code the user pastes back, sealed to the machine's key; the token stays there.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from typing import Callable
from urllib.parse import urlsplit

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

CONNECTION_PURPOSE = {API_KEY: "api_key", DEVICE_FLOW: "oauth_tokens"}
DEVICE_CODE_PURPOSE = "device_code"
MAX_API_KEY_LENGTH = 512
SLOW_DOWN_SECONDS = 5  # RFC 8628 §3.5: for this and every later poll
DEVICE_FLOW_STARTS = 10  # per user and 10-minute window: each start calls the provider and starts a workflow

LOGIN_PREFIX = "login_"
LOGIN_ID_PATTERN = re.compile(r"login_[0-9a-f]{32}")
LOGIN_TTL_SECONDS = 15 * 60
MAX_LOGIN_CODE_LENGTH = 2048
MAX_PROMPT_URL_LENGTH = 2048
MAX_ACCOUNT_LENGTH = 128
_PROMPT_USER_CODE = re.compile(r"[A-Za-z0-9-]{1,32}")


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
    # workspace_login: WorkspaceLoginRepository, DaemonRepository (read only), CommandService
    logins: object = None
    machines: object = None
    commands: object = None
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
        return 202, self._start_login(principal.user_id, spec, body.get("daemon_id"))

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
        if flow_id.startswith(LOGIN_PREFIX):
            return self._login_view(self._current_login(principal.user_id, flow_id), self._now())
        flow = self.flows.get(principal.user_id, flow_id)
        if flow is None:
            raise NotFound("No such device flow", code="FLOW_NOT_FOUND")
        return self._flow_view(flow, self._now())

    def cancel_flow(self, principal: Principal, flow_id: str) -> None:
        if flow_id.startswith(LOGIN_PREFIX):
            return self._cancel_login(principal.user_id, flow_id)
        flow = self.flows.get(principal.user_id, flow_id)
        if flow is None:
            raise NotFound("No such device flow", code="FLOW_NOT_FOUND")
        if self.flows.update(principal.user_id, flow_id, now=self._now(), status="cancelled") and flow.execution_arn:
            self.workflow.stop(flow.execution_arn, cause="cancelled by the user")

    # -- provider logins on the user's machine (workspace_login) ----------------------------------

    def _machine(self, user_id: str, daemon_id) -> object:
        """The linked machine the login runs on: the one asked for, else the user's only one."""
        from relay_cloud.domain.daemons import DAEMON_ID_PATTERN

        if daemon_id is None:
            linked = [d for d in self.machines.owned_by(user_id) if d.active and d.user_id == user_id]
            if not linked:
                raise Conflict("Link a machine first: the provider's own login runs there and the token stays on it",
                               code="NO_MACHINE_LINKED")
            if len(linked) > 1:
                raise ValidationFailed("Choose the machine to log in on", code="DAEMON_REQUIRED", field="daemon_id")
            return linked[0]
        if not isinstance(daemon_id, str):
            raise ValidationFailed("daemon_id must be a machine id", field="daemon_id")
        machine = self.machines.get(daemon_id) if DAEMON_ID_PATTERN.fullmatch(daemon_id) else None
        if machine is None or machine.user_id != user_id or not machine.active:
            raise NotFound("No such machine", code="DAEMON_NOT_FOUND")
        return machine

    def _start_login(self, user_id: str, spec: ProviderSpec, daemon_id) -> dict:
        from relay_cloud.adapters.dynamo.logins import ERROR, WAITING_FOR_MACHINE, WorkspaceLogin
        from relay_cloud.domain.commands import PROVIDER_LOGIN

        machine, now = self._machine(user_id, daemon_id), self._now()
        login = WorkspaceLogin(login_id=new_id("login"), user_id=user_id, provider=spec.id,
                               daemon_id=machine.daemon_id, status=WAITING_FOR_MACHINE,
                               login_expires_at=now + LOGIN_TTL_SECONDS, created_at=now)
        self.logins.create(login, now=now)  # first, so the machine's first report always finds it
        try:
            command = self.commands.enqueue(user_id, machine.daemon_id, PROVIDER_LOGIN,
                                            {"login_id": login.login_id, "provider": spec.id},
                                            ttl_seconds=LOGIN_TTL_SECONDS)
        except (NotFound, RateLimited) as exc:  # unlinked meanwhile, or its queue is full: nothing will run
            self.logins.transition(user_id, login.login_id, now=now, to=ERROR,
                                   error={"code": exc.code, "message": exc.message})
            raise
        self.logins.set_command(user_id, login.login_id, command["command_id"], now=now)
        return self._login_view(login, now)

    def _current_login(self, user_id: str, login_id: str):
        """The user's login, its expiry recorded (and the machine told to stop) once 15 minutes passed;
        404 LOGIN_NOT_FOUND for an unknown id and for another user's login alike."""
        login = self.logins.get(user_id, login_id) if LOGIN_ID_PATTERN.fullmatch(login_id) else None
        if login is None:
            raise NotFound("No such login", code="LOGIN_NOT_FOUND")
        now = self._now()
        if login.pending and not login.live(now) and self.logins.expire(user_id, login_id, now=now):
            self._stop_on_machine(login)  # the view already shows it expired
        return login

    @staticmethod
    def _login_view(login, now: int) -> dict:
        from relay_cloud.adapters.dynamo.logins import EXPIRED

        live = login.live(now)
        if live:
            status = "pending"
        else:
            status = EXPIRED if login.pending else login.status  # reads apply the expiry first
        prompt = login.prompt if live else None
        view = {
            "flow_id": login.login_id,
            "login_id": login.login_id,
            "provider": login.provider,
            "method": WORKSPACE_LOGIN,
            "daemon_id": login.daemon_id,
            "status": status,
            "stage": login.status if live else None,
            "prompt": {"url": prompt["url"], "user_code": prompt.get("user_code"),
                       "needs_code": bool(prompt.get("needs_code"))} if prompt else None,
            "expires_at": int(login.login_expires_at),
        }
        if status == "error" and login.error:
            view["error"] = {"code": login.error.get("code"), "message": login.error.get("message", "")}
        return view

    def _stop_on_machine(self, login) -> None:
        """Best effort: tell the machine to stop the provider's CLI (an unlinked machine or a full queue
        only means the CLI runs into its own timeout)."""
        from relay_cloud.domain.commands import PROVIDER_LOGIN_CANCEL

        try:
            self.commands.enqueue(login.user_id, login.daemon_id, PROVIDER_LOGIN_CANCEL, {"login_id": login.login_id})
        except (NotFound, RateLimited):
            pass

    def _cancel_login(self, user_id: str, login_id: str) -> None:
        from relay_cloud.adapters.dynamo.logins import CANCELLED

        login = self._current_login(user_id, login_id)
        if self.logins.transition(user_id, login_id, now=self._now(), to=CANCELLED):
            self._stop_on_machine(login)  # a finished login stays as it was: cancelling it is a no-op

    def relay_login_code(self, principal: Principal, login_id: str, body: dict) -> dict:
        """``POST /api/providers/logins/{login_id}/code {"code"}``: the code the provider showed the user,
        sealed to the machine's X25519 key and queued for it. Never logged, stored in plaintext or
        returned (and never put in an error)."""
        from relay_cloud.adapters.dynamo.logins import AWAITING_USER, ERROR, VERIFYING
        from relay_cloud.domain.commands import PROVIDER_LOGIN_CODE
        from relay_cloud.domain.sealing import login_code_aad, public_key_bytes, seal

        code = body.get("code")
        if (not isinstance(code, str) or not 1 <= len(code) <= MAX_LOGIN_CODE_LENGTH or not code.isprintable()):
            raise ValidationFailed(f"code must be 1-{MAX_LOGIN_CODE_LENGTH} printable characters", field="code")
        user_id = principal.user_id
        login = self._current_login(user_id, login_id)
        now = self._now()
        if not (login.live(now) and login.status == AWAITING_USER and (login.prompt or {}).get("needs_code")):
            raise Conflict("This login is not waiting for a code", code="LOGIN_NOT_AWAITING_CODE")
        machine = self.machines.get(login.daemon_id)
        if machine is None or machine.user_id != user_id or not machine.active:
            self.logins.transition(user_id, login_id, now=now, to=ERROR,
                                   error={"code": "MACHINE_UNLINKED", "message": "The machine was unlinked"})
            raise Conflict("This login is not waiting for a code: its machine was unlinked",
                           code="LOGIN_NOT_AWAITING_CODE")
        # Claim the stage first: of two concurrent submissions only one code reaches the machine.
        if not self.logins.transition(user_id, login_id, now=now, to=VERIFYING, expected=(AWAITING_USER,)):
            raise Conflict("This login is not waiting for a code", code="LOGIN_NOT_AWAITING_CODE")
        sealed = seal(public_key_bytes(machine.public_key), code.encode(), login_code_aad(login.daemon_id, login_id))
        try:
            self.commands.enqueue(user_id, login.daemon_id, PROVIDER_LOGIN_CODE,
                                  {"login_id": login_id, "sealed": sealed},
                                  ttl_seconds=max(1, min(LOGIN_TTL_SECONDS, login.login_expires_at - now)))
        except (NotFound, RateLimited):
            # Not queued: the user may try again (a full queue drains as the machine reports).
            self.logins.transition(user_id, login_id, now=now, to=AWAITING_USER, expected=(VERIFYING,))
            raise
        return self._login_view(replace(login, status=VERIFYING), now)

    def login_report(self, user_id: str, daemon_id: str, command: dict, status: str, output: dict | None,
                     error: dict | None) -> None:
        """The command sink for provider_login, provider_login_code and provider_login_cancel: what the
        machine reports moves the login on. Idempotent (duplicate reports arrive here again): every
        write is conditional on the state it expects, so a repeat changes nothing."""
        from relay_cloud.adapters.dynamo.logins import AWAITING_USER, ERROR, WAITING_FOR_MACHINE
        from relay_cloud.domain.commands import FAILED, PROVIDER_LOGIN, PROVIDER_LOGIN_CODE, RUNNING, SUCCEEDED

        login_id = (command.get("args") or {}).get("login_id")
        login = self.logins.get(user_id, login_id) if isinstance(login_id, str) else None
        now = self._now()
        if login is None or login.daemon_id != daemon_id or not login.live(now):
            return  # unknown, another machine's, finished, cancelled or expired: nothing to move
        kind = command.get("type")
        if status == FAILED and kind in (PROVIDER_LOGIN, PROVIDER_LOGIN_CODE):
            self.logins.transition(user_id, login_id, now=now, to=ERROR, error=_login_error(error))
            if kind == PROVIDER_LOGIN_CODE:
                self._stop_on_machine(login)  # the CLI may still be waiting for the code
        elif kind == PROVIDER_LOGIN and status == RUNNING and (output or {}).get("stage") == AWAITING_USER:
            prompt = _login_prompt(output)
            if prompt is None:  # never show the user a link we cannot vouch for (https only)
                invalid = {"code": "LOGIN_PROMPT_INVALID",
                           "message": "The machine reported a sign-in prompt the dashboard cannot show"}
                if self.logins.transition(user_id, login_id, now=now, to=ERROR, error=invalid):
                    self._stop_on_machine(login)
            else:
                self.logins.transition(user_id, login_id, now=now, to=AWAITING_USER, prompt=prompt,
                                       expected=(WAITING_FOR_MACHINE, AWAITING_USER))
        elif kind == PROVIDER_LOGIN and status == SUCCEEDED:
            self._record_login(login, _login_account(output), now)

    def _record_login(self, login, account: str | None, now: int) -> None:
        """The connection (no ciphertext: the token stays on the machine) and the login turning
        ``connected``, in one transaction; a concurrent change of the connection is retried."""
        from relay_cloud.adapters.dynamo.connections import NewConnection

        connection = NewConnection.on_machine(login.user_id, login.provider, daemon_id=login.daemon_id,
                                              account=account, now=now)
        for _ in range(3):
            try:
                self.connections.save(connection, now=now, new_data_key=None, complete_login=login.login_id)
            except Conflict:
                current = self.logins.get(login.user_id, login.login_id)
                if current is None or not current.live(now):
                    return  # cancelled or finished meanwhile (a duplicate report lands here): nothing stored
                continue  # the connection changed meanwhile (another connect): replace the new one
            self.audit.record(subject_user_id=login.user_id, action="provider.connect", actor=login.user_id,
                              reason=WORKSPACE_LOGIN, detail={"provider": login.provider,
                                                              "daemon_id": login.daemon_id, "login_id": login.login_id})
            return
        raise Conflict("The connection kept changing; report again", code="CONNECTION_RACE")

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


def _login_prompt(output: dict) -> dict | None:
    """``{url: https ≤ 2048, user_code?: ≤ 32 [A-Za-z0-9-], needs_code: bool}`` from a machine's report,
    or None when it is not that."""
    url, user_code, needs_code = output.get("url"), output.get("user_code"), output.get("needs_code")
    if not isinstance(url, str) or not 0 < len(url) <= MAX_PROMPT_URL_LENGTH or not url.isprintable() or " " in url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme != "https" or not parts.hostname:
        return None
    if user_code is not None and (not isinstance(user_code, str) or not _PROMPT_USER_CODE.fullmatch(user_code)):
        return None
    if not isinstance(needs_code, bool):
        return None
    prompt = {"url": url, "needs_code": needs_code}
    if user_code is not None:
        prompt["user_code"] = user_code
    return prompt


def _login_account(output: dict | None) -> str | None:
    account = (output or {}).get("account")
    if isinstance(account, str) and 0 < len(account) <= MAX_ACCOUNT_LENGTH and account.isprintable():
        return account
    return None  # optional: an odd value is dropped rather than failing a login that worked


def _login_error(error: dict | None) -> dict:
    if error and error.get("code"):
        return {"code": str(error["code"])[:64], "message": str(error.get("message") or "")[:512]}
    return {"code": "LOGIN_FAILED", "message": "The login on the machine failed"}
