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


def test_fly_settings_refuse_the_sandbox_an_inline_token_or_bad_sizes_outside_local():
    base = {"RELAY_PUBLIC_URL": "https://app.example.com"}
    for name, url in [("RELAY_FLY_API_URL", "http://127.0.0.1:8787/_sandbox/fly"),
                      ("RELAY_FLY_API_URL", "https://relay.example.com/_sandbox/fly"),
                      ("RELAY_FLY_API_URL", "http://api.machines.dev"),
                      ("RELAY_FLY_GRAPHQL_URL", "http://127.0.0.1:8787/_sandbox/fly/graphql")]:
        with pytest.raises(ConfigError, match=name):
            load_settings({**base, name: url})
    with pytest.raises(ConfigError, match="RELAY_FLY_API_TOKEN_ARN"):
        load_settings({**base, "RELAY_FLY_API_TOKEN": "fo1_inline"})
    deployed = load_settings({**base, "RELAY_FLY_API_TOKEN_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:fly"})
    assert deployed.fly_api_url == "https://api.machines.dev" and deployed.fly_org == "personal"
    assert deployed.machine_sizes()["small"].guest() == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024}
    for sizes in ('{"tiny": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 100, "volume_gb": 1}}', "[]", "nope"):
        with pytest.raises(ConfigError):
            load_settings({**base, "RELAY_WORKSPACE_SIZES": sizes})
    local = load_settings({"RELAY_ENV": "local", "RELAY_PUBLIC_URL": "http://127.0.0.1:8787",
                           "RELAY_FLY_API_URL": "http://127.0.0.1:8787/_sandbox/fly", "RELAY_FLY_API_TOKEN": "t",
                           "RELAY_WORKSPACE_SIZES": '{"xl": {"cpu_kind": "performance", "cpus": 4, '
                                                    '"memory_mb": 8192, "volume_gb": 50}}'})
    assert local.fly_api_url.endswith("/_sandbox/fly") and list(local.machine_sizes()) == ["xl"]


def test_railway_settings_refuse_the_sandbox_or_an_inline_token_outside_local():
    base = {"RELAY_PUBLIC_URL": "https://app.example.com"}
    for url in ("http://127.0.0.1:8787/_sandbox/railway/graphql/v2",
                "https://relay.example.com/_sandbox/railway/graphql/v2", "http://backboard.railway.com/graphql/v2"):
        with pytest.raises(ConfigError, match="RELAY_RAILWAY_API_URL"):
            load_settings({**base, "RELAY_RAILWAY_API_URL": url})
    with pytest.raises(ConfigError, match="RELAY_RAILWAY_API_TOKEN_ARN"):
        load_settings({**base, "RELAY_RAILWAY_API_TOKEN": "inline"})
    deployed = load_settings({**base, "RELAY_RAILWAY_API_TOKEN_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:rw",
                              "RELAY_RAILWAY_WORKSPACE_ID": "team-123"})
    assert deployed.railway_api_url == "https://backboard.railway.com/graphql/v2"
    assert deployed.railway_workspace_id == "team-123" and deployed.railway_api_token == ""
    local = load_settings({"RELAY_ENV": "local", "RELAY_PUBLIC_URL": "http://127.0.0.1:8787",
                           "RELAY_RAILWAY_API_URL": "http://127.0.0.1:8787/_sandbox/railway/graphql/v2",
                           "RELAY_RAILWAY_API_TOKEN": "t"})
    assert local.railway_api_url.endswith("/_sandbox/railway/graphql/v2") and local.railway_api_token == "t"


def test_registry_built_ins_follow_provider_terms():
    from relay_cloud.domain.providers import Registry, built_in_providers

    reg = Registry(built_in_providers(anthropic_url="a", openai_url="o", google_url="g", github_oauth_url="gh",
                                      github_client_id="c", github_client_secret="top-secret-value"))
    # Claude, Codex and Gemini subscriptions: API keys or the provider's own login on the user's machine only.
    for provider in ("anthropic", "openai", "google"):
        assert reg.get(provider).methods == ("api_key", "workspace_login")
    assert reg.get("github").methods == ("device_flow",) and reg.get("github").client_id == "c"
    assert "top-secret-value" not in repr(reg.get("github"))  # never printed


@pytest.mark.parametrize("raw,message", [
    ("not json", "not valid JSON"), ('{"id": "x"}', "JSON list"), ('[{"id": "Bad Id"}]', "must match"),
    ('[{"id": "idp"}]', "missing"),
    ('[{"id": "github", "device_authorization_url": "u", "token_url": "t", "client_id": "c"}]', "declared twice"),
])
def test_custom_provider_configuration_errors(raw, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({"RELAY_ENV": "local", "RELAY_CUSTOM_PROVIDERS": raw})


def test_custom_provider_urls_must_be_https_outside_local():
    raw = '[{"id": "idp", "device_authorization_url": "http://idp/d", "token_url": "https://idp/t", "client_id": "c"}]'
    with pytest.raises(ConfigError, match="device_authorization_url"):
        load_settings({"RELAY_PUBLIC_URL": "https://app.example.com", "RELAY_CUSTOM_PROVIDERS": raw})


def test_health_from_stored_connection():
    from relay_cloud.domain.providers import health, refresh_due_at

    assert refresh_due_at(1000, 2000) == 1900 and refresh_due_at(1000, None) is None
    assert health(status=None, expires_at=None, refresh_due=None, now=0) == "not_connected"
    assert health(status="valid", expires_at=2000, refresh_due=1900, now=1500) == "valid"
    assert health(status="valid", expires_at=2000, refresh_due=1900, now=1950) == "expiring"
    assert health(status="refresh_failed", expires_at=2000, refresh_due=1900, now=0) == "refresh_failed"
    assert health(status="revoked", expires_at=None, refresh_due=None, now=0) == "revoked"


def test_custom_provider_secrets_are_never_inline_outside_local():
    entry = ('[{"id": "idp", "device_authorization_url": "https://idp/d", "token_url": "https://idp/t", '
             '"client_id": "c", %s}]')
    base = {"RELAY_PUBLIC_URL": "https://app.example.com"}
    with pytest.raises(ConfigError, match="client_secret_arn"):
        load_settings({**base, "RELAY_CUSTOM_PROVIDERS": entry % '"client_secret": "s"'})
    arn = "arn:aws:secretsmanager:us-east-1:1:secret:idp"
    settings = load_settings({**base, "RELAY_CUSTOM_PROVIDERS": entry % f'"client_secret_arn": "{arn}"'})
    assert settings.registry().get("idp").client_secret_arn == arn
