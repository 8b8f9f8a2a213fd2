"""The vault against an in-memory store and a fake KMS (real AES key wrapping, encryption context enforced)."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import replace

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from relay_cloud.adapters.dynamo.keys import credential_sk, data_key_sk, user_pk
from relay_cloud.adapters.dynamo.models import CredentialItem, DataKeyItem
from relay_cloud.adapters.vault import MAGIC, Sealed, Vault, VaultContext, key_version_of
from relay_cloud.domain.errors import DependencyUnavailable, VaultError

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/fake-cmk"
SECRET = b"sk-ant-api03-very-secret-token"


# ----------------------------------------------------------------------------- fakes


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "fake"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


class FakeKms:
    """GenerateDataKey/Decrypt with a real AES-GCM wrap whose AAD is the encryption context."""

    def __init__(self):
        self._master = AESGCM.generate_key(bit_length=256)
        self.calls: list[str] = []
        self.fail_with: ClientError | Exception | None = None

    @staticmethod
    def _aad(key_id: str, context: dict) -> bytes:
        return json.dumps({"key": key_id, "ctx": context}, sort_keys=True).encode()

    def generate_data_key(self, *, KeyId, KeySpec, EncryptionContext):
        self.calls.append("GenerateDataKey")
        if self.fail_with:
            raise self.fail_with
        assert KeySpec == "AES_256"
        plaintext = os.urandom(32)
        nonce = os.urandom(12)
        blob = nonce + AESGCM(self._master).encrypt(nonce, plaintext, self._aad(KeyId, EncryptionContext))
        return {"Plaintext": plaintext, "CiphertextBlob": blob, "KeyId": KeyId}

    def decrypt(self, *, CiphertextBlob, EncryptionContext=None, KeyId=None):
        self.calls.append("Decrypt")
        if self.fail_with:
            raise self.fail_with
        try:
            plaintext = AESGCM(self._master).decrypt(
                CiphertextBlob[:12], CiphertextBlob[12:], self._aad(KeyId or KEY_ARN, EncryptionContext or {})
            )
        except InvalidTag:
            raise _client_error("InvalidCiphertextException") from None
        return {"Plaintext": plaintext, "KeyId": KeyId}


class MemoryStore:
    """The VaultStore port in memory, with the same conditional semantics as DynamoVaultStore."""

    def __init__(self):
        self.items: dict[tuple[str, str], object] = {}
        self.audit: list[dict] = []
        self.fail_audit = False

    def _user_items(self, user_id, prefix):
        pk = user_pk(user_id)
        return [copy.copy(v) for (p, s), v in sorted(self.items.items()) if p == pk and s.startswith(prefix)]

    def current_data_key(self, user_id):
        keys = self._user_items(user_id, "DATAKEY#")
        return keys[-1] if keys else None

    def data_key(self, user_id, version):
        item = self.items.get((user_pk(user_id), data_key_sk(version)))
        return copy.copy(item) if item else None

    def data_key_versions(self, user_id):
        return [int(i.version) for i in self._user_items(user_id, "DATAKEY#")]

    def put_data_key(self, item):
        key = (item.pk, item.sk)
        if key in self.items:
            return False
        self.items[key] = copy.copy(item)
        return True

    def credentials(self, user_id):
        yield from self._user_items(user_id, "CRED#")

    def credential(self, user_id, provider, credential_id):
        item = self.items.get((user_pk(user_id), credential_sk(provider, credential_id)))
        return copy.copy(item) if item else None

    def replace_ciphertext(self, item, ciphertext, key_version, expected_ciphertext):
        stored = self.items.get((item.pk, item.sk))
        if stored is None or bytes(stored.ciphertext) != bytes(expected_ciphertext):
            return False
        stored.ciphertext = ciphertext
        stored.key_version = key_version
        return True

    def retire_data_keys(self, user_id, versions):
        for v in versions:
            item = self.items.get((user_pk(user_id), data_key_sk(v)))
            if item is not None:
                item.retired_at = 1
        self.retired = getattr(self, "retired", []) + list(versions)

    def delete_data_keys(self, user_id, versions):
        for v in versions:
            self.items.pop((user_pk(user_id), data_key_sk(v)), None)

    def record_decrypt(self, user_id, actor, reason, ctx, key_version, *, outcome="ok"):
        if self.fail_audit:
            raise DependencyUnavailable("audit down", code="DATABASE_UNAVAILABLE")
        self.audit.append(
            {"user_id": user_id, "actor": actor, "reason": reason, "ctx": ctx, "key_version": key_version, "outcome": outcome}
        )

    # helpers for tests
    def put_credential(self, ctx: VaultContext, ciphertext: bytes) -> None:
        item = CredentialItem(
            user_pk(ctx.user_id),
            credential_sk(ctx.provider, ctx.credential_id),
            user_id=ctx.user_id,
            provider=ctx.provider,
            credential_id=ctx.credential_id,
            purpose=ctx.purpose,
            ciphertext=ciphertext,
            key_version=key_version_of(ciphertext),
            created_at=0,
            updated_at=0,
        )
        self.items[(item.pk, item.sk)] = item

    def stored_credential(self, ctx: VaultContext) -> CredentialItem:
        return self.items[(user_pk(ctx.user_id), credential_sk(ctx.provider, ctx.credential_id))]


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kms():
    return FakeKms()


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def vault(kms, store, clock):
    return Vault(kms=kms, kms_key_id=KEY_ARN, store=store, clock=clock, cache_seconds=300, cache_uses=1000)


def new_vault(kms, store, clock, **kwargs) -> Vault:
    return Vault(kms=kms, kms_key_id=KEY_ARN, store=store, clock=clock, **kwargs)


CTX = VaultContext(user_id="u1", provider="anthropic", credential_id="c1", purpose="api_key")


def _open(vault, ctx, ct):
    return vault.decrypt(ctx, ct, actor="user:u1", reason="test")


# ----------------------------------------------------------------------------- round trip and binding


def test_round_trip(vault):
    ct = vault.encrypt(CTX, SECRET)
    assert ct.startswith(MAGIC) and key_version_of(ct) == 1
    assert SECRET not in ct
    assert _open(vault, CTX, ct) == SECRET
    assert _open(vault, CTX, vault.encrypt(CTX, b"")) == b""


def test_each_encryption_uses_a_fresh_nonce(vault):
    assert vault.encrypt(CTX, SECRET) != vault.encrypt(CTX, SECRET)


def test_canonical_context_bytes():
    assert CTX.canonical() == b'{"credential_id":"c1","provider":"anthropic","purpose":"api_key","user_id":"u1"}'
    with pytest.raises(ValueError):
        VaultContext(user_id="", provider="p", credential_id="c", purpose="x")


@pytest.mark.parametrize(
    "field,value",
    [("user_id", "u2"), ("provider", "openai"), ("credential_id", "c2"), ("purpose", "refresh_token")],
)
def test_swapped_context_field_fails(vault, field, value):
    vault.encrypt(replace(CTX, user_id="u2"), b"other user's key exists too")
    ct = vault.encrypt(CTX, SECRET)
    with pytest.raises(VaultError) as err:
        _open(vault, replace(CTX, **{field: value}), ct)
    assert err.value.code in ("VAULT_INTEGRITY", "VAULT_UNKNOWN_KEY")
    assert err.value.code == "VAULT_INTEGRITY"  # u2 has a version-1 key: the failure is the GCM tag


@pytest.mark.parametrize("bit", [0, 8 * 3, 8 * 7 + 3, 8 * 20, -1])
def test_flipped_bit_fails(vault, bit):
    ct = bytearray(vault.encrypt(CTX, SECRET))
    index = bit // 8 if bit >= 0 else len(ct) - 1
    ct[index] ^= 1 << (bit % 8 if bit >= 0 else 0)
    with pytest.raises(VaultError):
        _open(vault, CTX, bytes(ct))


def test_truncated_or_foreign_ciphertext_fails(vault):
    ct = vault.encrypt(CTX, SECRET)
    for bad in (b"", ct[:20], b"rv2" + ct[3:], b"xxx" + ct[3:], ct[:-1]):
        with pytest.raises(VaultError) as err:
            _open(vault, CTX, bad)
        assert err.value.code == "VAULT_INTEGRITY"


def test_unknown_key_version_fails_closed(vault):
    ct = vault.encrypt(CTX, SECRET)
    for version in (2, 0, 77):
        forged = MAGIC + version.to_bytes(4, "big") + ct[7:]
        with pytest.raises(VaultError) as err:
            _open(vault, CTX, forged)
        assert err.value.code == "VAULT_UNKNOWN_KEY"


def test_missing_data_key_fails_closed(kms, store, clock):
    ct = new_vault(kms, store, clock).encrypt(CTX, SECRET)
    store.delete_data_keys("u1", [1])
    with pytest.raises(VaultError) as err:
        _open(new_vault(kms, store, clock), CTX, ct)
    assert err.value.code == "VAULT_UNKNOWN_KEY"


def test_wrapped_key_bound_to_user_by_kms(kms, store, clock):
    """A data key item copied under another user is refused by KMS (encryption context)."""
    vault = new_vault(kms, store, clock)
    ct = vault.encrypt(CTX, SECRET)
    stolen = store.data_key("u1", 1)
    forged = DataKeyItem(
        user_pk("u9"), data_key_sk(1), user_id="u9", version=1, wrapped_key=stolen.wrapped_key,
        kms_key_id=stolen.kms_key_id, created_at=0,
    )
    assert store.put_data_key(forged)
    with pytest.raises(VaultError) as err:
        _open(new_vault(kms, store, clock), replace(CTX, user_id="u9"), ct)
    assert err.value.code == "VAULT_INTEGRITY"


# ----------------------------------------------------------------------------- cache


def test_warm_vault_makes_one_kms_call_per_window(kms, store, clock):
    vault = new_vault(kms, store, clock, cache_seconds=300, cache_uses=5000)
    ct = vault.encrypt(CTX, SECRET)
    assert vault.kms_calls == 1  # GenerateDataKey
    for _ in range(1000):
        assert _open(vault, CTX, ct) == SECRET
    assert vault.kms_calls <= 2
    assert kms.calls.count("Decrypt") <= 1

    cold = new_vault(kms, store, clock, cache_seconds=300, cache_uses=5000)
    for _ in range(1000):
        _open(cold, CTX, ct)
    assert cold.kms_calls == 1

    clock.now += 301
    before = cold.kms_calls
    for _ in range(1000):
        _open(cold, CTX, ct)
    assert cold.kms_calls == before + 1


def test_seal_reuses_cached_key(vault):
    vault.encrypt(CTX, SECRET)
    for i in range(50):
        vault.encrypt(replace(CTX, credential_id=f"c{i}"), SECRET)
    assert vault.kms_calls == 1


def test_use_count_bound(kms, store, clock):
    ct = new_vault(kms, store, clock).encrypt(CTX, SECRET)
    vault = new_vault(kms, store, clock, cache_seconds=300, cache_uses=10)
    for _ in range(25):
        _open(vault, CTX, ct)
    assert vault.kms_calls == 3  # uses 1-10, 11-20, 21-25


def test_cache_is_per_user(kms, store, clock):
    vault = new_vault(kms, store, clock)
    cts = {u: vault.encrypt(replace(CTX, user_id=u), SECRET) for u in ("a", "b", "c")}
    assert vault.kms_calls == 3
    cold = new_vault(kms, store, clock)
    for _ in range(10):
        for u, ct in cts.items():
            _open(cold, replace(CTX, user_id=u), ct)
    assert cold.kms_calls == 3


def test_forget_evicts(vault):
    ct = vault.encrypt(CTX, SECRET)
    vault.forget("u1")
    _open(vault, CTX, ct)
    assert vault.kms_calls == 2


# ----------------------------------------------------------------------------- new data keys


def test_seal_for_new_user_returns_key_for_the_caller_to_store(vault, store):
    sealed = vault.seal(CTX, SECRET)
    assert isinstance(sealed, Sealed) and sealed.key_version == 1
    item = sealed.new_data_key
    assert item is not None and item.pk == user_pk("u1") and item.sk == data_key_sk(1)
    assert item.user_id == "u1" and item.version == 1 and item.kms_key_id == KEY_ARN
    assert bytes(item.wrapped_key) and store.current_data_key("u1") is None  # not stored by seal

    assert store.put_data_key(item)  # the caller's transaction
    second = vault.seal(replace(CTX, credential_id="c2"), SECRET)
    assert second.new_data_key is None and second.key_version == 1
    assert _open(vault, CTX, sealed.ciphertext) == SECRET
    assert vault.kms_calls == 1  # our own generated key was recognised in the store: no Decrypt


def test_encrypt_persists_new_data_key(vault, store):
    vault.encrypt(CTX, SECRET)
    item = store.current_data_key("u1")
    assert item is not None and item.version == 1


def test_encrypt_lost_race_uses_winners_key(kms, store, clock):
    a = new_vault(kms, store, clock)
    b = new_vault(kms, store, clock)
    sealed_by_b = b.seal(CTX, b"b")  # b generated a key but has not stored it yet
    ct = a.encrypt(CTX, SECRET)  # a stores its key first
    assert not store.put_data_key(sealed_by_b.new_data_key)  # b's transaction would fail
    b.forget("u1")
    ct_b = b.encrypt(replace(CTX, credential_id="c2"), b"b")  # b now loads a's key
    assert _open(new_vault(kms, store, clock), CTX, ct) == SECRET
    assert _open(new_vault(kms, store, clock), replace(CTX, credential_id="c2"), ct_b) == b"b"


def test_encrypt_race_inside_encrypt(kms, clock):
    """The other writer stores its key between our seal and our conditional put."""
    store = MemoryStore()
    winner = new_vault(kms, store, clock)
    real_put = store.put_data_key
    state = {"raced": False}

    def racing_put(item):
        if not state["raced"]:
            state["raced"] = True
            winner.encrypt(replace(CTX, credential_id="w"), b"w")
        return real_put(item)

    store.put_data_key = racing_put
    loser = new_vault(kms, store, clock)
    ct = loser.encrypt(CTX, SECRET)
    assert len(store.data_key_versions("u1")) == 1
    assert _open(new_vault(kms, store, clock), CTX, ct) == SECRET
    assert _open(loser, CTX, ct) == SECRET


# ----------------------------------------------------------------------------- audit


def test_audit_item_per_decrypt(vault, store):
    ct = vault.encrypt(CTX, SECRET)
    for i in range(3):
        vault.decrypt(CTX, ct, actor=f"daemon:d{i}", reason="lease")
    assert len(store.audit) == 3
    assert [a["actor"] for a in store.audit] == ["daemon:d0", "daemon:d1", "daemon:d2"]
    assert all(a["reason"] == "lease" and a["ctx"] == CTX and a["key_version"] == 1 for a in store.audit)
    assert SECRET.decode() not in repr(store.audit)


def test_failed_decrypt_is_audited_too(vault, store):
    ct = vault.encrypt(CTX, SECRET)
    with pytest.raises(VaultError):
        vault.decrypt(replace(CTX, purpose="other"), ct, actor="user:u1", reason="view")
    assert len(store.audit) == 1 and store.audit[0]["outcome"] == "VAULT_INTEGRITY"


def test_no_plaintext_without_audit(vault, store):
    ct = vault.encrypt(CTX, SECRET)
    store.fail_audit = True
    with pytest.raises(DependencyUnavailable):
        vault.decrypt(CTX, ct, actor="user:u1", reason="view")


def test_decrypt_requires_actor_and_reason(vault):
    ct = vault.encrypt(CTX, SECRET)
    with pytest.raises(ValueError):
        vault.decrypt(CTX, ct, actor="", reason="x")


# ----------------------------------------------------------------------------- rotation


def _seed(vault, store, n=5, user="u1"):
    ctxs = [VaultContext(user, "anthropic" if i % 2 else "openai", f"c{i}", "api_key") for i in range(n)]
    for i, ctx in enumerate(ctxs):
        store.put_credential(ctx, vault.encrypt(ctx, b"secret-%d" % i))
    return ctxs


def test_rewrap_moves_every_item_to_the_new_version(vault, store, kms, clock):
    ctxs = _seed(vault, store)
    assert vault.rewrap("u1") == 5
    assert store.data_key_versions("u1") == [2]
    for i, ctx in enumerate(ctxs):
        item = store.stored_credential(ctx)
        assert item.key_version == 2 and key_version_of(item.ciphertext) == 2
        assert _open(new_vault(kms, store, clock), ctx, item.ciphertext) == b"secret-%d" % i
    assert vault.rewrap("u1") == 5 and store.data_key_versions("u1") == [3]
    # new seals use the new key
    assert key_version_of(vault.encrypt(replace(CTX, credential_id="new"), b"x")) == 3


def test_rewrap_seen_by_another_process(kms, store, clock):
    """A warm vault in another process never seals under a key version a rotation deleted."""
    other = new_vault(kms, store, clock)
    ctxs = _seed(other, store, n=2)
    new_vault(kms, store, clock).rewrap("u1")
    ct = other.encrypt(replace(CTX, credential_id="after"), b"x")
    assert key_version_of(ct) == 2
    assert _open(other, ctxs[0], store.stored_credential(ctxs[0]).ciphertext) == b"secret-0"


@pytest.mark.parametrize("writer_key", ["old", "new"])
def test_rewrap_with_concurrent_writer_loses_nothing(vault, store, kms, clock, writer_key):
    """A refresh writes a new token between rewrap's read of an item and its conditional write.

    "old": the writer sealed under version 1 (before the rotation began); rewrap re-reads and rewraps
    the writer's value. "new": the writer already used version 2; rewrap leaves it alone.
    """
    ctxs = _seed(vault, store)
    writer = new_vault(kms, store, clock)
    early = writer.encrypt(ctxs[2], b"refreshed-token") if writer_key == "old" else None
    real_replace = store.replace_ciphertext
    raced = []

    def racing_replace(item, ciphertext, key_version, expected_ciphertext):
        if not raced and item.credential_id == "c2":
            raced.append(True)
            store.put_credential(ctxs[2], early or writer.encrypt(ctxs[2], b"refreshed-token"))
        return real_replace(item, ciphertext, key_version, expected_ciphertext)

    store.replace_ciphertext = racing_replace
    assert vault.rewrap("u1") == (5 if writer_key == "old" else 4)
    assert raced
    fresh = new_vault(kms, store, clock)
    for i, ctx in enumerate(ctxs):
        item = store.stored_credential(ctx)
        expected = b"refreshed-token" if i == 2 else b"secret-%d" % i
        assert _open(fresh, ctx, item.ciphertext) == expected
        assert key_version_of(item.ciphertext) == item.key_version
    assert store.data_key_versions("u1") == [2]


def test_rewrap_writer_stuck_on_old_version_keeps_old_key(vault, store, kms, clock):
    """If an item still references the old version when rotation ends, the old key is kept."""
    ctxs = _seed(vault, store, n=2)
    real_replace = store.replace_ciphertext
    old_ct = bytes(store.stored_credential(ctxs[1]).ciphertext)

    def racing_replace(item, ciphertext, key_version, expected_ciphertext):
        ok = real_replace(item, ciphertext, key_version, expected_ciphertext)
        if item.credential_id == "c1":  # a stale writer puts back a v1 ciphertext right after
            store.put_credential(ctxs[1], old_ct)
        return ok

    store.replace_ciphertext = racing_replace
    vault.rewrap("u1")
    assert store.data_key_versions("u1") == [1, 2]
    fresh = new_vault(kms, store, clock)
    for i, ctx in enumerate(ctxs):
        assert _open(fresh, ctx, store.stored_credential(ctx).ciphertext) == b"secret-%d" % i


def test_rewrap_failure_midway_keeps_old_key(vault, store, kms, clock):
    ctxs = _seed(vault, store)
    real_replace = store.replace_ciphertext
    count = []

    def flaky_replace(*args):
        count.append(1)
        if len(count) == 3:
            raise DependencyUnavailable("throttled", code="DATABASE_UNAVAILABLE")
        return real_replace(*args)

    store.replace_ciphertext = flaky_replace
    with pytest.raises(DependencyUnavailable):
        vault.rewrap("u1")
    assert store.data_key_versions("u1") == [1, 2]
    fresh = new_vault(kms, store, clock)
    for i, ctx in enumerate(ctxs):
        assert _open(fresh, ctx, store.stored_credential(ctx).ciphertext) == b"secret-%d" % i
    store.replace_ciphertext = real_replace
    assert vault.rewrap("u1") == 5
    assert store.data_key_versions("u1") == [3]


def test_rewrap_with_corrupt_item_reports_and_keeps_its_key(vault, store, kms, clock):
    ctxs = _seed(vault, store, n=3)
    item = store.stored_credential(ctxs[0])
    item.ciphertext = bytes(item.ciphertext[:-1]) + bytes([item.ciphertext[-1] ^ 1])
    with pytest.raises(VaultError) as err:
        vault.rewrap("u1")
    assert err.value.code == "VAULT_REWRAP_INCOMPLETE" and err.value.details == {"rewrapped": 2, "failed": 1}
    assert store.data_key_versions("u1") == [1, 2]
    for i, ctx in enumerate(ctxs[1:], start=1):
        assert _open(new_vault(kms, store, clock), ctx, store.stored_credential(ctx).ciphertext) == b"secret-%d" % i


def test_rewrap_user_without_keys(vault):
    assert vault.rewrap("nobody") == 0


def test_concurrent_rewraps(kms, store, clock):
    a, b = new_vault(kms, store, clock), new_vault(kms, store, clock)
    ctxs = _seed(a, store, n=3)
    real_put = store.put_data_key

    def racing_put(item):
        if item.version == 2 and not raced:
            raced.append(True)
            b.rewrap("u1")  # b rotates to v2 first
        return real_put(item)

    raced = []

    store.put_data_key = racing_put
    a.rewrap("u1")  # loses the put, rotates onto b's v2
    store.put_data_key = real_put
    assert store.data_key_versions("u1") == [2]
    for i, ctx in enumerate(ctxs):
        assert _open(new_vault(kms, store, clock), ctx, store.stored_credential(ctx).ciphertext) == b"secret-%d" % i


# ----------------------------------------------------------------------------- shredding


def test_shred_fails_closed(vault, store, kms, clock):
    ctxs = _seed(vault, store, n=2)
    other = vault.encrypt(replace(CTX, user_id="u2"), b"keep me")
    vault.rewrap("u1")
    vault.shred("u1")
    assert store.data_key_versions("u1") == []
    for v in (vault, new_vault(kms, store, clock)):
        for ctx in ctxs:
            with pytest.raises(VaultError) as err:
                _open(v, ctx, store.stored_credential(ctx).ciphertext)
            assert err.value.code == "VAULT_UNKNOWN_KEY"
    assert _open(vault, replace(CTX, user_id="u2"), other) == b"keep me"


def test_shred_then_new_key_does_not_open_old_ciphertext(vault, store):
    old = vault.encrypt(CTX, SECRET)
    vault.shred("u1")
    vault.encrypt(replace(CTX, credential_id="new"), b"new")  # a fresh version-1 key
    with pytest.raises(VaultError):
        _open(vault, CTX, old)


def test_stale_cache_after_shred_elsewhere_is_detected_on_failure(kms, store, clock):
    warm = new_vault(kms, store, clock)
    old = warm.encrypt(CTX, SECRET)
    other = new_vault(kms, store, clock)
    other.shred("u1")
    new = other.encrypt(CTX, b"new-secret")  # recreated version 1 under a different key
    assert _open(warm, CTX, new) == b"new-secret"  # stale cache noticed, refreshed from the store
    with pytest.raises(VaultError):
        _open(warm, CTX, old)


# ----------------------------------------------------------------------------- KMS errors


@pytest.mark.parametrize(
    "error,expected",
    [
        (_client_error("ThrottlingException"), (DependencyUnavailable, "KMS_UNAVAILABLE")),
        (_client_error("KMSInternalException", 500), (DependencyUnavailable, "KMS_UNAVAILABLE")),
        (_client_error("DependencyTimeoutException", 503), (DependencyUnavailable, "KMS_UNAVAILABLE")),
        (ReadTimeoutError(endpoint_url="https://kms"), (DependencyUnavailable, "KMS_UNAVAILABLE")),
        (_client_error("InvalidCiphertextException"), (VaultError, "VAULT_INTEGRITY")),
        (_client_error("AccessDeniedException"), (VaultError, "VAULT_KEY_UNAVAILABLE")),
        (_client_error("DisabledException"), (VaultError, "VAULT_KEY_UNAVAILABLE")),
    ],
)
def test_kms_errors_are_translated(kms, store, clock, error, expected):
    ct = new_vault(kms, store, clock).encrypt(CTX, SECRET)
    kms.fail_with = error
    vault = new_vault(kms, store, clock)
    with pytest.raises(expected[0]) as err:
        _open(vault, CTX, ct)
    assert err.value.code == expected[1]
    assert SECRET.decode() not in str(err.value) and ct.hex() not in str(err.value)
    with pytest.raises(expected[0]):
        vault.encrypt(replace(CTX, user_id="fresh"), SECRET)


def test_errors_never_carry_secrets(vault):
    ct = vault.encrypt(CTX, SECRET)
    bad = ct[:-1] + bytes([ct[-1] ^ 1])
    with pytest.raises(VaultError) as err:
        _open(vault, CTX, bad)
    text = str(err.value) + repr(err.value.details) + repr(err.value.body())
    assert SECRET.decode() not in text and bad.hex() not in text and repr(bad) not in text


# ----------------------------------------------------------------------------- DynamoDB error translation


@pytest.mark.parametrize(
    "code,expected",
    [
        ("ProvisionedThroughputExceededException", "DATABASE_UNAVAILABLE"),
        ("ThrottlingException", "DATABASE_UNAVAILABLE"),
        ("InternalServerError", "DATABASE_UNAVAILABLE"),
        (None, "DATABASE_UNAVAILABLE"),
        ("ValidationException", "DATABASE_ERROR"),
    ],
)
def test_dynamo_errors_translated_by_code(code, expected):
    from pynamodb.exceptions import PutError

    from relay_cloud.adapters.dynamo.errors import translate

    cause = _client_error(code, 400) if code else ReadTimeoutError(endpoint_url="https://dynamodb")
    err = translate(PutError("put failed", cause=cause), "put")
    assert err.code == expected
    assert isinstance(err, DependencyUnavailable) == (expected == "DATABASE_UNAVAILABLE")


def test_rewrap_retires_old_versions_then_catches_writers_that_committed_before(vault, store, kms, clock):
    """A writer that sealed under v1 and commits during the first pass is rewrapped by the second pass
    (after v1 is retired no writer can commit under it), so v1 can go."""
    ctxs = _seed(vault, store, n=2)
    real_replace = store.replace_ciphertext
    old_ct = bytes(store.stored_credential(ctxs[1]).ciphertext)
    raced = []

    def writer_commits_once_during_the_first_pass(item, ciphertext, key_version, expected_ciphertext):
        ok = real_replace(item, ciphertext, key_version, expected_ciphertext)
        if item.credential_id == "c1" and not raced and not getattr(store, "retired", None):
            raced.append(True)
            store.put_credential(ctxs[1], old_ct)  # committed before the retirement
        return ok

    store.replace_ciphertext = writer_commits_once_during_the_first_pass
    vault.rewrap("u1")
    assert raced and store.retired == [1]
    assert store.data_key_versions("u1") == [2]
    assert key_version_of(store.stored_credential(ctxs[1]).ciphertext) == 2
    fresh = new_vault(kms, store, clock)
    for i, ctx in enumerate(ctxs):
        assert _open(fresh, ctx, store.stored_credential(ctx).ciphertext) == b"secret-%d" % i
