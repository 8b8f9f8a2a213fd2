"""Sealing to a daemon (docs/design/daemon-messaging.md): what the cloud encrypts to a machine's X25519
public key (credential leases, relayed login codes) and what the CLI opens with its private key.

An ephemeral X25519 key pair per seal; ``shared = X25519(ephemeral, recipient)``;
``key = HKDF-SHA256(shared, salt = epk || recipient_pk, info = b"relay-cloud sealed v1", 32)``;
AES-256-GCM with a random 96-bit nonce and the caller's associated data (AAD), which binds the box to
its purpose (lease or login code), daemon, and id. A box is a dict of base64url (unpadded) fields:
``{"alg", "epk", "nonce", "ciphertext"}``. Pure functions, ``cryptography`` only, no I/O.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from relay_cloud.domain.daemons import PUBLIC_KEY_BYTES, is_x25519_public_key

ALG = "X25519-HKDF-SHA256-A256GCM"
HKDF_INFO = b"relay-cloud sealed v1"
NONCE_BYTES = 12
TAG_BYTES = 16
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class SealedBoxError(ValueError):
    """A box could not be sealed or opened: a wrong key, wrong AAD, a changed byte, a malformed box.
    Deliberately says nothing more (which of these it was is not the caller's business)."""


# -- base64url without padding ---------------------------------------------------------------------

def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(value: object) -> bytes:
    """Strict unpadded base64url -> bytes; SealedBoxError for anything else."""
    if not isinstance(value, str) or not _B64URL.fullmatch(value) or len(value) % 4 == 1:
        raise SealedBoxError("malformed sealed box")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise SealedBoxError("malformed sealed box") from None
    if b64url(raw) != value:  # the canonical encoding only (unused low bits zero)
        raise SealedBoxError("malformed sealed box")
    return raw


def public_key_bytes(public_key: str) -> bytes:
    """The raw 32 bytes of a daemon's stored public key (base64url, as validated at linking)."""
    if not is_x25519_public_key(public_key):
        raise SealedBoxError("not an X25519 public key")
    return b64url_decode(public_key)


# -- the AADs in use (the cloud seals and the CLI opens with the same bytes) -----------------------

def lease_aad(daemon_id: str, provider: str, lease_id: str, expires_at: int) -> bytes:
    return f"lease|{daemon_id}|{provider}|{lease_id}|{int(expires_at)}".encode()


def login_code_aad(daemon_id: str, login_id: str) -> bytes:
    return f"login-code|{daemon_id}|{login_id}".encode()


# -- seal / open -----------------------------------------------------------------------------------

def _key(shared: bytes, epk: bytes, recipient_pk: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=epk + recipient_pk, info=HKDF_INFO).derive(shared)


def _raw(public_key: X25519PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _exchange(private_key: X25519PrivateKey, peer: bytes) -> bytes:
    try:
        return private_key.exchange(X25519PublicKey.from_public_bytes(peer))
    except ValueError:  # a low-order point: the shared secret would be all zeros
        raise SealedBoxError("invalid public key") from None


def seal(recipient_public_key: bytes, plaintext: bytes, aad: bytes) -> dict:
    """Encrypt ``plaintext`` to the holder of the private key behind ``recipient_public_key`` (raw 32
    bytes); only that key with the same ``aad`` opens it."""
    if not isinstance(recipient_public_key, (bytes, bytearray)) or len(recipient_public_key) != PUBLIC_KEY_BYTES:
        raise SealedBoxError("the recipient key must be 32 raw bytes")
    recipient = bytes(recipient_public_key)
    ephemeral = X25519PrivateKey.generate()
    epk = _raw(ephemeral.public_key())
    key = _key(_exchange(ephemeral, recipient), epk, recipient)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(key).encrypt(nonce, bytes(plaintext), bytes(aad))
    return {"alg": ALG, "epk": b64url(epk), "nonce": b64url(nonce), "ciphertext": b64url(ciphertext)}


def open_sealed(private_key: bytes, sealed: dict, aad: bytes) -> bytes:
    """The plaintext of a box sealed to ``private_key``'s public key with this ``aad``; SealedBoxError
    for a wrong key, a wrong AAD, any changed byte, another algorithm, or a malformed box."""
    if not isinstance(sealed, dict) or sealed.get("alg") != ALG:
        raise SealedBoxError("unsupported sealed box")
    if not isinstance(private_key, (bytes, bytearray)) or len(private_key) != 32:
        raise SealedBoxError("the private key must be 32 raw bytes")
    epk, nonce, ciphertext = (b64url_decode(sealed.get(name)) for name in ("epk", "nonce", "ciphertext"))
    if len(epk) != PUBLIC_KEY_BYTES or len(nonce) != NONCE_BYTES or len(ciphertext) < TAG_BYTES:
        raise SealedBoxError("malformed sealed box")
    recipient = X25519PrivateKey.from_private_bytes(bytes(private_key))
    key = _key(_exchange(recipient, epk), epk, _raw(recipient.public_key()))
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, bytes(aad))
    except InvalidTag:
        raise SealedBoxError("the sealed box does not open with this key and AAD") from None
