"""Provider logins on the user's own machine (``workspace_login``, docs/design/daemon-messaging.md
"Provider logins on the machine"): the provider's CLI runs there and the token stays there.

The cloud only relays: the provider's prompt (URL, user code) from the machine's reports to the dashboard,
and the code the user pastes back, sealed to the machine's X25519 key, as a command for it. What the
machine reports (through the command sink, ``report``) moves the login on; success records a connection
holding no secret at all.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from typing import Callable
from urllib.parse import urlsplit

from relay_cloud.domain.auth import Principal, new_id
from relay_cloud.domain.errors import Conflict, NotFound, RateLimited, ValidationFailed
from relay_cloud.domain.providers import WORKSPACE_LOGIN, ProviderSpec

LOGIN_PREFIX = "login_"
LOGIN_ID_PATTERN = re.compile(r"login_[0-9a-f]{32}")
LOGIN_TTL_SECONDS = 15 * 60
MAX_LOGIN_CODE_LENGTH = 2048
MAX_PROMPT_URL_LENGTH = 2048
MAX_ACCOUNT_LENGTH = 128
_PROMPT_USER_CODE = re.compile(r"[A-Za-z0-9-]{1,32}")


def is_login_id(value: str) -> bool:
    """Whether a flow id names a login on a machine rather than a device flow (the login routes then
    answer 404 LOGIN_NOT_FOUND for a malformed one)."""
    return value.startswith(LOGIN_PREFIX)


@dataclass
class MachineLoginService:
    logins: object  # WorkspaceLoginRepository
    machines: object  # DaemonRepository, read only: the machine a login runs on
    commands: object  # CommandService: what the machine is asked to do
    connections: object  # ConnectionRepository: the connection a finished login records
    audit: object
    clock: Callable[[], float] = time.time

    def _now(self) -> int:
        return int(self.clock())

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

    def start(self, user_id: str, spec: ProviderSpec, daemon_id) -> dict:
        """A login of ``spec`` (which the caller checked allows workspace_login) queued for the machine."""
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
        return self._view(login, now)

    def _current(self, user_id: str, login_id: str):
        """The user's login, its expiry recorded (and the machine told to stop) once 15 minutes passed;
        404 LOGIN_NOT_FOUND for an unknown id and for another user's login alike."""
        login = self.logins.get(user_id, login_id) if LOGIN_ID_PATTERN.fullmatch(login_id) else None
        if login is None:
            raise NotFound("No such login", code="LOGIN_NOT_FOUND")
        now = self._now()
        if login.pending and not login.live(now) and self.logins.expire(user_id, login_id, now=now):
            self._stop_on_machine(login)  # the view already shows it expired
        return login

    def status(self, user_id: str, login_id: str) -> dict:
        return self._view(self._current(user_id, login_id), self._now())

    @staticmethod
    def _view(login, now: int) -> dict:
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

    def cancel(self, user_id: str, login_id: str) -> None:
        from relay_cloud.adapters.dynamo.logins import CANCELLED

        login = self._current(user_id, login_id)
        if self.logins.transition(user_id, login_id, now=self._now(), to=CANCELLED):
            self._stop_on_machine(login)  # a finished login stays as it was: cancelling it is a no-op

    def relay_code(self, principal: Principal, login_id: str, body: dict) -> dict:
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
        login = self._current(user_id, login_id)
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
        return self._view(replace(login, status=VERIFYING), now)

    def report(self, user_id: str, daemon_id: str, command: dict, status: str, output: dict | None,
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
            self._record(login, _login_account(output), now)

    def _record(self, login, account: str | None, now: int) -> None:
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
