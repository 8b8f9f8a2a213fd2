"""The sandbox GitHub's OAuth device flow over HTTP on the running local stack: the device code request,
every documented token error (HTTP 200 bodies, as GitHub sends them), slow_down raising the interval for
later polls, expiry on the injectable clock, the approve/deny control surface and the human page,
single-use device codes, tokens on the REST API, token revocation, runtime settings and OAuth faults."""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import parse_qs

import pytest

GH = "/_sandbox/github"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JSON = {"Accept": "application/json"}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def github(local_stack):
    """The session's sandbox GitHub with its default device settings and no queued faults (other tests
    share it), put back as it was afterwards."""
    sandbox = local_stack.sandboxes["github"]
    saved = dict(sandbox.settings)
    sandbox.settings.update(device_interval=5, device_expires_in=900)
    sandbox._clear_faults(None)
    yield sandbox
    sandbox.settings.update(saved)
    sandbox._clear_faults(None)


@pytest.fixture
def clock(github, monkeypatch):
    fake = Clock()
    monkeypatch.setattr(github, "clock", fake)
    return fake


@pytest.fixture
def client(local_stack):
    return {"id": local_stack.env["RELAY_GITHUB_CLIENT_ID"], "secret": local_stack.env["RELAY_GITHUB_CLIENT_SECRET"]}


def start(http, client, scope="repo read:user user:email", *, as_json=True):
    response = http.post(f"{GH}/login/device/code", data={"client_id": client["id"], "scope": scope},
                         headers=JSON if as_json else {})
    assert response.status_code == 200, response.text
    return response.json() if as_json else {k: v[0] for k, v in parse_qs(response.text).items()}


def poll(http, client, device_code, **extra):
    data = {"client_id": client["id"], "device_code": device_code, "grant_type": DEVICE_GRANT, **extra}
    response = http.post(f"{GH}/login/oauth/access_token", data=data, headers=JSON)
    assert response.status_code == 200, response.text  # GitHub answers device-flow errors with HTTP 200
    return response.json()


def approve(http, user_code, login="device-dev"):
    return http.post(f"{GH}/device/approve", json={"user_code": user_code, "login": login})


def test_device_code_response_follows_github(http, client, local_stack, clock):
    body = start(http, client)
    assert set(body) == {"device_code", "user_code", "verification_uri", "expires_in", "interval"}
    assert re.fullmatch(r"[0-9a-f]{40}", body["device_code"])
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", body["user_code"])
    assert body["verification_uri"] == f"{local_stack.url}{GH}/login/device"
    assert body["expires_in"] == 900 and body["interval"] == 5


def test_device_code_is_form_encoded_without_accept_json_and_accepts_a_json_body(http, client, clock):
    response = http.post(f"{GH}/login/device/code", data={"client_id": client["id"], "scope": "repo"})
    assert response.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = parse_qs(response.text)
    assert form["interval"] == ["5"] and form["expires_in"] == ["900"] and form["user_code"][0]
    as_json = http.post(f"{GH}/login/device/code", json={"client_id": client["id"], "scope": "repo"}, headers=JSON)
    assert as_json.status_code == 200 and as_json.json()["device_code"]


def test_unknown_client_cannot_start(http):
    response = http.post(f"{GH}/login/device/code", data={"client_id": "Iv1.nope"}, headers=JSON)
    assert response.status_code == 404


def test_full_flow_pending_then_token_then_single_use(http, client, clock):
    body = start(http, client)
    pending = poll(http, client, body["device_code"])
    assert pending["error"] == "authorization_pending"
    assert pending["error_description"] and pending["error_uri"].startswith("https://docs.github.com/")
    assert "access_token" not in pending
    assert approve(http, body["user_code"].lower().replace("-", ""), login="Device-Dev").json()["status"] == "approved"
    clock.advance(5)
    token = poll(http, client, body["device_code"])
    assert token["access_token"].startswith("gho_") and token["token_type"] == "bearer"
    assert token["scope"] == "repo,read:user,user:email"
    clock.advance(5)
    assert poll(http, client, body["device_code"])["error"] == "incorrect_device_code"  # single use

    auth = {"Authorization": f"Bearer {token['access_token']}"}
    user = http.get(f"{GH}/user", headers=auth)
    assert user.status_code == 200 and user.json()["login"] == "Device-Dev"
    assert user.headers["x-oauth-scopes"] == "read:user, repo, user:email"
    emails = http.get(f"{GH}/user/emails", headers=auth)
    assert emails.status_code == 200 and emails.json()[0]["email"] == "device-dev@users.sandbox.test"
    repos = http.get(f"{GH}/user/repos", params={"per_page": 100}, headers=auth)
    assert repos.status_code == 200 and len(repos.json()) == 45  # the repo scope includes private ones


def test_form_encoded_success_without_accept_json(http, client, clock):
    body = start(http, client, "read:user")
    approve(http, body["user_code"])
    response = http.post(f"{GH}/login/oauth/access_token",
                         data={"client_id": client["id"], "device_code": body["device_code"], "grant_type": DEVICE_GRANT})
    form = parse_qs(response.text)
    assert form["token_type"] == ["bearer"] and form["access_token"][0].startswith("gho_")
    assert form["scope"] == ["read:user"]


def test_slow_down_adds_five_seconds_and_keeps_the_raised_interval(http, client, clock):
    body = start(http, client)
    code = body["device_code"]
    assert poll(http, client, code)["error"] == "authorization_pending"
    clock.advance(1)
    first = poll(http, client, code)
    assert first["error"] == "slow_down" and first["interval"] == 10
    clock.advance(6)  # enough for the old interval, too soon for the new one
    second = poll(http, client, code)
    assert second["error"] == "slow_down" and second["interval"] == 15
    clock.advance(15)
    assert poll(http, client, code)["error"] == "authorization_pending"
    clock.advance(14)
    assert poll(http, client, code)["interval"] == 20  # still 15 s, not back to 5
    # Another device code is unaffected.
    other = start(http, client)["device_code"]
    assert poll(http, client, other)["error"] == "authorization_pending"
    clock.advance(5)
    assert poll(http, client, other)["error"] == "authorization_pending"


def test_expired_device_code(http, client, clock):
    body = start(http, client)
    clock.advance(901)
    assert poll(http, client, body["device_code"])["error"] == "expired_token"
    late = approve(http, body["user_code"])
    assert late.status_code == 410


def test_deny_gives_access_denied_and_cannot_be_approved_later(http, client, clock):
    body = start(http, client)
    denied = http.post(f"{GH}/device/deny", json={"user_code": body["user_code"], "login": "someone"})
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    assert poll(http, client, body["device_code"])["error"] == "access_denied"
    clock.advance(10)
    assert poll(http, client, body["device_code"])["error"] == "access_denied"
    assert approve(http, body["user_code"]).status_code == 409


def test_control_surface_validation(http, client, clock):
    assert approve(http, "BCDF-GHJK").status_code == 404
    body = start(http, client)
    assert http.post(f"{GH}/device/approve", json={"user_code": body["user_code"]}).status_code == 400
    assert http.post(f"{GH}/device/approve", json={"login": "x"}).status_code == 400
    assert approve(http, body["user_code"], login="-bad").status_code == 400
    assert approve(http, body["user_code"]).status_code == 200
    assert approve(http, body["user_code"]).status_code == 409


def test_client_and_grant_errors(http, client, clock):
    body = start(http, client)
    code = body["device_code"]
    assert poll(http, client, "0" * 40)["error"] == "incorrect_device_code"
    wrong = dict(client, id="Iv1.unknown")
    assert poll(http, wrong, code)["error"] == "incorrect_client_credentials"
    assert poll(http, client, code, client_secret="wrong")["error"] == "incorrect_client_credentials"
    clock.advance(5)
    assert poll(http, client, code, client_secret=client["secret"])["error"] == "authorization_pending"
    unsupported = poll(http, client, code, grant_type="password")
    assert unsupported["error"] == "unsupported_grant_type"


def test_errors_are_form_encoded_without_accept_json(http, client, clock):
    body = start(http, client)
    response = http.post(f"{GH}/login/oauth/access_token",
                         data={"client_id": client["id"], "device_code": body["device_code"], "grant_type": DEVICE_GRANT})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(response.text)["error"] == ["authorization_pending"]


def test_human_device_page(http, client, clock):
    page = http.get(f"{GH}/login/device", params={"user_code": "ABCD-EFGH"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'name="user_code"' in page.text and 'value="ABCD-EFGH"' in page.text and 'name="login"' in page.text
    assert "Authorize" in page.text and "Cancel" in page.text
    body = start(http, client, "read:user")
    done = http.post(f"{GH}/login/device", data={"user_code": body["user_code"], "login": "page-user", "action": "authorize"})
    assert done.status_code == 200 and "all set" in done.text
    token = poll(http, client, body["device_code"])["access_token"]
    assert http.get(f"{GH}/user", headers={"Authorization": f"token {token}"}).json()["login"] == "page-user"
    cancelled = start(http, client)
    http.post(f"{GH}/login/device", data={"user_code": cancelled["user_code"], "action": "cancel"})
    assert poll(http, client, cancelled["device_code"])["error"] == "access_denied"
    wrong = http.post(f"{GH}/login/device", data={"user_code": "ZZZZ-ZZZZ", "login": "x", "action": "authorize"})
    assert wrong.status_code == 400 and "not valid" in wrong.text


def test_runtime_settings(http, client, clock):
    changed = http.post(f"{GH}/_config", json={"device_interval": 1, "device_expires_in": 30})
    assert changed.status_code == 200 and changed.json() == {"device_interval": 1, "device_expires_in": 30}
    body = start(http, client)
    assert (body["interval"], body["expires_in"]) == (1, 30)
    poll(http, client, body["device_code"])
    clock.advance(1)
    assert poll(http, client, body["device_code"])["error"] == "authorization_pending"
    clock.advance(30)
    assert poll(http, client, body["device_code"])["error"] == "expired_token"
    assert http.post(f"{GH}/_config", json={"nope": 1}).status_code == 400
    assert http.post(f"{GH}/_config", json={"device_interval": 0}).status_code == 400
    assert http.get(f"{GH}/_config").json() == {"device_interval": 1, "device_expires_in": 30}


def test_oauth_error_fault_answers_like_github_then_recovers(http, client, clock):
    body = start(http, client)
    queued = http.post(f"{GH}/_faults", json={"path_contains": "/login/oauth/access_token", "oauth_error": "slow_down"})
    assert queued.status_code == 201
    faulted = poll(http, client, body["device_code"])
    assert faulted["error"] == "slow_down" and faulted["interval"] == 10
    clock.advance(10)
    assert poll(http, client, body["device_code"])["error"] == "authorization_pending"
    http.post(f"{GH}/_faults", json={"path_contains": "/login/oauth/access_token", "status": 502})
    clock.advance(10)
    raw = http.post(f"{GH}/login/oauth/access_token", headers=JSON,
                    data={"client_id": client["id"], "device_code": body["device_code"], "grant_type": DEVICE_GRANT})
    assert raw.status_code == 502
    assert http.post(f"{GH}/_faults", json={"oauth_error": "Not An Error"}).status_code == 400


def test_control_paths_are_never_faulted(http, client, clock):
    body = start(http, client)
    http.post(f"{GH}/_faults", json={"path_contains": "", "status": 500, "count": 5})
    try:
        assert approve(http, body["user_code"]).status_code == 200
    finally:
        http.delete(f"{GH}/_faults")


def test_revoking_a_device_token_through_the_oauth_app_api(http, client, clock):
    body = start(http, client, "read:user")
    approve(http, body["user_code"], login="revoker")
    token = poll(http, client, body["device_code"])["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert http.get(f"{GH}/user", headers=auth).status_code == 200
    basic = "Basic " + base64.b64encode(f"{client['id']}:{client['secret']}".encode()).decode()
    bad = "Basic " + base64.b64encode(f"{client['id']}:wrong".encode()).decode()
    url = f"{GH}/applications/{client['id']}/token"
    assert http.request("DELETE", url, json={"access_token": token}, headers={"Authorization": bad}).status_code == 404
    revoked = http.request("DELETE", url, json={"access_token": token}, headers={"Authorization": basic})
    assert revoked.status_code == 204
    assert http.get(f"{GH}/user", headers=auth).status_code == 401
    again = http.request("DELETE", url, json={"access_token": token}, headers={"Authorization": basic})
    assert again.status_code == 404
