"""DynamoDB side of the token-refresh sweep (the ``RefreshStore`` port of relay_cloud.services.refresh).

Reads
    * ``due``: a Query of the due index (gsi2) for one bucket with ``gsi2sk < <now+1>``, projected to the
      few attributes the sweep needs (no ciphertext crosses the wire): one item read per due credential.
    * the lease is an UpdateItem whose ``ALL_NEW`` answer is the authoritative item, so the sweep never
      follows an index item with a GetItem; ``get`` (one consistent GetItem) serves ``refresh_one`` only.
    * the sweep cursor: one consistent GetItem per sweep.
    No Scan, ever.

Writes are all conditional: the lease on "no live lease, same generation, still scheduled (and due)";
storing tokens, re-scheduling and recording a failure on ``lease_owner = me``. Storing tokens is a
transaction with a ConditionCheck that the data-key version the tokens were sealed under still exists
(a rotation racing the refresh makes the caller seal again instead of leaving unreadable ciphertext).

"""

from __future__ import annotations

from collections.abc import Iterator

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import CredentialItem, DataKeyItem, SweepCursorItem
from relay_cloud.services.refresh import (
    LEASE_LOST,
    STALE_KEY,
    STORED,
    Credential,
    DueCredential,
    TokenUpdate,
)

SWEEP = "token-refresh"
PAGE_SIZE = 100
_DUE_PROJECTION = ["pk", "sk", "user_id", "provider", "generation", "refresh_due_at", "gsi2pk"]


def _credential(item: CredentialItem) -> Credential:
    return Credential(
        user_id=item.user_id, provider=item.provider, method=item.method, purpose=item.purpose,
        # A workspace_login connection has no ciphertext (and is never due): read it, never refresh it.
        ciphertext=bytes(item.ciphertext) if item.ciphertext is not None else None,
        key_version=int(item.key_version) if item.key_version is not None else None,
        generation=int(item.generation or 0),
        status=item.status,
        refresh_due_at=int(item.refresh_due_at) if item.refresh_due_at is not None and item.gsi2pk else None,
        token_expires_at=int(item.token_expires_at) if item.token_expires_at is not None else None,
        attempts=int(item.refresh_attempts or 0), lease_owner=item.lease_owner,
    )


def _key(user_id: str, provider: str) -> tuple[str, str]:
    return keys.user_pk(user_id), keys.credential_sk(provider, keys.CONNECTION_ID)


def token_actions(credential: Credential, update: TokenUpdate, now: int) -> list:
    """The update that stores refreshed tokens: new ciphertext and schedule, generation + 1, lease cleared."""
    c = CredentialItem
    actions = [
        c.ciphertext.set(update.ciphertext), c.key_version.set(update.key_version), c.generation.add(1),
        c.token_issued_at.set(update.issued_at), c.last_refreshed_at.set(now), c.updated_at.set(now),
        c.status.set("valid"), c.failure_reason.remove(), c.lease_owner.remove(), c.lease_until.remove(),
        c.refresh_attempts.remove(),
    ]
    actions.append(c.token_expires_at.set(update.expires_at) if update.expires_at is not None
                   else c.token_expires_at.remove())
    if update.due_at is not None:
        actions += [c.refresh_due_at.set(update.due_at),
                    c.gsi2pk.set(keys.refresh_gsi_pk(keys.refresh_bucket(update.due_at))),
                    c.gsi2sk.set(keys.refresh_gsi_sk(update.due_at, credential.user_id, credential.provider))]
    else:  # no refresh token or no expiry any more: leaves the due index
        actions += [c.refresh_due_at.remove(), c.gsi2pk.remove(), c.gsi2sk.remove()]
    return actions


def _transaction() -> TransactWrite:
    return TransactWrite(connection=CredentialItem._get_connection().connection)


class DynamoRefreshStore:
    # -- reads ---------------------------------------------------------------------------------

    def due(self, bucket: int, now: int) -> Iterator[DueCredential]:
        """Credentials of one bucket whose refresh is due at ``now`` (index order: earliest first)."""
        with translated("query"):
            results = CredentialItem.by_due_time.query(
                keys.refresh_gsi_pk(bucket),
                CredentialItem.gsi2sk < f"{now + 1:010d}",  # gsi2sk = <due_at:010d>#user#provider
                attributes_to_get=_DUE_PROJECTION,
                page_size=PAGE_SIZE,
            )
            for item in results:
                yield DueCredential(item.user_id, item.provider, int(item.generation or 0), int(item.refresh_due_at),
                                    bucket)

    def get(self, user_id: str, provider: str) -> Credential | None:
        with translated("get"):
            try:
                return _credential(CredentialItem.get(*_key(user_id, provider), consistent_read=True))
            except CredentialItem.DoesNotExist:
                return None

    # -- the lease -----------------------------------------------------------------------------

    def acquire(self, user_id: str, provider: str, *, generation: int, owner: str, now: int, lease_until: int,
                require_due: bool = True) -> Credential | None:
        """Take the single-flight lease; the leased item, or None when someone else holds it or the item
        changed (new generation, no longer scheduled, not due)."""
        condition = (
            (CredentialItem.lease_until.does_not_exist() | (CredentialItem.lease_until < now))
            & (CredentialItem.generation == generation)
            & CredentialItem.gsi2pk.exists()
        )
        if require_due:
            condition &= CredentialItem.refresh_due_at <= now
        item = CredentialItem(*_key(user_id, provider))
        with translated("update"):
            try:
                item.update(actions=[CredentialItem.lease_owner.set(owner),
                                            CredentialItem.lease_until.set(lease_until)], condition=condition)
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return None
                raise
        return _credential(item)

    # -- conditional writes by the lease holder --------------------------------------------------

    def store_tokens(self, credential: Credential, update: TokenUpdate, *, owner: str, now: int) -> str:
        actions = token_actions(credential, update, now)
        with translated("transaction"):
            try:
                with _transaction() as tx:
                    tx.update(CredentialItem(*_key(credential.user_id, credential.provider)), actions=actions,
                              condition=CredentialItem.lease_owner == owner)
                    tx.condition_check(DataKeyItem, keys.user_pk(credential.user_id),
                                       keys.data_key_sk(update.key_version), condition=DataKeyItem.accepts_new_ciphertext())
            except TransactWriteError as exc:
                if not is_condition_failure(exc):
                    raise
                # pynamodb sends condition checks first, then updates: [data key check, credential update].
                reasons = exc.cancellation_reasons or []
                key_check = reasons[0] if reasons else None
                if key_check is not None and key_check.code == "ConditionalCheckFailed":
                    return STALE_KEY
                return LEASE_LOST
        return STORED

    def reschedule(self, credential: Credential, *, owner: str, due_at: int, attempts: int, now: int) -> bool:
        c = CredentialItem
        return self._update_as_owner(credential, owner, [
            c.refresh_due_at.set(due_at),
            c.gsi2pk.set(keys.refresh_gsi_pk(keys.refresh_bucket(due_at))),
            c.gsi2sk.set(keys.refresh_gsi_sk(due_at, credential.user_id, credential.provider)),
            c.refresh_attempts.set(attempts),
            c.lease_owner.remove(), c.lease_until.remove(), c.updated_at.set(now),
        ])

    def record_failure(self, credential: Credential, *, owner: str, status: str, reason: str, now: int) -> bool:
        """Permanent: status and reason recorded, out of the due index, ciphertext kept."""
        c = CredentialItem
        return self._update_as_owner(credential, owner, [
            c.status.set(status), c.failure_reason.set(reason), c.updated_at.set(now),
            c.refresh_due_at.remove(), c.gsi2pk.remove(), c.gsi2sk.remove(), c.refresh_attempts.remove(),
            c.lease_owner.remove(), c.lease_until.remove(),
        ])

    def _update_as_owner(self, credential: Credential, owner: str, actions: list) -> bool:
        item = CredentialItem(*_key(credential.user_id, credential.provider))
        with translated("update"):
            try:
                item.update(actions=actions, condition=CredentialItem.lease_owner == owner)
                return True
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise

    # -- the sweep cursor ------------------------------------------------------------------------

    def cursor(self) -> int | None:
        with translated("get"):
            try:
                item = SweepCursorItem.get(keys.sweep_cursor_pk(SWEEP), keys.SWEEP_CURSOR_SK, consistent_read=True)
            except SweepCursorItem.DoesNotExist:
                return None
        return int(item.bucket)

    def set_cursor(self, bucket: int, now: int) -> None:
        with translated("put"):
            SweepCursorItem(keys.sweep_cursor_pk(SWEEP), keys.SWEEP_CURSOR_SK, bucket=int(bucket),
                            updated_at=int(now)).save()
