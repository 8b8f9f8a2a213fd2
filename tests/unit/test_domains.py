"""Custom-domain rules: which names can be claimed, the ownership token, claim expiry, and what a
verification concludes from DNS answers (relay_cloud.domain.domains); the resolver setting's parsing."""

from __future__ import annotations

import pytest

from relay_cloud.config import ConfigError, load_settings, parse_resolver_address
from relay_cloud.domain.domains import (
    UNVERIFIED_CLAIM_TTL_SECONDS,
    challenge_name,
    claim_expired,
    is_ownership_token,
    new_ownership_token,
    normalize_domain,
    verify,
)
from relay_cloud.domain.errors import ValidationFailed

ACCEPTED = [
    ("app.example.dev", "app.example.dev"),
    ("App.Example.DEV", "app.example.dev"),
    ("  agents.acme.io.  ", "agents.acme.io"),  # whitespace and the root's trailing dot
    ("a.b.c.d.acme.co.uk", "a.b.c.d.acme.co.uk"),
    ("x1-y2.acme.dev", "x1-y2.acme.dev"),
    ("bücher.example.de", "xn--bcher-kva.example.de"),  # IDNA: stored as the A-label
    ("xn--bcher-kva.example.de", "xn--bcher-kva.example.de"),
    ("münchen.xn--p1ai", "xn--mnchen-3ya.xn--p1ai"),
    ("a" * 63 + ".acme.dev", "a" * 63 + ".acme.dev"),
    ("1password.acme.dev", "1password.acme.dev"),
]

REFUSED = [
    (None, "EMPTY"),
    ("", "EMPTY"),
    ("   ", "EMPTY"),
    (42, "EMPTY"),
    ("localhost", "SINGLE_LABEL"),
    ("dev", "SINGLE_LABEL"),
    ("https://app.acme.dev", "NOT_A_HOSTNAME"),
    ("app.acme.dev/path", "NOT_A_HOSTNAME"),
    ("user@app.acme.dev", "NOT_A_HOSTNAME"),
    ("app.acme.dev:8443", "NOT_A_HOSTNAME"),
    ("203.0.113.9", "IP_LITERAL"),
    ("::1", "IP_LITERAL"),
    ("[2001:db8::1]", "IP_LITERAL"),
    ("10.0.0.1.5", "BAD_TLD"),  # not an address, still not a hostname with a real TLD
    ("app.acme.123", "BAD_TLD"),
    ("*.acme.dev", "BAD_LABEL"),  # wildcards are not claimable
    ("_dmarc.acme.dev", "BAD_LABEL"),  # hostnames only, no service labels
    ("-app.acme.dev", "BAD_LABEL"),
    ("app-.acme.dev", "BAD_LABEL"),
    ("app_1.acme.dev", "BAD_LABEL"),
    ("app..acme.dev", "EMPTY_LABEL"),
    (".acme.dev", "EMPTY_LABEL"),
    ("ab--cd.acme.dev", "RESERVED_LABEL"),
    ("xn--zz.acme.dev", "BAD_IDNA"),  # forged punycode
    ("a" * 64 + ".acme.dev", "LABEL_TOO_LONG"),
    (".".join(["a" * 60] * 4) + ".dev", "TOO_LONG"),
    ("x" * 2000 + ".dev", "TOO_LONG"),
    ("app.localhost", "RESERVED_NAME"),
    ("printer.local", "RESERVED_NAME"),
    ("db.internal", "RESERVED_NAME"),
    ("svc.corp", "RESERVED_NAME"),
    ("nas.home.arpa", "RESERVED_NAME"),
    ("1.0.0.127.in-addr.arpa", "RESERVED_NAME"),
    ("my.test", "RESERVED_NAME"),
    ("www.example.com", "RESERVED_NAME"),
    ("hidden.onion", "RESERVED_NAME"),
    ("box.localdomain", "RESERVED_NAME"),
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_public_hostnames_are_accepted_in_canonical_form(raw, expected):
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), REFUSED)
def test_names_that_are_not_public_hostnames_are_refused_with_a_reason(raw, reason):
    with pytest.raises(ValidationFailed) as err:
        normalize_domain(raw)
    assert err.value.status == 400 and err.value.code == "DOMAIN_INVALID"
    assert err.value.details["reason"] == reason


def test_a_name_too_long_for_its_challenge_record_is_refused():
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 57]) + ".dev"  # 253 characters
    assert len(longest) == 253
    with pytest.raises(ValidationFailed) as err:
        normalize_domain(longest)
    assert err.value.details["reason"] == "TOO_LONG"


def test_challenge_name_and_token_format():
    assert challenge_name("app.acme.dev") == "_relay-challenge.app.acme.dev"
    tokens = {new_ownership_token() for _ in range(50)}
    assert len(tokens) == 50  # random
    for token in tokens:
        assert is_ownership_token(token)
        assert token.startswith("relay-domain-verification=") and len(token) == len("relay-domain-verification=") + 32
    for bogus in ("", None, "relay-domain-verification=", "relay-domain-verification=ABC", "x" * 58,
                  new_ownership_token() + "a", " " + new_ownership_token()):
        assert not is_ownership_token(bogus)


def test_unverified_claims_expire_verified_ones_do_not():
    claimed = 1_800_000_000
    assert not claim_expired(claimed, claimed + UNVERIFIED_CLAIM_TTL_SECONDS - 1, verified=False)
    assert claim_expired(claimed, claimed + UNVERIFIED_CLAIM_TTL_SECONDS, verified=False)
    assert not claim_expired(claimed, claimed + 10 * UNVERIFIED_CLAIM_TTL_SECONDS, verified=True)


# -- verification outcomes ---------------------------------------------------------------------------

TOKEN = new_ownership_token()
HOST = "ws-7f3a.relay-workspaces.dev"


def check(txt, cname, *, token=TOKEN, host=HOST):
    return verify(txt, cname, token, host, domain="app.acme.dev")


def test_both_records_right_is_verified():
    result = check(["v=spf1 -all", TOKEN], HOST)
    assert result.verified and result.reasons == ()
    assert result.to_public() == {
        "verified": True,
        "reasons": [],
        "records": [
            {"type": "TXT", "name": "_relay-challenge.app.acme.dev", "value": TOKEN, "ok": True,
             "found": ["v=spf1 -all", TOKEN]},
            {"type": "CNAME", "name": "app.acme.dev", "value": HOST, "ok": True, "found": [HOST]},
        ],
    }


def test_dns_names_compare_without_case_or_trailing_dot():
    assert check([TOKEN], HOST.upper() + ".").verified
    assert check([f"  {TOKEN} "], HOST, host=HOST + ".").verified


@pytest.mark.parametrize(("txt", "cname", "reasons"), [
    ([], HOST, ("TXT_MISSING",)),
    (["relay-domain-verification=somebody-elses"], HOST, ("TXT_MISMATCH",)),
    ([TOKEN[:-1]], HOST, ("TXT_MISMATCH",)),  # a prefix proves nothing
    ([TOKEN + "x"], HOST, ("TXT_MISMATCH",)),
    ([f"prefix {TOKEN}"], HOST, ("TXT_MISMATCH",)),
    ([TOKEN], None, ("CNAME_MISSING",)),
    ([TOKEN], "ws-other.relay-workspaces.dev", ("CNAME_MISMATCH",)),
    ([TOKEN], "evil-" + HOST, ("CNAME_MISMATCH",)),  # containing the host (or our brand) is not enough
    ([TOKEN], HOST + ".evil.dev", ("CNAME_MISMATCH",)),
    ([], None, ("TXT_MISSING", "CNAME_MISSING")),
])
def test_every_missing_or_wrong_record_is_named(txt, cname, reasons):
    result = check(txt, cname)
    assert not result.verified and result.reasons == reasons
    public = result.to_public()
    assert public["verified"] is False and public["reasons"] == list(reasons)
    assert public["records"][0]["ok"] is ("TXT_MISSING" not in reasons and "TXT_MISMATCH" not in reasons)


def test_verify_refuses_a_malformed_expected_token_or_host():
    with pytest.raises(ValueError):
        verify([""], HOST, "", HOST, domain="app.acme.dev")  # an empty TXT must never match an empty token
    with pytest.raises(ValueError):
        verify([TOKEN], None, TOKEN, "", domain="app.acme.dev")


# -- the resolver setting ----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "parsed"), [
    ("10.0.0.2", ("10.0.0.2", 53)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("[::1]:5353", ("::1", 5353)),
    ("[2001:db8::53]", ("2001:db8::53", 53)),
    ("2001:db8::53", ("2001:db8::53", 53)),
])
def test_resolver_addresses_parse(text, parsed):
    assert parse_resolver_address(text) == parsed


@pytest.mark.parametrize("text", ["dns.google", "10.0.0.2:dns", "10.0.0.2:0", "10.0.0.2:70000", "[::1", ":53"])
def test_bad_resolver_addresses_are_configuration_errors(text):
    with pytest.raises(ConfigError):
        parse_resolver_address(text)


def test_a_loopback_resolver_is_local_only():
    base = {"RELAY_PUBLIC_URL": "https://app.agentrelay.dev"}
    assert load_settings({**base, "RELAY_ENV": "local", "RELAY_DNS_RESOLVER": "127.0.0.1:5353"}).dns_resolver == \
        "127.0.0.1:5353"
    assert load_settings({**base, "RELAY_DNS_RESOLVER": "169.254.169.253"}).dns_resolver == "169.254.169.253"
    assert load_settings(base).dns_resolver == ""  # unset: the system resolver
    with pytest.raises(ConfigError):
        load_settings({**base, "RELAY_DNS_RESOLVER": "127.0.0.1:5353"})
