"""DynamoDB storage of the vault (the ``VaultStore`` port of relay_cloud.adapters.vault).

Data keys live under the user's partition (``USER#id`` / ``DATAKEY#000001``), credentials beside them
(``CRED#provider#id``), and one audit item per decrypt (``AUDIT#ms#id``, kept 400 days). Every read
is strongly consistent: a rotation or shred must never be missed. pynamodb exceptions are translated
by their underlying DynamoDB error code, never by message text.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from pynamodb.exceptions import DoesNotExist, PynamoDBException

from relay_cloud.adapters.dynamo.errors import CONDITION_FAILED, error_code, translate
from relay_cloud.adapters.dynamo.keys import (
    CREDENTIAL_PREFIX,
    DATA_KEY_PREFIX,
    audit_sk,
    credential_sk,
    data_key_sk,
    user_pk,
)
from relay_cloud.adapters.dynamo.models import AuditItem, CredentialItem, DataKeyItem

if TYPE_CHECKING:
    from relay_cloud.adapters.vault import VaultContext

AUDIT_RETENTION_SECONDS = 400 * 24 * 3600
DECRYPT_ACTION = "vault.decrypt"

class DynamoVaultStore:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    # data keys -------------------------------------------------------------------------

    def current_data_key(self, user_id: str) -> DataKeyItem | None:
        try:
            items = DataKeyItem.query(
                user_pk(user_id),
                DataKeyItem.sk.startswith(DATA_KEY_PREFIX),
                scan_index_forward=False,
                limit=1,
                consistent_read=True,
            )
            return next(iter(items), None)
        except PynamoDBException as exc:
            raise translate(exc, "query") from exc

    def data_key(self, user_id: str, version: int) -> DataKeyItem | None:
        try:
            return DataKeyItem.get(user_pk(user_id), data_key_sk(version), consistent_read=True)
        except DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise translate(exc, "get") from exc

    def data_key_versions(self, user_id: str) -> list[int]:
        try:
            items = DataKeyItem.query(
                user_pk(user_id),
                DataKeyItem.sk.startswith(DATA_KEY_PREFIX),
                consistent_read=True,
                attributes_to_get=["pk", "sk", "version"],
            )
            return [int(item.version) for item in items]
        except PynamoDBException as exc:
            raise translate(exc, "query") from exc

    def put_data_key(self, item: DataKeyItem) -> bool:
        """Store a new data key; False when one with that version already exists (a lost race)."""
        try:
            item.save(condition=DataKeyItem.pk.does_not_exist())
            return True
        except PynamoDBException as exc:
            if error_code(exc) == CONDITION_FAILED:
                return False
            raise translate(exc, "put") from exc

    def retire_data_keys(self, user_id: str, versions: Iterable[int]) -> None:
        """Rotation: these versions still open their ciphertext but accept no new one."""
        now = int(self._clock())
        try:
            for version in versions:
                DataKeyItem(user_pk(user_id), data_key_sk(version)).update(
                    actions=[DataKeyItem.retired_at.set(now)], condition=DataKeyItem.pk.exists()
                )
        except PynamoDBException as exc:
            if error_code(exc) == CONDITION_FAILED:
                return  # already deleted by a concurrent rotation
            raise translate(exc, "update") from exc

    def delete_data_keys(self, user_id: str, versions: Iterable[int]) -> None:
        try:
            for version in versions:
                DataKeyItem(user_pk(user_id), data_key_sk(version)).delete()
        except PynamoDBException as exc:
            raise translate(exc, "delete") from exc

    # credentials -----------------------------------------------------------------------

    def credentials(self, user_id: str) -> Iterator[CredentialItem]:
        """The user's sealed credentials (a workspace_login connection has no ciphertext: nothing to rewrap)."""
        try:
            yield from CredentialItem.query(
                user_pk(user_id), CredentialItem.sk.startswith(CREDENTIAL_PREFIX), consistent_read=True,
                filter_condition=CredentialItem.ciphertext.exists(),
            )
        except PynamoDBException as exc:
            raise translate(exc, "query") from exc

    def credential(self, user_id: str, provider: str, credential_id: str) -> CredentialItem | None:
        try:
            return CredentialItem.get(user_pk(user_id), credential_sk(provider, credential_id), consistent_read=True)
        except DoesNotExist:
            return None
        except PynamoDBException as exc:
            raise translate(exc, "get") from exc

    def replace_ciphertext(
        self, item: CredentialItem, ciphertext: bytes, key_version: int, expected_ciphertext: bytes
    ) -> bool:
        """Swap the ciphertext only if it is still ``expected_ciphertext``; False if someone changed it."""
        try:
            item.update(
                actions=[CredentialItem.ciphertext.set(ciphertext), CredentialItem.key_version.set(key_version)],
                condition=CredentialItem.pk.exists() & (CredentialItem.ciphertext == expected_ciphertext),
            )
            return True
        except PynamoDBException as exc:
            if error_code(exc) == CONDITION_FAILED:
                return False
            raise translate(exc, "update") from exc

    # audit -----------------------------------------------------------------------------

    def record_decrypt(
        self,
        user_id: str,
        actor: str,
        reason: str,
        ctx: VaultContext,
        key_version: int,
        *,
        outcome: str = "ok",
    ) -> None:
        """One audit item per decrypt: who, why, which credential and key version. Never the plaintext."""
        now = self._clock()
        event_id = secrets.token_hex(8)
        item = AuditItem(
            user_pk(user_id),
            audit_sk(int(now * 1000), event_id),
            event_id=event_id,
            action=DECRYPT_ACTION,
            actor=actor,
            subject=credential_sk(ctx.provider, ctx.credential_id),
            reason=reason,
            detail={
                "user_id": ctx.user_id,
                "provider": ctx.provider,
                "credential_id": ctx.credential_id,
                "purpose": ctx.purpose,
                "key_version": int(key_version),
                "outcome": outcome,
            },
            at=int(now),
            expires_at=int(now) + AUDIT_RETENTION_SECONDS,
        )
        try:
            item.save(condition=AuditItem.pk.does_not_exist())
        except PynamoDBException as exc:
            raise translate(exc, "put") from exc
