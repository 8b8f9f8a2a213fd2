"""The vault end to end under moto: real KMS emulation (encryption context enforced) and the real table."""

from __future__ import annotations

import time
from dataclasses import replace

import boto3
import pytest
from botocore.exceptions import ClientError

from relay_cloud.adapters.dynamo.keys import AUDIT_PREFIX, credential_sk, data_key_sk, user_pk
from relay_cloud.adapters.dynamo.models import AuditItem, CredentialItem, DataKeyItem
from relay_cloud.adapters.dynamo.vault_store import DynamoVaultStore
from relay_cloud.adapters.vault import Vault, VaultContext, key_version_of
from relay_cloud.domain.errors import VaultError

REGION = "us-east-1"
SECRET = b"gho_integration-secret-token"
CTX = VaultContext(user_id="u1", provider="anthropic", credential_id="c1", purpose="api_key")


@pytest.fixture
def kms_client(aws):
    return boto3.client("kms", region_name=REGION)


@pytest.fixture
def store(table):
    return DynamoVaultStore()


@pytest.fixture
def vault(kms_client, kms_key, store):
    return Vault(kms=kms_client, kms_key_id=kms_key, store=store)


def _fresh(kms_client, kms_key, store) -> Vault:
    return Vault(kms=kms_client, kms_key_id=kms_key, store=store)


def _save_credential(ctx: VaultContext, ciphertext: bytes) -> None:
    now = int(time.time())
    CredentialItem(
        user_pk(ctx.user_id),
        credential_sk(ctx.provider, ctx.credential_id),
        user_id=ctx.user_id,
        provider=ctx.provider,
        credential_id=ctx.credential_id,
        purpose=ctx.purpose,
        ciphertext=ciphertext,
        key_version=key_version_of(ciphertext),
        created_at=now,
        updated_at=now,
    ).save()


def _stored(ctx: VaultContext) -> CredentialItem:
    return CredentialItem.get(user_pk(ctx.user_id), credential_sk(ctx.provider, ctx.credential_id), consistent_read=True)


def test_round_trip_through_dynamo(vault, store, kms_client, kms_key):
    ct = vault.encrypt(CTX, SECRET)
    _save_credential(CTX, ct)
    item = DataKeyItem.get(user_pk("u1"), data_key_sk(1), consistent_read=True)
    assert item.version == 1 and item.kms_key_id == kms_key and len(bytes(item.wrapped_key)) > 32
    assert store.current_data_key("u1").version == 1

    cold = _fresh(kms_client, kms_key, store)
    assert cold.decrypt(CTX, bytes(_stored(CTX).ciphertext), actor="user:u1", reason="test") == SECRET
    assert cold.kms_calls == 1
    for _ in range(20):
        cold.decrypt(CTX, ct, actor="user:u1", reason="test")
    assert cold.kms_calls == 1
    with pytest.raises(VaultError):
        cold.decrypt(replace(CTX, provider="openai"), ct, actor="user:u1", reason="test")


def test_seal_new_data_key_in_callers_transaction(vault, store, kms_client, kms_key):
    from pynamodb.connection import Connection
    from pynamodb.transactions import TransactWrite

    sealed = vault.seal(CTX, SECRET)
    assert sealed.new_data_key is not None and store.current_data_key("u1") is None
    now = int(time.time())
    credential = CredentialItem(
        user_pk("u1"), credential_sk(CTX.provider, CTX.credential_id), user_id="u1", provider=CTX.provider,
        credential_id=CTX.credential_id, purpose=CTX.purpose, ciphertext=sealed.ciphertext,
        key_version=sealed.key_version, created_at=now, updated_at=now,
    )
    with TransactWrite(connection=Connection(region=REGION)) as tx:  # what the caller does
        tx.save(sealed.new_data_key, condition=DataKeyItem.pk.does_not_exist())
        tx.save(credential)
    assert store.put_data_key(sealed.new_data_key) is False  # the key now exists: a second put loses
    assert _fresh(kms_client, kms_key, store).decrypt(CTX, sealed.ciphertext, actor="a", reason="r") == SECRET


def test_wrapped_key_cannot_be_opened_with_another_users_context(vault, kms_client, kms_key):
    vault.encrypt(CTX, SECRET)
    wrapped = bytes(DataKeyItem.get(user_pk("u1"), data_key_sk(1)).wrapped_key)

    own = {"user_id": "u1", "purpose": "relay-vault-data-key", "key_version": "1"}
    assert len(kms_client.decrypt(CiphertextBlob=wrapped, EncryptionContext=own, KeyId=kms_key)["Plaintext"]) == 32
    for other in (
        {**own, "user_id": "u2"},
        {**own, "key_version": "2"},
        {**own, "purpose": "something-else"},
        {},
    ):
        with pytest.raises(ClientError) as err:
            kms_client.decrypt(CiphertextBlob=wrapped, EncryptionContext=other, KeyId=kms_key)
        assert err.value.response["Error"]["Code"] == "InvalidCiphertextException"


def test_data_key_item_copied_to_another_user_fails_closed(vault, store, kms_client, kms_key):
    ct = vault.encrypt(CTX, SECRET)
    stolen = DataKeyItem.get(user_pk("u1"), data_key_sk(1))
    DataKeyItem(
        user_pk("u2"), data_key_sk(1), user_id="u2", version=1, wrapped_key=bytes(stolen.wrapped_key),
        kms_key_id=stolen.kms_key_id, created_at=0,
    ).save()
    with pytest.raises(VaultError) as err:
        _fresh(kms_client, kms_key, store).decrypt(replace(CTX, user_id="u2"), ct, actor="x", reason="y")
    assert err.value.code == "VAULT_INTEGRITY"


def test_rewrap_end_to_end(vault, store, kms_client, kms_key):
    ctxs = [VaultContext("u1", p, f"c{i}", "api_key") for i, p in enumerate(["anthropic", "openai", "google"])]
    for i, ctx in enumerate(ctxs):
        _save_credential(ctx, vault.encrypt(ctx, b"token-%d" % i))
    other = VaultContext("u2", "anthropic", "c0", "api_key")
    _save_credential(other, vault.encrypt(other, b"u2-token"))

    assert vault.rewrap("u1") == 3
    assert store.data_key_versions("u1") == [2]
    assert store.data_key_versions("u2") == [1]
    cold = _fresh(kms_client, kms_key, store)
    for i, ctx in enumerate(ctxs):
        item = _stored(ctx)
        assert item.key_version == 2 and key_version_of(bytes(item.ciphertext)) == 2
        assert cold.decrypt(ctx, bytes(item.ciphertext), actor="user:u1", reason="check") == b"token-%d" % i
    assert cold.decrypt(other, bytes(_stored(other).ciphertext), actor="user:u2", reason="check") == b"u2-token"


def test_replace_ciphertext_is_conditional(vault, store):
    ct = vault.encrypt(CTX, SECRET)
    _save_credential(CTX, ct)
    item = _stored(CTX)
    newer = vault.encrypt(CTX, b"newer")
    assert store.replace_ciphertext(item, newer, 1, expected_ciphertext=ct) is True
    assert store.replace_ciphertext(item, ct, 1, expected_ciphertext=ct) is False
    assert bytes(_stored(CTX).ciphertext) == newer


def test_shred_end_to_end(vault, store, kms_client, kms_key):
    _save_credential(CTX, vault.encrypt(CTX, SECRET))
    vault.rewrap("u1")
    vault.shred("u1")
    assert store.data_key_versions("u1") == []
    assert store.current_data_key("u1") is None
    for v in (vault, _fresh(kms_client, kms_key, store)):
        with pytest.raises(VaultError) as err:
            v.decrypt(CTX, bytes(_stored(CTX).ciphertext), actor="user:u1", reason="after shred")
        assert err.value.code == "VAULT_UNKNOWN_KEY"


def test_audit_items_in_table(vault):
    ct = vault.encrypt(CTX, SECRET)
    vault.decrypt(CTX, ct, actor="daemon:d1", reason="lease")
    vault.decrypt(CTX, ct, actor="user:u1", reason="reveal")
    with pytest.raises(VaultError):
        vault.decrypt(replace(CTX, purpose="other"), ct, actor="user:u1", reason="swap")

    items = list(AuditItem.query(user_pk("u1"), AuditItem.sk.startswith(AUDIT_PREFIX), consistent_read=True))
    assert len(items) == 3
    assert sorted((i.actor, i.reason, i.detail["outcome"]) for i in items) == [
        ("daemon:d1", "lease", "ok"),
        ("user:u1", "reveal", "ok"),
        ("user:u1", "swap", "VAULT_INTEGRITY"),
    ]
    now = time.time()
    for item in items:
        assert item.action == "vault.decrypt"
        assert item.detail["provider"] == "anthropic" and item.detail["credential_id"] == "c1"
        assert item.detail["key_version"] == 1
        assert now + 399 * 86400 < item.expires_at < now + 401 * 86400
        raw = repr(item.serialize())
        assert SECRET.decode() not in raw and SECRET.hex() not in raw
