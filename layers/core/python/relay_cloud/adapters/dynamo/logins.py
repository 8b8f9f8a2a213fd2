"""DynamoDB repository for provider logins running on the user's machine (SPEC §2.1 ``workspace_login``;
docs/design/daemon-messaging.md).

One attribute carries the whole state machine: while a login is pending, ``status`` holds its stage
(``waiting_for_machine`` → ``awaiting_user`` → ``verifying``), so every write is one condition on the
state it expects; afterwards it holds the outcome (``connected``, ``expired``, ``error``, ``cancelled``)
and never changes again. The service shows the stages as ``status: pending`` with a ``stage``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import PynamoDBException

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import WorkspaceLoginItem

WAITING_FOR_MACHINE, AWAITING_USER, VERIFYING = "waiting_for_machine", "awaiting_user", "verifying"
PENDING_STAGES = (WAITING_FOR_MACHINE, AWAITING_USER, VERIFYING)
CONNECTED, EXPIRED, ERROR, CANCELLED = "connected", "expired", "error", "cancelled"
LOGIN_RETENTION_SECONDS = 24 * 3600  # a finished login stays readable a day after it expired


@dataclass(frozen=True)
class WorkspaceLogin:
    login_id: str
    user_id: str
    provider: str
    daemon_id: str
    status: str  # a pending stage or the outcome
    login_expires_at: int
    created_at: int
    command_id: str | None = None
    prompt: dict | None = None  # {url, user_code, needs_code} as the machine relayed them
    error: dict | None = None  # {code, message}

    @property
    def pending(self) -> bool:
        return self.status in PENDING_STAGES

    def live(self, now: int) -> bool:
        """Pending and not past its 15 minutes (reads apply the expiry before anything records it)."""
        return self.pending and now < self.login_expires_at


def _login(item: WorkspaceLoginItem) -> WorkspaceLogin:
    return WorkspaceLogin(
        login_id=item.login_id, user_id=item.user_id, provider=item.provider, daemon_id=item.daemon_id,
        status=item.status, login_expires_at=int(item.login_expires_at), created_at=int(item.created_at),
        command_id=item.command_id,
        prompt=item.prompt.as_dict() if item.prompt is not None else None,
        error=item.error.as_dict() if item.error is not None else None,
    )


def live_in(stages, now: int):
    """Condition: the login exists, is in one of ``stages`` and has not expired. Also what completes a
    login in the connection's transaction (adapters/dynamo/connections.py)."""
    return (WorkspaceLoginItem.pk.exists() & WorkspaceLoginItem.status.is_in(*stages)
            & (WorkspaceLoginItem.login_expires_at > now))


class WorkspaceLoginRepository:
    def create(self, login: WorkspaceLogin, *, now: int) -> None:
        item = WorkspaceLoginItem(
            keys.user_pk(login.user_id), keys.workspace_login_sk(login.login_id),
            login_id=login.login_id, user_id=login.user_id, provider=login.provider, daemon_id=login.daemon_id,
            status=login.status, login_expires_at=login.login_expires_at, created_at=login.created_at,
            updated_at=now, expires_at=login.login_expires_at + LOGIN_RETENTION_SECONDS,
        )
        with translated("put"):
            item.save(condition=WorkspaceLoginItem.pk.does_not_exist())

    def get(self, user_id: str, login_id: str) -> WorkspaceLogin | None:
        with translated("get"):
            try:
                item = WorkspaceLoginItem.get(keys.user_pk(user_id), keys.workspace_login_sk(login_id),
                                              consistent_read=True)
            except WorkspaceLoginItem.DoesNotExist:
                return None
        return _login(item)

    def set_command(self, user_id: str, login_id: str, command_id: str, *, now: int) -> None:
        """Note which command started the login (traceability only: no state depends on it)."""
        self._update(user_id, login_id, [WorkspaceLoginItem.command_id.set(command_id),
                                         WorkspaceLoginItem.updated_at.set(now)], WorkspaceLoginItem.pk.exists())

    def transition(self, user_id: str, login_id: str, *, now: int, to: str, expected=PENDING_STAGES,
                   prompt: dict | None = None, error: dict | None = None) -> bool:
        """Move a live login from one of the ``expected`` stages to ``to`` (a stage or an outcome), with the
        machine's prompt or the error; False when it is in another state, expired or gone."""
        actions = [WorkspaceLoginItem.status.set(to), WorkspaceLoginItem.updated_at.set(now)]
        if prompt is not None:
            actions.append(WorkspaceLoginItem.prompt.set(prompt))
        if error is not None:
            actions.append(WorkspaceLoginItem.error.set(error))
        return self._update(user_id, login_id, actions, live_in(expected, now))

    def expire(self, user_id: str, login_id: str, *, now: int) -> bool:
        """Record the expiry of a login still pending past its deadline; False when it was not."""
        condition = (WorkspaceLoginItem.pk.exists() & WorkspaceLoginItem.status.is_in(*PENDING_STAGES)
                     & (WorkspaceLoginItem.login_expires_at <= now))
        return self._update(user_id, login_id, [WorkspaceLoginItem.status.set(EXPIRED),
                                                WorkspaceLoginItem.updated_at.set(now)], condition)

    def _update(self, user_id: str, login_id: str, actions: list, condition) -> bool:
        with translated("update"):
            try:
                WorkspaceLoginItem(keys.user_pk(user_id), keys.workspace_login_sk(login_id)).update(
                    actions=actions, condition=condition)
                return True
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise
