"""Daemon linking rules: user codes (alphabet, format, normalisation), daemon keys (format, parsing,
constant-time match), the device authorization input, and presence over a controllable clock."""

from __future__ import annotations

import base64
import re

import pytest

from relay_cloud.domain.daemons import (
    DeviceGrantError,
    USER_CODE_ALPHABET,
    bearer_token,
    daemon_key,
    format_user_code,
    is_agent_name,
    is_x25519_public_key,
    key_matches,
    new_daemon_id,
    new_device_code,
    new_key_secret,
    new_user_code,
    normalize_user_code,
    parse_daemon_key,
    presence,
    sha256_hex,
    validate_heartbeat,
    validate_link_request,
)
from relay_cloud.domain.errors import ValidationFailed
from relay_cloud.domain.messages import validate_send
from tests.fakes import Clock

PUBLIC_KEY = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()


def test_user_code_alphabet_is_20_consonants_without_y():
    assert len(USER_CODE_ALPHABET) == 20 == len(set(USER_CODE_ALPHABET))
    assert not set(USER_CODE_ALPHABET) & set("AEIOUY")
    assert USER_CODE_ALPHABET == USER_CODE_ALPHABET.upper()


def test_user_codes_are_8_letters_of_the_alphabet_and_vary():
    codes = {new_user_code() for _ in range(500)}
    assert len(codes) == 500
    assert all(re.fullmatch(f"[{USER_CODE_ALPHABET}]{{8}}", code) for code in codes)
    assert set("".join(codes)) == set(USER_CODE_ALPHABET)  # every letter gets used


def test_user_code_format_and_normalisation():
    assert format_user_code("BCDFGHJK") == "BCDF-GHJK"
    for typed in ("BCDF-GHJK", "bcdf-ghjk", "bcdfghjk", " BcDf GhJk ", "BCDFGHJK"):
        assert normalize_user_code(typed) == "BCDFGHJK", typed
    for bad in ("BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF-GHJ1", "", None, 12345678, "B" * 40, "BCDF_GHJK"):
        assert normalize_user_code(bad) is None, bad


def test_device_codes_and_key_secrets_are_32_random_bytes_url_safe():
    for make in (new_device_code, new_key_secret):
        values = {make() for _ in range(50)}
        assert len(values) == 50
        for value in values:
            assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
            assert len(base64.urlsafe_b64decode(value + "=")) == 32
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_daemon_key_round_trip_even_with_underscores_in_the_secret():
    daemon_id = new_daemon_id()
    assert re.fullmatch(r"dmn_[0-9a-f]{32}", daemon_id)
    secret = "_" * 10 + "a-b_c" + "Z" * 28
    key = daemon_key(daemon_id, secret)
    assert key.startswith("rly_dmn_")
    parsed = parse_daemon_key(key)
    assert (parsed.daemon_id, parsed.secret) == (daemon_id, secret)
    for _ in range(50):
        secret = new_key_secret()
        assert parse_daemon_key(daemon_key(daemon_id, secret)).secret == secret


@pytest.mark.parametrize("bad", [
    None, "", "rly_", "rly_dmn_123_secret", "Bearer rly_x", "rly_dmn_" + "0" * 32,
    "rly_dmn_" + "0" * 32 + "_" + "a" * 42, "rly_dmn_" + "0" * 32 + "_" + "a" * 44,
    "rly_dmn_" + "G" * 32 + "_" + "a" * 43, "xly_dmn_" + "0" * 32 + "_" + "a" * 43,
    "rly_dmn_" + "0" * 32 + "_" + "a" * 42 + "=", " rly_dmn_" + "0" * 32 + "_" + "a" * 43,
    "rly_dmn_" + "0" * 32 + "_" + "a" * 42 + "\n", 42,
])
def test_malformed_keys_do_not_parse(bad):
    assert parse_daemon_key(bad) is None


def test_bearer_token_and_constant_time_match():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None and bearer_token(None) is None and bearer_token("") is None
    assert key_matches("s3cret", sha256_hex("s3cret"))
    assert not key_matches("s3cret", sha256_hex("other"))
    assert not key_matches("s3cret", None) and not key_matches("s3cret", "")


def test_link_request_validation():
    good = {"machine_id": "host-1.example:a_b", "name": "Laptop (work)", "public_key": PUBLIC_KEY}
    wanted = validate_link_request(good)
    assert (wanted.machine_id, wanted.name, wanted.public_key) == (good["machine_id"], good["name"], PUBLIC_KEY)
    for field, value in [
        ("machine_id", ""), ("machine_id", "a" * 129), ("machine_id", "a b"), ("machine_id", "ä"), ("machine_id", None),
        ("name", ""), ("name", "x" * 65), ("name", "tab\there"), ("name", "new\nline"), ("name", "   "), ("name", 3),
        ("public_key", PUBLIC_KEY + "="), ("public_key", PUBLIC_KEY[:-1]), ("public_key", "A" * 44),
        ("public_key", base64.urlsafe_b64encode(bytes(31)).rstrip(b"=").decode()), ("public_key", None),
    ]:
        with pytest.raises(DeviceGrantError) as raised:
            validate_link_request({**good, field: value})
        assert raised.value.status == 400 and raised.value.body()["error"] == "invalid_request", (field, value)
    assert validate_link_request({**good, "machine_id": "m" * 128, "name": "n" * 64})


def test_public_key_must_be_canonical_base64url():
    assert is_x25519_public_key(PUBLIC_KEY)
    # Same 32 bytes, but a non-zero unused low bit in the last character: not the canonical encoding.
    last = PUBLIC_KEY[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert not is_x25519_public_key(PUBLIC_KEY[:-1] + alphabet[alphabet.index(last) + 1])
    assert not is_x25519_public_key("+" * 43)


def test_oauth_error_body_is_rfc6749_shaped():
    error = DeviceGrantError("slow_down", "Poll at most every 10 seconds")
    assert error.status == 400 and error.body() == {"error": "slow_down",
                                                     "error_description": "Poll at most every 10 seconds"}
    assert DeviceGrantError("invalid_client", status=401).body() == {"error": "invalid_client"}


def test_presence_transitions_with_a_controllable_clock():
    clock = Clock(1_000)
    seen = clock()
    states = []
    for step in range(40):
        states.append((step, presence(seen, clock())))
        clock.advance(1)
    by_age = dict(states)
    assert {by_age[a] for a in range(0, 21)} == {"online"}  # one interval (15 s) + 5 s grace
    assert {by_age[a] for a in range(21, 31)} == {"stale"}  # within two intervals: one heartbeat missed
    assert {by_age[a] for a in range(31, 40)} == {"offline"}
    assert presence(None, clock()) == "offline"  # never seen
    # A heartbeat brings it back online at once; another interval scales the rule.
    assert presence(clock(), clock()) == "online"
    assert presence(0, 60, interval=30) == "stale" and presence(0, 61, interval=30) == "offline"
    assert presence(0, 35, interval=30) == "online"


@pytest.mark.parametrize("name, valid", [
    ("alice", True), ("codex.2", True), ("...", True), (".hidden", True), ("x" * 64, True),
    (".", False), ("..", False), ("", False), ("x" * 65, False), ("a/b", False), ("..\n", False), (7, False),
])
def test_agent_names_are_safe_as_directory_names(name, valid):
    """A daemon keeps an inbox directory per agent: "." and ".." are never names, here or in messages."""
    assert is_agent_name(name) is valid
    if not valid:
        with pytest.raises(ValidationFailed):
            validate_heartbeat({"agents": [{"name": name}]})
        with pytest.raises(ValidationFailed):
            validate_send({"to": {"daemon_id": "dmn_" + "0" * 32, "agent": name}, "body": "hi"})
