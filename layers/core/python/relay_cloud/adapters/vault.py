"""The credential vault: KMS envelope encryption with per-user data keys (SPEC C3).

Layout of the keys
    * one data key per user and version, made by KMS ``GenerateDataKey`` under the stack's CMK with the
      encryption context ``{"user_id", "purpose": "relay-vault-data-key", "key_version"}`` and stored
      only wrapped (``DataKeyItem``); the plaintext data key lives only in this process's memory;
    * per credential, a subkey ``HKDF-SHA256(data_key, salt=None, info=b"relay-vault/v1|" + ctx)`` where
      ``ctx`` is the canonical JSON of ``{user_id, provider, credential_id, purpose}``;
    * AES-256-GCM under the subkey with a random 96-bit nonce and the associated data
      ``ctx + header`` (``header`` = magic and key version).

So KMS binds the user and key version to the data key, and HKDF info plus GCM associated data bind
all four context fields to each ciphertext: a ciphertext moved to another user, provider, credential
id or purpose, or edited by a single bit, fails to open.

Ciphertext format (``rv1``)::

    b"rv1" | key version (4 bytes, big endian) | nonce (12 bytes) | GCM ciphertext + 16-byte tag

Caching: unwrapped data keys are cached per ``(user_id, version)`` for at most ``cache_seconds`` and
``cache_uses`` operations, so a warm vault makes at most one KMS call per user per cache window.
Sealing always reads the user's current key item from the store (one consistent DynamoDB query; no
KMS call when the cached key matches the stored wrapped key), so a rotation done by another process
is never missed and nothing is ever sealed under a superseded key version.

Nothing secret (plaintext, key material, ciphertext) ever appears in an exception message or a log.

Concurrency notes for callers
    * ``seal`` for a user without a data key returns ``Sealed.new_data_key``: persist it in the same
      TransactWriteItems as the ciphertext, as a Put conditioned on ``attribute_not_exists(pk)``. If
      that transaction is cancelled, call ``forget(user_id)`` and seal again (another writer won).
    * A rotation racing a write: a caller storing ciphertext adds a ConditionCheck
      ``DataKeyItem.accepts_new_ciphertext()`` on ``(user_pk(user_id), data_key_sk(sealed.key_version))``
      to its transaction. ``rewrap`` retires the old versions (they still open, but accept no new
      ciphertext), rewraps every item again, and deletes a version only when nothing references it; a
      writer that loses to the retirement seals again under the current key.
    * A cache in another process may still hold a shredded user's key for up to ``cache_seconds``;
      account deletion removes the user's ciphertext items as well.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from relay_cloud.adapters.dynamo.keys import data_key_sk, user_pk
from relay_cloud.adapters.dynamo.models import CredentialItem, DataKeyItem
from relay_cloud.domain.errors import DependencyUnavailable, VaultError

logger = logging.getLogger(__name__)

MAGIC = b"rv1"
_VERSION = struct.Struct(">I")
HEADER_LEN = len(MAGIC) + _VERSION.size
NONCE_LEN = 12
TAG_LEN = 16
DATA_KEY_PURPOSE = "relay-vault-data-key"
HKDF_INFO_PREFIX = b"relay-vault/v1|"
MAX_KEY_VERSION = 999_999  # keys.data_key_sk pads the version to six digits

INTEGRITY = "VAULT_INTEGRITY"
UNKNOWN_KEY = "VAULT_UNKNOWN_KEY"
KEY_UNAVAILABLE = "VAULT_KEY_UNAVAILABLE"
REWRAP_INCOMPLETE = "VAULT_REWRAP_INCOMPLETE"
KMS_UNAVAILABLE = "KMS_UNAVAILABLE"

# KMS error codes a caller may retry; everything else fails closed as a VaultError.
_KMS_TRANSIENT = frozenset(
    {
        "ThrottlingException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "LimitExceededException",
        "RequestLimitExceeded",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_KMS_INTEGRITY = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


@dataclass(frozen=True)
class VaultContext:
    """What a ciphertext is bound to. All four fields are required, non-empty strings."""

    user_id: str
    provider: str
    credential_id: str
    purpose: str

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"VaultContext.{name} must be a non-empty string")

    def canonical(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Sealed:
    """A sealed credential.

    ``new_data_key`` is set when this seal created the user's first data key: the caller must persist
    it in the same DynamoDB transaction as the ciphertext (Put with ``attribute_not_exists(pk)``). It
    is None when the key already existed.
    """

    ciphertext: bytes
    key_version: int
    new_data_key: DataKeyItem | None = None


class VaultStore(Protocol):
    """The vault's storage port (relay_cloud.adapters.dynamo.vault_store.DynamoVaultStore)."""

    def current_data_key(self, user_id: str) -> DataKeyItem | None: ...

    def data_key(self, user_id: str, version: int) -> DataKeyItem | None: ...

    def data_key_versions(self, user_id: str) -> list[int]: ...

    def put_data_key(self, item: DataKeyItem) -> bool: ...

    def credentials(self, user_id: str) -> Iterator[CredentialItem]: ...

    def credential(self, user_id: str, provider: str, credential_id: str) -> CredentialItem | None: ...

    def replace_ciphertext(
        self, item: CredentialItem, ciphertext: bytes, key_version: int, expected_ciphertext: bytes
    ) -> bool: ...

    def retire_data_keys(self, user_id: str, versions: Iterable[int]) -> None: ...

    def delete_data_keys(self, user_id: str, versions: Iterable[int]) -> None: ...

    def record_decrypt(
        self,
        user_id: str,
        actor: str,
        reason: str,
        ctx: VaultContext,
        key_version: int,
        *,
        outcome: str = "ok",
    ) -> None: ...


@dataclass
class _CachedKey:
    key: bytes
    wrapped: bytes
    loaded_at: float
    uses: int = 0


def key_version_of(ciphertext: bytes) -> int:
    """The data-key version a ciphertext was sealed under (VaultError if it is not an rv1 ciphertext)."""
    return _parse(ciphertext)[0]


def _parse(ciphertext: bytes) -> tuple[int, bytes, bytes, bytes]:
    if not isinstance(ciphertext, (bytes, bytearray, memoryview)):
        raise VaultError("ciphertext is not bytes", code=INTEGRITY)
    ciphertext = bytes(ciphertext)
    if len(ciphertext) < HEADER_LEN + NONCE_LEN + TAG_LEN or not ciphertext.startswith(MAGIC):
        raise VaultError("ciphertext format not recognised", code=INTEGRITY)
    header = ciphertext[:HEADER_LEN]
    (version,) = _VERSION.unpack_from(ciphertext, len(MAGIC))
    nonce = ciphertext[HEADER_LEN : HEADER_LEN + NONCE_LEN]
    body = ciphertext[HEADER_LEN + NONCE_LEN :]
    return version, header, nonce, body


def _header(version: int) -> bytes:
    return MAGIC + _VERSION.pack(version)


def _subkey(data_key: bytes, canonical: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=HKDF_INFO_PREFIX + canonical).derive(data_key)


def _kms_context(user_id: str, version: int) -> dict[str, str]:
    return {"user_id": user_id, "purpose": DATA_KEY_PURPOSE, "key_version": str(version)}


def _kms_error(exc: Exception, operation: str) -> Exception:
    """Translate a KMS failure by its error code (never by message text)."""
    if isinstance(exc, BotoCoreError):  # connection and read timeouts, endpoint errors
        return DependencyUnavailable(f"KMS {operation} failed; retry later", code=KMS_UNAVAILABLE)
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(exc, ClientError) else 0
    if code in _KMS_TRANSIENT or (code not in _KMS_INTEGRITY and isinstance(status, int) and status >= 500):
        return DependencyUnavailable(f"KMS {operation} failed; retry later", code=KMS_UNAVAILABLE)
    if code in _KMS_INTEGRITY:
        return VaultError("data key could not be unwrapped", code=INTEGRITY)
    return VaultError(f"KMS {operation} refused ({code or 'unknown'})", code=KEY_UNAVAILABLE)


class Vault:
    """Seal and open credentials; rotate (rewrap) and crypto-shred a user's data keys."""

    MAX_CACHED_KEYS = 4096
    REWRAP_ATTEMPTS = 5

    def __init__(
        self,
        *,
        kms: Any,
        kms_key_id: str,
        store: VaultStore,
        clock: Callable[[], float] = time.time,
        cache_seconds: int = 300,
        cache_uses: int = 1000,
    ) -> None:
        if not kms_key_id:
            raise ValueError("kms_key_id is required")
        if cache_seconds < 0 or cache_uses < 1:
            raise ValueError("cache_seconds must be >= 0 and cache_uses >= 1")
        self._kms = kms
        self._kms_key_id = kms_key_id
        self._store = store
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache_uses = cache_uses
        self._cache: dict[tuple[str, int], _CachedKey] = {}
        # Keys this process generated whose item is not yet known to be stored (seal's new_data_key).
        self._pending: dict[tuple[str, int], _CachedKey] = {}
        self._lock = threading.RLock()
        self.kms_calls = 0

    # ------------------------------------------------------------------ public API

    def seal(self, ctx: VaultContext, plaintext: bytes) -> Sealed:
        """Encrypt under the user's current data key; create version 1 (returned, not stored) if none."""
        _check_plaintext(plaintext)
        item = self._store.current_data_key(ctx.user_id)
        if item is None:
            new_item, key = self._generate(ctx.user_id, 1)
            with self._lock:
                self._pending[(ctx.user_id, 1)] = _CachedKey(key, bytes(new_item.wrapped_key), self._clock())
            return Sealed(_encrypt(key, 1, ctx, plaintext), 1, new_item)
        version = int(item.version)
        key = self._key(ctx.user_id, version, item)
        return Sealed(_encrypt(key, version, ctx, plaintext), version, None)

    def encrypt(self, ctx: VaultContext, plaintext: bytes) -> bytes:
        """Like ``seal``, but stores a newly created data key itself (conditional put).

        If another writer stored the user's first key meanwhile, our key is dropped and the plaintext is
        encrypted again under the winner's key.
        """
        sealed = self.seal(ctx, plaintext)
        if sealed.new_data_key is None:
            return sealed.ciphertext
        if self._store.put_data_key(sealed.new_data_key):
            self._confirm(ctx.user_id, sealed.key_version)
            return sealed.ciphertext
        with self._lock:
            self._pending.pop((ctx.user_id, sealed.key_version), None)
            self._cache.pop((ctx.user_id, sealed.key_version), None)
        logger.info("vault data key race lost; using the stored key", extra={"user_id": ctx.user_id})
        sealed = self.seal(ctx, plaintext)
        if sealed.new_data_key is not None:  # the winner's key vanished again (shredded): give up
            raise VaultError("data key could not be established", code=KEY_UNAVAILABLE)
        return sealed.ciphertext

    def decrypt(self, ctx: VaultContext, ciphertext: bytes, *, actor: str, reason: str) -> bytes:
        """Open a ciphertext; writes exactly one audit item (actor, reason, context, version, outcome).

        The plaintext is returned only after its audit item is stored.
        """
        if not actor or not reason:
            raise ValueError("decrypt needs an actor and a reason for the audit trail")
        version = 0
        try:
            version, header, nonce, body = _parse(ciphertext)
            if not 1 <= version <= MAX_KEY_VERSION:
                raise VaultError("ciphertext refers to an unknown key version", code=UNKNOWN_KEY)
            plaintext = self._open(ctx, version, header, nonce, body)
        except (VaultError, DependencyUnavailable) as exc:
            self._audit_failure(ctx, actor, reason, version, exc.code)
            raise
        self._store.record_decrypt(ctx.user_id, actor, reason, ctx, version, outcome="ok")
        return plaintext

    def rewrap(self, user_id: str) -> int:
        """Rotate: re-encrypt every credential of the user under a new data key version.

        Version current+1 is stored first; each item is replaced with a conditional update (condition:
        its ciphertext is unchanged) and, when a concurrent writer got there first, re-read and retried.
        Old key versions are deleted only once no credential references them. Returns how many items
        were rewrapped. If anything fails, the old keys stay, so every item remains decryptable.
        """
        current = self._store.current_data_key(user_id)
        if current is None:
            if next(iter(self._store.credentials(user_id)), None) is not None:
                raise VaultError("credentials exist but the user has no data key", code=UNKNOWN_KEY)
            return 0
        target = int(current.version) + 1
        if target > MAX_KEY_VERSION:
            raise VaultError("key version space exhausted", code=KEY_UNAVAILABLE)
        new_item, key = self._generate(user_id, target)
        if self._store.put_data_key(new_item):
            with self._lock:
                self._cache[(user_id, target)] = _CachedKey(key, bytes(new_item.wrapped_key), self._clock())
        else:  # a concurrent rewrap created it first: rotate onto the winner's key
            winner = self._store.current_data_key(user_id)
            if winner is None:
                raise VaultError("data key vanished during rotation", code=UNKNOWN_KEY)
            target = int(winner.version)
            self._key(user_id, target, winner, count_use=False)

        rewrapped = 0
        failed = 0
        # Two passes around retiring the old versions: a writer that sealed under an old key before it
        # was retired may commit during the first pass; once retired, no writer can (its transaction's
        # condition on the key fails and it seals again), so the second pass catches every straggler.
        for rewrap_pass in range(2):
            if rewrap_pass == 1:
                self._store.retire_data_keys(user_id, [v for v in self._store.data_key_versions(user_id) if v < target])
            failed = 0
            for item in self._store.credentials(user_id):
                try:
                    if self._rewrap_item(user_id, item, target):
                        rewrapped += 1
                except VaultError:
                    failed += 1  # cannot be opened under its own key: leave it (and its key) untouched
        referenced = self._referenced_versions(user_id)
        obsolete = [v for v in self._store.data_key_versions(user_id) if v < target and v not in referenced]
        if obsolete:
            self._store.delete_data_keys(user_id, obsolete)
            with self._lock:
                for v in obsolete:
                    self._cache.pop((user_id, v), None)
                    self._pending.pop((user_id, v), None)
        if failed:
            raise VaultError(
                "some credentials could not be rewrapped; their key versions were kept",
                code=REWRAP_INCOMPLETE,
                rewrapped=rewrapped,
                failed=failed,
            )
        return rewrapped

    def shred(self, user_id: str) -> None:
        """Crypto-shred: delete every data key of the user and evict them; their ciphertext is now noise."""
        self.forget(user_id)
        versions = self._store.data_key_versions(user_id)
        if versions:
            self._store.delete_data_keys(user_id, versions)
        self.forget(user_id)

    def forget(self, user_id: str) -> None:
        """Evict the user's data keys from this process's cache."""
        with self._lock:
            for cache in (self._cache, self._pending):
                for cache_key in [k for k in cache if k[0] == user_id]:
                    del cache[cache_key]

    # ------------------------------------------------------------------ internals

    def _open(self, ctx: VaultContext, version: int, header: bytes, nonce: bytes, body: bytes) -> bytes:
        cache_key = (ctx.user_id, version)
        key = self._key(ctx.user_id, version, None)
        try:
            return _decrypt(key, ctx, header, nonce, body)
        except VaultError:
            pass
        # The tag did not verify. Before calling it tampering, make sure our cached key is not stale
        # (the key item was shredded or recreated by another process): a DynamoDB read, no KMS call.
        with self._lock:
            entry = self._cache.get(cache_key)
        item = self._store.data_key(ctx.user_id, version)
        if item is None:
            self._evict(cache_key)
            raise VaultError("ciphertext refers to an unknown key version", code=UNKNOWN_KEY)
        if entry is None or entry.wrapped == bytes(item.wrapped_key):
            raise VaultError("ciphertext failed its integrity check", code=INTEGRITY)
        self._evict(cache_key)
        key = self._key(ctx.user_id, version, item)
        return _decrypt(key, ctx, header, nonce, body)

    def _rewrap_item(self, user_id: str, item: CredentialItem, target: int) -> bool:
        for _ in range(self.REWRAP_ATTEMPTS):
            if item is None or item.ciphertext is None:
                return False  # deleted concurrently, or replaced by a workspace_login connection: nothing to keep
            old = bytes(item.ciphertext)
            version, header, nonce, body = _parse(old)
            if version > target or (version == target and int(item.key_version) == target):
                return False  # already under this (or a newer, concurrent rotation's) key
            if item.user_id != user_id:
                raise VaultError("credential item belongs to another user", code=INTEGRITY)
            ctx = VaultContext(user_id, item.provider, item.credential_id, item.purpose)
            if version == target:
                new = old  # only the item's key_version attribute lagged behind its ciphertext
            else:
                plaintext = self._open(ctx, version, header, nonce, body)
                self._store.record_decrypt(user_id, "system:vault", f"rewrap to key v{target}", ctx, version)
                new = _encrypt(self._key(user_id, target, None), target, ctx, plaintext)
            if self._store.replace_ciphertext(item, new, target, old):
                return True
            item = self._store.credential(user_id, item.provider, item.credential_id)
        raise DependencyUnavailable("credential kept changing during rotation; retry", code="VAULT_REWRAP_CONTENDED")

    def _referenced_versions(self, user_id: str) -> set[int]:
        versions: set[int] = set()
        for item in self._store.credentials(user_id):
            versions.add(int(item.key_version))
            try:
                versions.add(key_version_of(bytes(item.ciphertext)))
            except VaultError:
                pass
        return versions

    def _audit_failure(self, ctx: VaultContext, actor: str, reason: str, version: int, code: str) -> None:
        try:
            self._store.record_decrypt(ctx.user_id, actor, reason, ctx, version, outcome=code)
        except Exception:  # the original failure matters more; never mask it
            logger.warning("vault audit write failed", extra={"user_id": ctx.user_id, "outcome": code})

    def _key(self, user_id: str, version: int, item: DataKeyItem | None, *, count_use: bool = True) -> bytes:
        """The unwrapped data key (user, version): from the cache, or the store plus one KMS call.

        When ``item`` (the stored key item) is given, a cached key is used only if its wrapped form
        matches the stored one.
        """
        cache_key = (user_id, version)
        now = self._clock()
        with self._lock:
            entry = self._cache.get(cache_key)
            if entry is not None and not self._fresh(entry, now):
                del self._cache[cache_key]
                entry = None
            if entry is not None and (item is None or entry.wrapped == bytes(item.wrapped_key)):
                return self._use(cache_key, entry, count_use)
        if item is None:
            item = self._store.data_key(user_id, version)
            if item is None:
                self._evict(cache_key)
                raise VaultError("ciphertext refers to an unknown key version", code=UNKNOWN_KEY)
        wrapped = bytes(item.wrapped_key)
        with self._lock:
            pending = self._pending.pop(cache_key, None)
        if pending is not None and pending.wrapped == wrapped and self._fresh(pending, now):
            key = pending.key  # our own generated key, now seen in the store: no KMS call needed
            loaded_at = pending.loaded_at
        else:
            key = self._unwrap(user_id, version, item)
            loaded_at = self._clock()
        entry = _CachedKey(key, wrapped, loaded_at)
        with self._lock:
            self._cache[cache_key] = entry
            self._trim(now)
            return self._use(cache_key, entry, count_use)

    def _use(self, cache_key: tuple[str, int], entry: _CachedKey, count_use: bool) -> bytes:
        if count_use:
            entry.uses += 1
            if entry.uses >= self._cache_uses:
                self._cache.pop(cache_key, None)
        return entry.key

    def _fresh(self, entry: _CachedKey, now: float) -> bool:
        age = now - entry.loaded_at
        return 0 <= age < self._cache_seconds and entry.uses < self._cache_uses

    def _evict(self, cache_key: tuple[str, int]) -> None:
        with self._lock:
            self._cache.pop(cache_key, None)
            self._pending.pop(cache_key, None)

    def _confirm(self, user_id: str, version: int) -> None:
        """Our generated key is stored: move it from pending to the cache."""
        with self._lock:
            entry = self._pending.pop((user_id, version), None)
            if entry is not None:
                entry.uses += 1  # the seal that produced it
                if self._fresh(entry, self._clock()):
                    self._cache[(user_id, version)] = entry
                    self._trim(self._clock())

    def _trim(self, now: float) -> None:
        for cache in (self._cache, self._pending):
            if len(cache) <= self.MAX_CACHED_KEYS:
                continue
            for cache_key in [k for k, e in cache.items() if not self._fresh(e, now)]:
                del cache[cache_key]
            while len(cache) > self.MAX_CACHED_KEYS:
                del cache[min(cache, key=lambda k: cache[k].loaded_at)]

    def _generate(self, user_id: str, version: int) -> tuple[DataKeyItem, bytes]:
        self.kms_calls += 1
        try:
            response = self._kms.generate_data_key(
                KeyId=self._kms_key_id, KeySpec="AES_256", EncryptionContext=_kms_context(user_id, version)
            )
        except (ClientError, BotoCoreError) as exc:
            raise _kms_error(exc, "GenerateDataKey") from exc
        key = bytes(response["Plaintext"])
        if len(key) != 32:
            raise VaultError("KMS returned a data key of the wrong size", code=KEY_UNAVAILABLE)
        item = DataKeyItem(
            user_pk(user_id),
            data_key_sk(version),
            user_id=user_id,
            version=version,
            wrapped_key=bytes(response["CiphertextBlob"]),
            kms_key_id=response.get("KeyId") or self._kms_key_id,
            created_at=int(self._clock()),
        )
        return item, key

    def _unwrap(self, user_id: str, version: int, item: DataKeyItem) -> bytes:
        if item.user_id != user_id or int(item.version) != version:
            raise VaultError("data key item does not match its key", code=INTEGRITY)
        self.kms_calls += 1
        try:
            response = self._kms.decrypt(
                CiphertextBlob=bytes(item.wrapped_key),
                EncryptionContext=_kms_context(user_id, version),
                KeyId=item.kms_key_id or self._kms_key_id,
            )
        except (ClientError, BotoCoreError) as exc:
            raise _kms_error(exc, "Decrypt") from exc
        key = bytes(response["Plaintext"])
        if len(key) != 32:
            raise VaultError("data key has the wrong size", code=INTEGRITY)
        return key


def _check_plaintext(plaintext: bytes) -> None:
    if not isinstance(plaintext, (bytes, bytearray)):
        raise TypeError("plaintext must be bytes")


def _encrypt(data_key: bytes, version: int, ctx: VaultContext, plaintext: bytes) -> bytes:
    canonical = ctx.canonical()
    header = _header(version)
    nonce = os.urandom(NONCE_LEN)
    body = AESGCM(_subkey(data_key, canonical)).encrypt(nonce, bytes(plaintext), canonical + header)
    return header + nonce + body


def _decrypt(data_key: bytes, ctx: VaultContext, header: bytes, nonce: bytes, body: bytes) -> bytes:
    canonical = ctx.canonical()
    try:
        return AESGCM(_subkey(data_key, canonical)).decrypt(nonce, body, canonical + header)
    except InvalidTag:
        raise VaultError("ciphertext failed its integrity check", code=INTEGRITY) from None
