"""Sealing to a daemon's X25519 key: a box opens only with the recipient's private key and the same AAD,
any changed byte or another algorithm fails, and two seals of one plaintext differ."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from relay_cloud.domain.sealing import (
    ALG,
    SealedBoxError,
    b64url,
    b64url_decode,
    lease_aad,
    login_code_aad,
    open_sealed,
    public_key_bytes,
    seal,
)

AAD = lease_aad("dmn_" + "0" * 32, "anthropic", "lse_1", 1_800_003_600)


def key_pair() -> tuple[bytes, bytes]:
    private = X25519PrivateKey.generate()
    return (private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()),
            private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def test_round_trip_and_the_box_format():
    private, public = key_pair()
    sealed = seal(public, b"sk-ant-secret", AAD)
    assert set(sealed) == {"alg", "epk", "nonce", "ciphertext"} and sealed["alg"] == ALG
    assert len(b64url_decode(sealed["epk"])) == 32 and len(b64url_decode(sealed["nonce"])) == 12
    assert all("=" not in value for value in sealed.values())
    assert b"sk-ant-secret" not in b64url_decode(sealed["ciphertext"])
    assert open_sealed(private, sealed, AAD) == b"sk-ant-secret"


def test_two_seals_of_the_same_plaintext_differ():
    private, public = key_pair()
    first, second = seal(public, b"same", AAD), seal(public, b"same", AAD)
    assert first["epk"] != second["epk"] and first["nonce"] != second["nonce"]
    assert first["ciphertext"] != second["ciphertext"]
    assert open_sealed(private, first, AAD) == open_sealed(private, second, AAD) == b"same"


def test_a_wrong_private_key_fails():
    _, public = key_pair()
    other_private, _ = key_pair()
    with pytest.raises(SealedBoxError):
        open_sealed(other_private, seal(public, b"secret", AAD), AAD)


def test_a_wrong_aad_fails():
    private, public = key_pair()
    sealed = seal(public, b"secret", AAD)
    with pytest.raises(SealedBoxError):
        open_sealed(private, sealed, lease_aad("dmn_" + "0" * 32, "openai", "lse_1", 1_800_003_600))
    with pytest.raises(SealedBoxError):
        open_sealed(private, sealed, login_code_aad("dmn_" + "0" * 32, "login_1"))


@pytest.mark.parametrize("field", ["epk", "nonce", "ciphertext"])
def test_a_flipped_byte_fails(field):
    private, public = key_pair()
    sealed = seal(public, b"secret", AAD)
    raw = bytearray(b64url_decode(sealed[field]))
    raw[len(raw) // 2] ^= 0x01
    with pytest.raises(SealedBoxError):
        open_sealed(private, {**sealed, field: b64url(bytes(raw))}, AAD)


@pytest.mark.parametrize("change", [
    {"alg": "X25519-HKDF-SHA256-A128GCM"},
    {"alg": None},
    {"nonce": b64url(b"\0" * 8)},
    {"epk": "not base64!"},
    {"ciphertext": b64url(b"short")},
])
def test_another_algorithm_or_a_malformed_box_fails(change):
    private, public = key_pair()
    with pytest.raises(SealedBoxError):
        open_sealed(private, {**seal(public, b"secret", AAD), **change}, AAD)


def test_sealed_box_errors_are_value_errors_and_keys_are_checked():
    assert issubclass(SealedBoxError, ValueError)
    with pytest.raises(SealedBoxError):
        seal(b"\0" * 31, b"x", AAD)
    with pytest.raises(SealedBoxError):
        seal(b"\0" * 32, b"x", AAD)  # a low-order point: no shared secret
    with pytest.raises(SealedBoxError):
        open_sealed(b"short", seal(key_pair()[1], b"x", AAD), AAD)


def test_the_stored_public_key_decodes_to_the_raw_key():
    private, public = key_pair()
    assert public_key_bytes(b64url(public)) == public
    assert open_sealed(private, seal(public_key_bytes(b64url(public)), b"x", b"aad"), b"aad") == b"x"
    for bad in ("", "A" * 42, b64url(public) + "A", 42):
        with pytest.raises(SealedBoxError):
            public_key_bytes(bad)
