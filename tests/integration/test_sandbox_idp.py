"""The sandbox OAuth 2.0 / OIDC provider over HTTP on the running local stack: discovery, the RFC 8628
device flow with every error (HTTP 400), slow_down raising the interval for later polls, expiry on the
injectable clock, approve/deny, client authentication, rotating refresh tokens with reuse detection that
revokes the whole family, RFC 7009 revocation, userinfo, runtime settings, statistics and faults."""

from __future__ import annotations

import base64
import json
import time

import pytest

IDP = "/_sandbox/idp"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def idp(local_stack):
    """The session's sandbox IdP with its default settings and no queued faults (other tests share it),
    put back as it was afterwards."""
    sandbox = local_stack.sandboxes["idp"]
    saved = dict(sandbox.settings)
    sandbox.settings.update(access_token_ttl=3600, device_interval=5, device_expires_in=900)
    sandbox._clear_faults(None)
    yield sandbox
    sandbox.settings.update(saved)
    sandbox._clear_faults(None)


@pytest.fixture
def clock(idp, monkeypatch):
    fake = Clock()
    monkeypatch.setattr(idp, "clock", fake)
    return fake


@pytest.fixture
def client(local_stack):
    (provider,) = [p for p in json.loads(local_stack.env["RELAY_CUSTOM_PROVIDERS"]) if p["id"] == "sandbox-idp"]
    return {"id": provider["client_id"], "secret": provider["client_secret"], "provider": provider}


def creds(client):
    return {"client_id": client["id"], "client_secret": client["secret"]}


def basic(client_id, secret):
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def start(http, client, scope="openid profile email offline_access"):
    response = http.post(f"{IDP}/oauth/device_authorization", data={**creds(client), "scope": scope})
    assert response.status_code == 200, response.text
    return response.json()


def poll(http, client, device_code):
    return http.post(f"{IDP}/oauth/token", data={**creds(client), "grant_type": DEVICE_GRANT, "device_code": device_code})


def approve(http, user_code, login="oidc-user"):
    return http.post(f"{IDP}/device/approve", json={"user_code": user_code, "login": login})


def tokens_for(http, client, login="oidc-user", scope="openid profile email offline_access"):
    body = start(http, client, scope)
    assert approve(http, body["user_code"], login).status_code == 200
    response = poll(http, client, body["device_code"])
    assert response.status_code == 200, response.text
    return response.json()


def refresh(http, client, refresh_token, **extra):
    return http.post(f"{IDP}/oauth/token", data={**creds(client), "grant_type": "refresh_token",
                                                  "refresh_token": refresh_token, **extra})


def userinfo(http, access_token):
    return http.get(f"{IDP}/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def stats(http):
    return http.get(f"{IDP}/_stats").json()


def test_discovery_points_at_the_mounted_endpoints(http, local_stack, client):
    doc = http.get(f"{IDP}/.well-known/openid-configuration").json()
    base = f"{local_stack.url}{IDP}"
    assert doc["issuer"] == base
    assert doc["device_authorization_endpoint"] == client["provider"]["device_authorization_url"]
    assert doc["token_endpoint"] == client["provider"]["token_url"] == f"{base}/oauth/token"
    assert doc["revocation_endpoint"] == client["provider"]["revoke_url"]
    assert doc["userinfo_endpoint"] == client["provider"]["userinfo_url"]
    assert DEVICE_GRANT in doc["grant_types_supported"] and "refresh_token" in doc["grant_types_supported"]


def test_local_stack_configures_the_custom_provider(local_stack, client):
    provider = client["provider"]
    assert provider["display_name"] == "Sandbox OIDC" and provider["color"] == "#0ea5e9"
    assert provider["scopes"] == ["openid", "profile", "email", "offline_access"]
    assert provider["client_secret"] and provider["client_id"]
    from relay_cloud.domain.providers import custom_providers

    (spec,) = custom_providers(local_stack.env["RELAY_CUSTOM_PROVIDERS"])
    assert spec.id == "sandbox-idp" and spec.custom and spec.token_url == provider["token_url"]


def test_device_authorization_response(http, client, local_stack, clock):
    body = start(http, client)
    base = f"{local_stack.url}{IDP}"
    assert body["verification_uri"] == f"{base}/device"
    assert body["verification_uri_complete"] == f"{base}/device?user_code={body['user_code']}"
    assert body["expires_in"] == 900 and body["interval"] == 5
    assert len(body["user_code"]) == 9 and body["user_code"][4] == "-"
    assert len(body["device_code"]) >= 32
    page = http.get(body["verification_uri_complete"].removeprefix(local_stack.url))
    assert page.status_code == 200 and f'value="{body["user_code"]}"' in page.text


def test_device_authorization_rejects_bad_clients_and_scopes(http, client):
    bad = http.post(f"{IDP}/oauth/device_authorization", data={"client_id": client["id"], "client_secret": "x"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    unknown = http.post(f"{IDP}/oauth/device_authorization", data={"client_id": "nope"})
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_client"
    scope = http.post(f"{IDP}/oauth/device_authorization", data={**creds(client), "scope": "openid admin"})
    assert scope.status_code == 400 and scope.json()["error"] == "invalid_scope"


def test_device_flow_errors_and_success(http, client, clock):
    body = start(http, client)
    pending = poll(http, client, body["device_code"])
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    assert pending.headers["cache-control"] == "no-store"
    assert approve(http, body["user_code"], "Ada-Lovelace").json()["status"] == "approved"
    token = poll(http, client, body["device_code"])
    assert token.status_code == 200 and token.headers["cache-control"] == "no-store"
    data = token.json()
    assert set(data) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert data["token_type"] == "Bearer" and data["expires_in"] == 3600
    assert data["scope"] == "openid profile email offline_access"
    reused = poll(http, client, body["device_code"])  # single use
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    info = userinfo(http, data["access_token"])
    assert info.status_code == 200
    claims = info.json()
    assert claims["preferred_username"] == "Ada-Lovelace" and claims["name"] == "Ada Lovelace"
    assert claims["email"] == "ada-lovelace@idp.sandbox.test" and claims["email_verified"] is True
    assert claims["sub"] and userinfo(http, tokens_for(http, client, "ada-lovelace")["access_token"]).json()["sub"] == claims["sub"]


def test_userinfo_claims_follow_the_scopes(http, client, clock):
    claims = userinfo(http, tokens_for(http, client, "scoped", scope="openid")["access_token"]).json()
    assert set(claims) == {"sub"}


def test_slow_down_adds_five_seconds_for_all_later_polls(http, client, clock):
    code = start(http, client)["device_code"]
    assert poll(http, client, code).json()["error"] == "authorization_pending"
    clock.advance(2)
    slow = poll(http, client, code)
    assert slow.status_code == 400 and slow.json()["error"] == "slow_down"
    clock.advance(9)  # interval is now 10
    assert poll(http, client, code).json()["error"] == "slow_down"
    clock.advance(15)  # and now 15
    assert poll(http, client, code).json()["error"] == "authorization_pending"
    clock.advance(10)
    assert poll(http, client, code).json()["error"] == "slow_down"


def test_access_denied_and_expired_token(http, client, clock):
    denied = start(http, client)
    assert http.post(f"{IDP}/device/deny", json={"user_code": denied["user_code"], "login": "x"}).json()["status"] == "denied"
    assert poll(http, client, denied["device_code"]).json()["error"] == "access_denied"
    assert approve(http, denied["user_code"]).status_code == 409
    expiring = start(http, client)
    clock.advance(900)
    assert poll(http, client, expiring["device_code"]).json()["error"] == "expired_token"
    assert approve(http, expiring["user_code"]).status_code == 410
    assert approve(http, "BCDF-BCDF").status_code == 404


def test_token_endpoint_client_authentication(http, client, clock):
    code = start(http, client)["device_code"]
    form = {"grant_type": DEVICE_GRANT, "device_code": code}
    via_basic = http.post(f"{IDP}/oauth/token", data=form, headers=basic(client["id"], client["secret"]))
    assert via_basic.status_code == 400 and via_basic.json()["error"] == "authorization_pending"
    wrong_basic = http.post(f"{IDP}/oauth/token", data=form, headers=basic(client["id"], "wrong"))
    assert wrong_basic.status_code == 401 and wrong_basic.json()["error"] == "invalid_client"
    assert wrong_basic.headers["www-authenticate"].startswith("Basic")
    wrong_post = http.post(f"{IDP}/oauth/token", data={**form, "client_id": client["id"], "client_secret": "wrong"})
    assert wrong_post.status_code == 400 and wrong_post.json()["error"] == "invalid_client"
    missing = http.post(f"{IDP}/oauth/token", data={**form, "client_id": client["id"]})
    assert missing.json()["error"] == "invalid_client"
    both = http.post(f"{IDP}/oauth/token", data={**form, "client_secret": client["secret"]},
                     headers=basic(client["id"], client["secret"]))
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    other = http.post(f"{IDP}/oauth/token", data={**creds(client), "grant_type": "password"})
    assert other.json()["error"] == "unsupported_grant_type"
    none = http.post(f"{IDP}/oauth/token", data=creds(client))
    assert none.json()["error"] == "invalid_request"
    unknown = poll(http, client, "not-a-device-code")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"


def test_another_clients_device_code_is_invalid_grant(http, client, idp, clock):
    idp.register_client("second-client", "second-secret")
    body = start(http, client)
    approve(http, body["user_code"])
    stolen = http.post(f"{IDP}/oauth/token", data={"client_id": "second-client", "client_secret": "second-secret",
                                                    "grant_type": DEVICE_GRANT, "device_code": body["device_code"]})
    assert stolen.json()["error"] == "invalid_grant"
    assert poll(http, client, body["device_code"]).status_code == 200


def test_refresh_rotates_and_counts_exactly_one_upstream_refresh(http, client, clock):
    first = tokens_for(http, client)
    http.delete(f"{IDP}/_stats")
    rotated = refresh(http, client, first["refresh_token"])
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"] and second["access_token"] != first["access_token"]
    assert second["token_type"] == "Bearer" and second["expires_in"] == 3600 and second["scope"] == first["scope"]
    assert userinfo(http, second["access_token"]).status_code == 200
    assert userinfo(http, first["access_token"]).status_code == 200  # still within its lifetime
    counters = stats(http)
    assert counters["token_requests"] == 1 and counters["refresh_grants"] == 1
    assert counters["refresh_reuse_detected"] == 0 and counters["families_revoked"] == 0
    narrowed = refresh(http, client, second["refresh_token"], scope="openid")
    assert narrowed.status_code == 200 and narrowed.json()["scope"] == "openid profile email offline_access"
    widened = refresh(http, client, narrowed.json()["refresh_token"], scope="openid admin")
    assert widened.json()["error"] == "invalid_scope"


def test_refresh_token_reuse_revokes_the_whole_family(http, client, clock):
    first = tokens_for(http, client)
    bystander = tokens_for(http, client, "bystander")
    second = refresh(http, client, first["refresh_token"]).json()
    third = refresh(http, client, second["refresh_token"]).json()
    before = stats(http)
    replay = refresh(http, client, first["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    after = stats(http)
    assert after["refresh_reuse_detected"] == before["refresh_reuse_detected"] + 1
    assert after["families_revoked"] == before["families_revoked"] + 1
    assert after["refresh_grants"] == before["refresh_grants"]
    for token in (first, second, third):
        response = userinfo(http, token["access_token"])
        assert response.status_code == 401 and response.json()["error"] == "invalid_token"
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert refresh(http, client, third["refresh_token"]).json()["error"] == "invalid_grant"  # newest one too
    assert userinfo(http, bystander["access_token"]).status_code == 200  # other families are untouched
    assert refresh(http, client, bystander["refresh_token"]).status_code == 200


def test_refresh_errors(http, client, idp, clock):
    tokens = tokens_for(http, client)
    assert refresh(http, client, "idp_rt_unknown").json()["error"] == "invalid_grant"
    assert http.post(f"{IDP}/oauth/token", data={**creds(client), "grant_type": "refresh_token"}).json()["error"] == "invalid_request"
    idp.register_client("second-client", "second-secret")
    other = http.post(f"{IDP}/oauth/token", data={"client_id": "second-client", "client_secret": "second-secret",
                                                   "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert other.json()["error"] == "invalid_grant"
    assert refresh(http, client, tokens["refresh_token"]).status_code == 200  # not spent by the failed attempt


def test_access_token_lifetime_is_configurable_and_enforced(http, client, clock):
    configured = http.post(f"{IDP}/_config", json={"access_token_ttl": 60})
    assert configured.status_code == 200 and configured.json()["access_token_ttl"] == 60
    tokens = tokens_for(http, client)
    assert tokens["expires_in"] == 60
    assert userinfo(http, tokens["access_token"]).status_code == 200
    clock.advance(61)
    assert userinfo(http, tokens["access_token"]).status_code == 401
    renewed = refresh(http, client, tokens["refresh_token"]).json()
    assert userinfo(http, renewed["access_token"]).status_code == 200
    assert http.post(f"{IDP}/_config", json={"access_token_ttl": "soon"}).status_code == 400


def test_device_settings_are_configurable(http, client, clock):
    http.post(f"{IDP}/_config", json={"device_interval": 2, "device_expires_in": 20})
    body = start(http, client)
    assert (body["interval"], body["expires_in"]) == (2, 20)
    poll(http, client, body["device_code"])
    clock.advance(2)
    assert poll(http, client, body["device_code"]).json()["error"] == "authorization_pending"
    clock.advance(20)
    assert poll(http, client, body["device_code"]).json()["error"] == "expired_token"
    assert http.get(f"{IDP}/_config").json() == {"access_token_ttl": 3600, "device_interval": 2, "device_expires_in": 20}


def test_revoking_an_access_token(http, client, clock):
    tokens = tokens_for(http, client)
    revoked = http.post(f"{IDP}/oauth/revoke", data={**creds(client), "token": tokens["access_token"],
                                                      "token_type_hint": "access_token"})
    assert revoked.status_code == 200
    assert userinfo(http, tokens["access_token"]).status_code == 401
    assert refresh(http, client, tokens["refresh_token"]).status_code == 200  # the grant lives on


def test_revoking_a_refresh_token_ends_the_grant(http, client, clock):
    tokens = tokens_for(http, client)
    before = stats(http)["families_revoked"]
    revoked = http.post(f"{IDP}/oauth/revoke", data={"token": tokens["refresh_token"]},
                        headers=basic(client["id"], client["secret"]))
    assert revoked.status_code == 200
    assert userinfo(http, tokens["access_token"]).status_code == 401
    assert refresh(http, client, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert stats(http)["families_revoked"] == before + 1
    # Unknown and already-revoked tokens: still 200 (RFC 7009 §2.2).
    assert http.post(f"{IDP}/oauth/revoke", data={**creds(client), "token": "whatever"}).status_code == 200
    assert http.post(f"{IDP}/oauth/revoke", data={**creds(client), "token": tokens["refresh_token"]}).status_code == 200


def test_revocation_needs_a_valid_client(http, client, idp, clock):
    tokens = tokens_for(http, client)
    bad = http.post(f"{IDP}/oauth/revoke", data={"client_id": client["id"], "client_secret": "no", "token": tokens["access_token"]})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    idp.register_client("second-client", "second-secret")
    other = http.post(f"{IDP}/oauth/revoke", data={"client_id": "second-client", "client_secret": "second-secret",
                                                    "token": tokens["access_token"]})
    assert other.status_code == 200
    assert userinfo(http, tokens["access_token"]).status_code == 200  # not another client's to revoke
    assert http.post(f"{IDP}/oauth/revoke", data=creds(client)).json()["error"] == "invalid_request"


def test_userinfo_without_or_with_a_bad_token(http):
    missing = http.get(f"{IDP}/userinfo")
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert userinfo(http, "idp_at_nope").status_code == 401


def test_oauth_error_and_status_faults(http, client, clock):
    code = start(http, client)["device_code"]
    http.post(f"{IDP}/_faults", json={"path_contains": "/oauth/token", "oauth_error": "slow_down"})
    faulted = poll(http, client, code)
    assert faulted.status_code == 400 and faulted.json()["error"] == "slow_down"
    clock.advance(5)  # the server raised this code's interval to 10 along with the answer
    assert poll(http, client, code).json()["error"] == "slow_down"
    http.post(f"{IDP}/_faults", json={"path_contains": "/oauth/token", "status": 503, "count": 2})
    clock.advance(60)
    assert [poll(http, client, code).status_code for _ in range(2)] == [503, 503]
    assert poll(http, client, code).json()["error"] == "authorization_pending"
    http.post(f"{IDP}/_faults", json={"path_contains": "/oauth/token", "oauth_error": "temporarily_unavailable",
                                      "status": 503})
    unavailable = poll(http, client, code)
    assert unavailable.status_code == 503 and unavailable.json()["error"] == "temporarily_unavailable"


def test_human_device_page_approves_and_cancels(http, client, clock):
    body = start(http, client)
    done = http.post(f"{IDP}/device", data={"user_code": body["user_code"], "login": "page.user", "action": "authorize"})
    assert done.status_code == 200 and "all set" in done.text
    tokens = poll(http, client, body["device_code"]).json()
    assert userinfo(http, tokens["access_token"]).json()["preferred_username"] == "page.user"
    cancelled = start(http, client)
    http.post(f"{IDP}/device", data={"user_code": cancelled["user_code"], "action": "cancel"})
    assert poll(http, client, cancelled["device_code"]).json()["error"] == "access_denied"


def test_stats_reset(http, client, clock):
    tokens_for(http, client)
    assert stats(http)["token_requests"] >= 1
    assert http.delete(f"{IDP}/_stats").status_code == 204
    assert all(value == 0 for value in stats(http).values())
    assert set(stats(http)) >= {"token_requests", "refresh_grants", "refresh_reuse_detected", "families_revoked"}
