"""DynamoDB repositories for provider connections (encrypted tokens with health and refresh schedule)
and device flows in progress. A ``workspace_login`` connection holds no ciphertext at all: its token
stays on the machine that ran the provider's login."""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.logins import CONNECTED, PENDING_STAGES, live_in
from relay_cloud.adapters.dynamo.models import CredentialItem, DataKeyItem, DeviceFlowItem, UserItem, WorkspaceLoginItem
from relay_cloud.domain.errors import Conflict
from relay_cloud.domain.providers import WORKSPACE_LOGIN

ON_MACHINE_PURPOSE = "on_machine"  # no vault purpose: nothing is sealed


@dataclass(frozen=True)
class NewConnection:
    user_id: str
    provider: str
    method: str
    purpose: str
    ciphertext: bytes | None  # None only for workspace_login
    key_version: int | None
    account: str | None
    issued_at: int
    token_expires_at: int | None
    refresh_due_at: int | None
    metadata: dict | None = None

    @staticmethod
    def on_machine(user_id: str, provider: str, *, daemon_id: str, account: str | None, now: int) -> NewConnection:
        """A workspace_login connection: no ciphertext, never due for refresh, the machine in metadata."""
        return NewConnection(user_id, provider, WORKSPACE_LOGIN, ON_MACHINE_PURPOSE, None, None, account=account,
                             issued_at=now, token_expires_at=None, refresh_due_at=None,
                             metadata={"daemon_id": daemon_id})


@dataclass(frozen=True)
class NewDeviceFlow:
    flow_id: str
    user_id: str
    provider: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: int
    flow_expires_at: int
    device_code: bytes  # vault ciphertext
    key_version: int


FLOW_RETENTION_SECONDS = 24 * 3600  # a finished flow stays readable a day after its code expired


def _transaction() -> TransactWrite:
    return TransactWrite(connection=UserItem._get_connection().connection)


def connection_item(c: NewConnection, *, now: int, generation: int) -> CredentialItem:
    item = CredentialItem(
        keys.user_pk(c.user_id),
        keys.credential_sk(c.provider, keys.CONNECTION_ID),
        user_id=c.user_id, provider=c.provider, credential_id=keys.CONNECTION_ID, purpose=c.purpose,
        ciphertext=c.ciphertext, key_version=c.key_version, metadata=dict(c.metadata or {}), created_at=now,
        updated_at=now,
        method=c.method, status="valid", account=c.account, token_issued_at=c.issued_at,
        token_expires_at=c.token_expires_at, refresh_due_at=c.refresh_due_at, last_refreshed_at=None,
        generation=generation,
    )
    if c.refresh_due_at is not None:
        item.gsi2pk = keys.refresh_gsi_pk(keys.refresh_bucket(c.refresh_due_at))
        item.gsi2sk = keys.refresh_gsi_sk(c.refresh_due_at, c.user_id, c.provider)
    return item


class ConnectionRepository:
    def get(self, user_id: str, provider: str) -> CredentialItem | None:
        with translated("get"):
            try:
                return CredentialItem.get(keys.user_pk(user_id), keys.credential_sk(provider, keys.CONNECTION_ID),
                                          consistent_read=True)
            except CredentialItem.DoesNotExist:
                return None

    def all(self, user_id: str) -> dict[str, CredentialItem]:
        with translated("query"):
            items = CredentialItem.query(keys.user_pk(user_id), CredentialItem.sk.startswith(keys.CREDENTIAL_PREFIX))
            return {item.provider: item for item in items if item.credential_id == keys.CONNECTION_ID}

    def save(self, connection: NewConnection, *, now: int, new_data_key: DataKeyItem | None,
             complete_flow: str | None = None, complete_login: str | None = None) -> None:
        """Replace the user's connection to this provider, atomically with the user's first data key
        (when the vault just made it) and, for a device flow or a login on the machine, with the flow or
        login turning ``connected`` (a cancelled, expired or finished one makes the whole write fail:
        nothing is stored). A connection without ciphertext needs no data key."""
        previous = self.get(connection.user_id, connection.provider)
        item = connection_item(connection, now=now, generation=(previous.generation + 1) if previous else 1)
        with translated("transaction"):
            try:
                with _transaction() as tx:
                    # Replace exactly the connection read above: a concurrent connect, refresh or
                    # disconnect makes this write fail rather than be silently overwritten.
                    tx.save(item, condition=CredentialItem.generation == previous.generation if previous
                            else CredentialItem.pk.does_not_exist())
                    if new_data_key is not None:
                        tx.save(new_data_key, condition=DataKeyItem.pk.does_not_exist())
                    elif connection.ciphertext is not None:
                        tx.condition_check(DataKeyItem, keys.user_pk(connection.user_id),
                                           keys.data_key_sk(connection.key_version), condition=DataKeyItem.accepts_new_ciphertext())
                    if complete_flow is not None:
                        flow = DeviceFlowItem(keys.user_pk(connection.user_id), keys.device_flow_sk(complete_flow))
                        tx.update(flow, actions=[DeviceFlowItem.status.set("connected"),
                                                 DeviceFlowItem.updated_at.set(now)],
                                  condition=DeviceFlowItem.status == "pending")
                    if complete_login is not None:
                        login = WorkspaceLoginItem(keys.user_pk(connection.user_id),
                                                   keys.workspace_login_sk(complete_login))
                        tx.update(login, actions=[WorkspaceLoginItem.status.set(CONNECTED),
                                                  WorkspaceLoginItem.updated_at.set(now)],
                                  condition=live_in(PENDING_STAGES, now))
            except TransactWriteError as exc:
                if is_condition_failure(exc):
                    raise Conflict("The connection changed meanwhile", code="CONNECTION_RACE") from exc
                raise

    def delete(self, user_id: str, provider: str) -> bool:
        with translated("delete"):
            try:
                CredentialItem(keys.user_pk(user_id), keys.credential_sk(provider, keys.CONNECTION_ID)).delete(
                    condition=CredentialItem.pk.exists()
                )
                return True
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise


class DeviceFlowRepository:
    def create(self, flow: NewDeviceFlow, *, now: int) -> None:
        item = DeviceFlowItem(
            keys.user_pk(flow.user_id), keys.device_flow_sk(flow.flow_id),
            flow_id=flow.flow_id, user_id=flow.user_id, provider=flow.provider, status="pending",
            user_code=flow.user_code, verification_uri=flow.verification_uri,
            verification_uri_complete=flow.verification_uri_complete, interval=flow.interval,
            flow_expires_at=flow.flow_expires_at, device_code=flow.device_code, key_version=flow.key_version,
            created_at=now, updated_at=now, expires_at=flow.flow_expires_at + FLOW_RETENTION_SECONDS,
        )
        with translated("put"):
            item.save(condition=DeviceFlowItem.pk.does_not_exist())

    def get(self, user_id: str, flow_id: str) -> DeviceFlowItem | None:
        with translated("get"):
            try:
                return DeviceFlowItem.get(keys.user_pk(user_id), keys.device_flow_sk(flow_id), consistent_read=True)
            except DeviceFlowItem.DoesNotExist:
                return None

    def update(self, user_id: str, flow_id: str, *, now: int, status: str | None = None, interval: int | None = None,
               error: str | None = None, execution_arn: str | None = None, only_if_pending: bool = True) -> bool:
        """Change a flow; False when it is no longer pending (cancelled, finished) or gone."""
        actions = [DeviceFlowItem.updated_at.set(now)]
        if status is not None:
            actions.append(DeviceFlowItem.status.set(status))
        if interval is not None:
            actions.append(DeviceFlowItem.interval.set(interval))
        if error is not None:
            actions.append(DeviceFlowItem.error.set(error))
        if execution_arn is not None:
            actions.append(DeviceFlowItem.execution_arn.set(execution_arn))
        condition = DeviceFlowItem.pk.exists()
        if only_if_pending:
            condition &= DeviceFlowItem.status == "pending"
        with translated("update"):
            try:
                DeviceFlowItem(keys.user_pk(user_id), keys.device_flow_sk(flow_id)).update(actions=actions,
                                                                                             condition=condition)
                return True
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise
