"""The sandbox GitHub over HTTP on the running local stack: the OAuth web flow with PKCE, the REST
endpoints the sign-in uses, pagination and fault injection."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest

GH = "/_sandbox/github"


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture
def client(local_stack):
    env = local_stack.env
    return {
        "id": env["RELAY_GITHUB_CLIENT_ID"],
        "secret": env["RELAY_GITHUB_CLIENT_SECRET"],
        "redirect_uri": f"{local_stack.url}/api/auth/github/callback",
    }


def authorize(http, client, *, login: str | None = "octo-cat", verifier: str = "v" * 50, state: str = "st4te",
              redirect_uri: str | None = None):
    params = {
        "client_id": client["id"],
        "redirect_uri": redirect_uri or client["redirect_uri"],
        "scope": "read:user user:email",
        "state": state,
        "code_challenge": challenge_of(verifier),
        "code_challenge_method": "S256",
    }
    if login is not None:
        params["login"] = login
    return http.get(f"{GH}/login/oauth/authorize", params=params)


def code_from(response) -> str:
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return query["code"][0]


def exchange(http, client, code: str, *, verifier: str = "v" * 50, redirect_uri: str | None = None,
             secret: str | None = None, as_json: bool = True):
    return http.post(
        f"{GH}/login/oauth/access_token",
        data={
            "client_id": client["id"],
            "client_secret": secret or client["secret"],
            "code": code,
            "redirect_uri": redirect_uri or client["redirect_uri"],
            "code_verifier": verifier,
        },
        headers={"Accept": "application/json"} if as_json else {},
    )


def sign_in(http, client, login: str = "octo-cat") -> str:
    verifier = secrets.token_urlsafe(48)
    token = exchange(http, client, code_from(authorize(http, client, login=login, verifier=verifier)), verifier=verifier)
    return token.json()["access_token"]


def test_authorize_with_login_redirects_with_code_and_state(http, client):
    response = authorize(http, client)
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == client["redirect_uri"]
    query = parse_qs(location.query)
    assert query["state"] == ["st4te"] and len(query["code"][0]) >= 20


def test_pkce_exchange_succeeds_and_code_is_single_use(http, client):
    code = code_from(authorize(http, client))
    first = exchange(http, client, code)
    assert first.status_code == 200
    body = first.json()
    assert body["access_token"].startswith("gho_") and body["token_type"] == "bearer"
    assert body["scope"] == "read:user,user:email"
    replay = exchange(http, client, code)
    assert replay.status_code == 200 and replay.json()["error"] == "bad_verification_code"
    assert "access_token" not in replay.json()


def test_form_encoded_answer_without_accept_json(http, client):
    response = exchange(http, client, code_from(authorize(http, client)), as_json=False)
    assert response.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(response.text)["token_type"] == ["bearer"]


def test_wrong_verifier_fails(http, client):
    response = exchange(http, client, code_from(authorize(http, client)), verifier="w" * 50)
    assert response.status_code == 200 and response.json()["error"] == "bad_verification_code"


def test_wrong_redirect_uri_fails(http, client, local_stack):
    code = code_from(authorize(http, client))
    response = exchange(http, client, code, redirect_uri=f"{local_stack.url}/api/auth/github/elsewhere")
    assert response.json()["error"] == "redirect_uri_mismatch"


def test_wrong_client_secret_fails(http, client):
    response = exchange(http, client, code_from(authorize(http, client)), secret="not-the-secret")
    assert response.json()["error"] == "incorrect_client_credentials"


def test_expired_code_fails(http, client, local_stack, monkeypatch):
    code = code_from(authorize(http, client))
    later = time.time() + 601
    monkeypatch.setattr(local_stack.sandboxes["github"], "clock", lambda: later)
    assert exchange(http, client, code).json()["error"] == "bad_verification_code"


def test_unknown_client_gets_an_error_page(http, client):
    response = http.get(f"{GH}/login/oauth/authorize", params={"client_id": "nope", "redirect_uri": client["redirect_uri"]})
    assert response.status_code == 400 and "text/html" in response.headers["content-type"]


def test_redirect_uri_off_the_callback_is_refused(http, client):
    response = authorize(http, client, redirect_uri="http://evil.test/callback")
    location = response.headers["location"]
    assert location.startswith(client["redirect_uri"]) and "error=redirect_uri_mismatch" in location
    assert "code=" not in location


def test_consent_page_without_login(http, client):
    response = authorize(http, client, login=None)
    assert response.status_code == 200
    page = response.text
    assert "<title>Authorize Agent Relay (sandbox GitHub)</title>" in page
    assert 'name="login"' in page and ">Authorize</button>" in page
    assert 'name="state" value="st4te"' in page and 'name="code_challenge"' in page
    assert "error=access_denied" in page and "Cancel" in page


def test_user_and_emails_with_the_token(http, client):
    token = sign_in(http, client, login="Mona-Lisa")
    user = http.get(f"{GH}/user", headers={"Authorization": f"Bearer {token}"})
    assert user.status_code == 200
    profile = user.json()
    assert profile["login"] == "Mona-Lisa" and isinstance(profile["id"], int) and profile["type"] == "User"
    assert profile["email"] is None and profile["name"] == "Mona Lisa"
    assert profile["avatar_url"] and profile["html_url"]
    again = http.get(f"{GH}/user", headers={"Authorization": f"token {sign_in(http, client, login='mona-lisa')}"})
    assert again.json()["id"] == profile["id"]  # logins are case-insensitive, ids stable
    emails = http.get(f"{GH}/user/emails", headers={"Authorization": f"Bearer {token}"}).json()
    primary = [e for e in emails if e["primary"]]
    assert primary == [{"email": "mona-lisa@users.sandbox.test", "primary": True, "verified": True,
                        "visibility": "private"}]
    assert any(not e["verified"] for e in emails)
    avatar = http.get(urlsplit(profile["avatar_url"]).path)
    assert avatar.status_code == 200 and avatar.headers["content-type"] == "image/svg+xml"


def test_bad_credentials(http):
    for headers in ({}, {"Authorization": "Bearer gho_nope"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = http.get(f"{GH}/user", headers=headers)
        assert response.status_code == 401 and response.json()["message"] == "Bad credentials"


def test_repos_are_paginated_with_link_headers(http, client):
    verifier = secrets.token_urlsafe(48)
    params = {"client_id": client["id"], "redirect_uri": client["redirect_uri"], "scope": "read:user repo",
              "state": "s", "code_challenge": challenge_of(verifier), "code_challenge_method": "S256", "login": "pager"}
    code = code_from(http.get(f"{GH}/login/oauth/authorize", params=params))
    token = exchange(http, client, code, verifier=verifier).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    first = http.get(f"{GH}/user/repos", params={"per_page": 20}, headers=auth)
    assert first.status_code == 200 and len(first.json()) == 20
    assert 'rel="next"' in first.headers["link"] and 'rel="last"' in first.headers["link"]
    seen = list(first.json())
    url = first.links["next"]["url"]
    while url:
        page = http.get(urlsplit(url).path + "?" + urlsplit(url).query, headers=auth)
        seen += page.json()
        url = page.links.get("next", {}).get("url")
    assert len(seen) == 45 and len({r["full_name"] for r in seen}) == 45
    assert all(r["owner"]["login"] == "pager" for r in seen)
    assert http.get(f"{GH}/user/repos", params={"per_page": 20}, headers=auth).json() == first.json()


def test_fault_injection_fails_the_next_calls_then_recovers(http, client):
    token = sign_in(http, client)
    auth = {"Authorization": f"Bearer {token}"}
    queued = http.post(f"{GH}/_faults", json={"path_contains": "/user", "status": 503, "count": 2})
    assert queued.status_code == 201
    assert [http.get(f"{GH}/user", headers=auth).status_code for _ in range(3)] == [503, 503, 200]


def test_fault_delay_and_clear(http, client):
    token = sign_in(http, client)
    auth = {"Authorization": f"Bearer {token}"}
    http.post(f"{GH}/_faults", json={"path_contains": "/user/emails", "delay_ms": 300, "count": 1})
    started = time.perf_counter()
    assert http.get(f"{GH}/user/emails", headers=auth).status_code == 200
    assert time.perf_counter() - started >= 0.3
    http.post(f"{GH}/_faults", json={"path_contains": "/user", "status": 500, "count": 5})
    assert http.delete(f"{GH}/_faults").status_code == 204
    assert http.get(f"{GH}/user", headers=auth).status_code == 200


def test_unknown_sandbox_is_404(http):
    assert http.get("/_sandbox/nope/anything").status_code == 404
