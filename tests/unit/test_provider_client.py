"""The providers' upstream client against respx-mocked endpoints: each provider's documented shapes,
error translation, and no token in any exception."""

import httpx
import pytest

from relay_cloud.adapters.providers import PermanentRefreshError, ProviderClient, UpstreamUnavailable
from relay_cloud.domain.errors import ValidationFailed
from relay_cloud.domain.providers import Registry, built_in_providers, custom_providers

REG = Registry(
    built_in_providers(anthropic_url="https://api.anthropic.test", openai_url="https://api.openai.test",
                       google_url="https://gl.test", github_oauth_url="https://github.test",
                       github_client_id="cid", github_client_secret="csecret")
    + custom_providers('[{"id": "idp", "device_authorization_url": "https://idp.test/device", '
                       '"token_url": "https://idp.test/token", "revoke_url": "https://idp.test/revoke", '
                       '"userinfo_url": "https://idp.test/userinfo", "client_id": "c", "client_secret": "s"}]')
)


@pytest.fixture
def client():
    return ProviderClient(github_api_url="https://api.github.test", retries=1, backoff_s=0)


@pytest.mark.parametrize("provider,url,auth_header", [
    ("anthropic", "https://api.anthropic.test/v1/models", "x-api-key"),
    ("openai", "https://api.openai.test/v1/models", "authorization"),
    ("google", "https://gl.test/v1beta/models", "x-goog-api-key"),
])
def test_api_key_checks_use_the_free_model_list(client, respx_mock, provider, url, auth_header):
    route = respx_mock.get(url).mock(return_value=httpx.Response(200, json={"data": []}))
    client.validate_api_key(REG.get(provider), "the-key")
    assert auth_header in route.calls.last.request.headers
    respx_mock.get(url).mock(return_value=httpx.Response(401 if provider != "google" else 400, json={}))
    with pytest.raises(ValidationFailed) as err:
        client.validate_api_key(REG.get(provider), "the-key")
    assert err.value.code == "INVALID_CREDENTIAL" and "the-key" not in str(err.value.body())
    respx_mock.get(url).mock(return_value=httpx.Response(503))
    with pytest.raises(UpstreamUnavailable):
        client.validate_api_key(REG.get(provider), "the-key")


def test_github_device_errors_arrive_as_200_bodies(client, respx_mock):
    token = respx_mock.post("https://github.test/login/oauth/access_token")
    for error, outcome in [("authorization_pending", "pending"), ("slow_down", "slow_down"),
                           ("access_denied", "denied"), ("expired_token", "expired"),
                           ("incorrect_device_code", "error")]:
        token.mock(return_value=httpx.Response(200, json={"error": error, "interval": 10}))
        assert client.poll_device_token(REG.get("github"), "dc").outcome == outcome
    token.mock(return_value=httpx.Response(200, json={"access_token": "gho_x", "token_type": "bearer", "scope": "repo"}))
    result = client.poll_device_token(REG.get("github"), "dc")
    assert result.outcome == "tokens" and result.tokens.access_token == "gho_x"
    assert b"device_code=dc" in token.calls.last.request.content


def test_rfc_device_errors_arrive_as_400_and_outages_raise(client, respx_mock):
    token = respx_mock.post("https://idp.test/token")
    token.mock(return_value=httpx.Response(400, json={"error": "slow_down"}))
    assert client.poll_device_token(REG.get("idp"), "dc").outcome == "slow_down"
    assert b"client_secret=s" in token.calls.last.request.content
    token.mock(return_value=httpx.Response(502))
    with pytest.raises(UpstreamUnavailable):
        client.poll_device_token(REG.get("idp"), "dc")
    token.mock(side_effect=httpx.ConnectError("down"))
    with pytest.raises(UpstreamUnavailable):
        client.poll_device_token(REG.get("idp"), "dc")


def test_device_authorization_is_parsed(client, respx_mock):
    respx_mock.post("https://idp.test/device").mock(return_value=httpx.Response(200, json={
        "device_code": "dc", "user_code": "WDJB-MJHT", "verification_uri": "https://idp.test/d",
        "verification_uri_complete": "https://idp.test/d?user_code=WDJB-MJHT", "expires_in": 600, "interval": 3}))
    auth = client.start_device_authorization(REG.get("idp"))
    assert (auth.user_code, auth.expires_in, auth.interval) == ("WDJB-MJHT", 600, 3)
    assert "dc" not in repr(auth)


def test_refresh_permanent_and_transient(client, respx_mock):
    token = respx_mock.post("https://idp.test/token")
    token.mock(return_value=httpx.Response(200, json={"access_token": "a2", "refresh_token": "r2", "expires_in": 60}))
    assert client.refresh(REG.get("idp"), "r1").refresh_token == "r2"
    token.mock(return_value=httpx.Response(400, json={"error": "invalid_grant", "error_description": "reused"}))
    with pytest.raises(PermanentRefreshError) as err:
        client.refresh(REG.get("idp"), "r1")
    assert err.value.revoked and err.value.reason == "invalid_grant: reused" and "r1" not in str(err.value)
    token.mock(return_value=httpx.Response(429))
    with pytest.raises(UpstreamUnavailable):
        client.refresh(REG.get("idp"), "r1")


def test_revoke_and_identity(client, respx_mock):
    revoke = respx_mock.post("https://idp.test/revoke").mock(return_value=httpx.Response(200))
    assert client.revoke(REG.get("idp"), {"access_token": "a", "refresh_token": "r"})
    assert revoke.call_count == 2
    github_revoke = respx_mock.delete("https://github.test/applications/cid/token").mock(return_value=httpx.Response(204))
    assert client.revoke(REG.get("github"), {"access_token": "gho_x"})
    assert github_revoke.calls.last.request.headers["authorization"].startswith("Basic ")
    respx_mock.get("https://api.github.test/user").mock(return_value=httpx.Response(200, json={"login": "octo"}))
    assert client.identity(REG.get("github"), "gho_x") == "octo"
    respx_mock.get("https://idp.test/userinfo").mock(return_value=httpx.Response(401))
    assert client.identity(REG.get("idp"), "a") is None
    assert not client.revoke(REG.get("anthropic"), {"api_key": "k"})  # no revocation endpoint
