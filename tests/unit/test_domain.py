import base64
import hashlib

import pytest

from functions.manifest import FUNCTIONS, function_for
from relay_cloud.config import ConfigError, load_settings
from relay_cloud.domain.auth import pkce_challenge, pkce_pair, safe_next
from relay_cloud.domain.plans import PLANS, REQUIRED_PLAN, get_plan


def test_pkce_s256_matches_rfc7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    v, c = pkce_pair()
    assert 43 <= len(v) <= 128
    assert c == base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize("given,expected", [
    ("/dashboard/team?x=1#top", "/dashboard/team?x=1#top"),
    (None, "/dashboard"), ("", "/dashboard"), ("dashboard", "/dashboard"),
    ("//evil.test/x", "/dashboard"), ("https://evil.test", "/dashboard"), ("/\\evil.test", "/dashboard"),
    ("/x\r\nSet-Cookie: a=b", "/dashboard"), ("/" + "a" * 600, "/dashboard"),
])
def test_safe_next(given, expected):
    assert safe_next(given) == expected


def test_plan_catalog_matches_spec_table():
    assert list(PLANS) == ["free", "pro", "team", "enterprise"]
    pro, team, ent = PLANS["pro"], PLANS["team"], PLANS["enterprise"]
    assert (pro.monthly_cents, pro.yearly_cents, team.monthly_cents, team.yearly_cents) == (2900, 27800, 9900, 95000)
    assert PLANS["free"].limits == {"workspaces": 1, "repositories": 3, "concurrent_agents": 2,
                                    "compute_hours_per_month": 10, "team_members_per_workspace": 1}
    assert team.limit("team_members_per_workspace") == 25 and ent.limit("workspaces") is None
    assert ent.custom_pricing and ent.to_public()["price"]["custom"] is True
    assert REQUIRED_PLAN == {"coordinators": "pro", "custom_domains": "team", "audit_log_export": "enterprise",
                             "sso": "enterprise"}
    assert get_plan("nope") is None


def test_manifest_routes_like_api_gateway():
    assert function_for("GET", "/api/billing/plans").name == "billing"
    assert function_for("GET", "/api/billing/plans/pro").name == "billing"
    assert function_for("POST", "/api/auth/logout").name == "auth"
    assert function_for("DELETE", "/api/account").name == "auth"
    assert function_for("GET", "/api/account") is None
    assert function_for("GET", "/health").name == "meta"
    assert function_for("GET", "/api/nothing") is None
    assert len({f.name for f in FUNCTIONS}) == len(FUNCTIONS)


def test_settings_refuse_sandbox_or_plain_http_outside_local():
    base = {"RELAY_PUBLIC_URL": "https://app.example.com"}
    assert load_settings(base).env == "production"
    for name, url in [("RELAY_GITHUB_OAUTH_URL", "http://127.0.0.1:8787/_sandbox/github"),
                      ("RELAY_GITHUB_API_URL", "https://relay.example.com/_sandbox/github"),
                      ("RELAY_PUBLIC_URL", "http://127.0.0.1:8787")]:
        with pytest.raises(ConfigError):
            load_settings({**base, name: url})
    local = load_settings({"RELAY_ENV": "local", "RELAY_PUBLIC_URL": "http://127.0.0.1:8787",
                           "RELAY_GITHUB_OAUTH_URL": "http://127.0.0.1:8787/_sandbox/github"})
    assert local.is_local and not local.secure_cookies
    with pytest.raises(ConfigError):
        load_settings({"RELAY_ENV": "staging"})
