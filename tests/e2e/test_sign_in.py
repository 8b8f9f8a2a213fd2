"""The whole sign-in journey over HTTP against the local stack and its sandbox GitHub, as a browser
and the dashboard drive it; the captured logs of the run must hold no token, code, state or cookie."""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx

from relay_cloud.local.signin import sign_in
from tests.e2e.conftest import SEEN_SECRETS
from tests.logcapture import all_log_output


def signed_in(base_url: str, login: str) -> httpx.Client:
    client = sign_in(base_url, login)
    SEEN_SECRETS.update({client.csrf_token, *client.cookies.values()})
    return client


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def table_items(stack) -> list[dict]:
    client = boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name="us-east-1")
    items, kwargs = [], {"TableName": stack.env["RELAY_TABLE_NAME"]}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


SIGN_IN_WRITES = {"USER", "GITHUB_IDENTITY", "SESSION", "CREDENTIAL", "DATA_KEY"}


def durable_items(stack) -> list[dict]:
    """The items a sign-in can create (not the pending sign-in a callback consumes, whatever the outcome,
    nor what runs in the background meanwhile: schedules, or earlier tests' device-flow workflows still
    polling, which write audit items)."""
    return [i for i in table_items(stack) if i.get("type", {}).get("S") in SIGN_IN_WRITES]


def set_cookie_headers(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


class Journey:
    """Follows the redirects by hand, remembering every secret it sees so the logs can be scanned."""

    def __init__(self, base_url: str):
        self.client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=15)
        self.secrets: set[str] = SEEN_SECRETS  # scanned for in the module's logs (tests/e2e/conftest.py)

    def remember_query(self, url: str) -> None:
        for name, values in parse_qs(urlsplit(url).query).items():
            if name in ("code", "state", "code_challenge"):
                self.secrets.update(values)

    def remember_cookies(self, response: httpx.Response) -> None:
        for header in set_cookie_headers(response):
            value = header.split(";", 1)[0].split("=", 1)[1]
            if value:
                self.secrets.add(value)

    def start(self, next_path="/dashboard"):
        response = self.client.get("/api/auth/github/login", params={"next": next_path})
        self.remember_cookies(response)
        self.remember_query(response.headers.get("location", ""))
        return response

    def approve(self, authorize_url: str, login: str):
        response = self.client.get(httpx.URL(authorize_url).copy_merge_params({"login": login}))
        self.remember_query(response.headers.get("location", ""))
        return response

    def callback(self, url: str, **kwargs):
        response = self.client.get(url, **kwargs)
        self.remember_cookies(response)
        return response


def test_sign_in_journey_and_no_secret_in_logs(local_stack):
    with all_log_output() as logs:
        journey, status = sign_in_journey(local_stack)
    captured = logs.getvalue()
    assert "/api/auth/github/callback" in captured  # the requests were logged...
    leaked = [s for s in journey.secrets if s in captured]
    assert leaked == []  # ...but no code, state, challenge, cookie or CSRF token
    assert not re.search(r"gho_[A-Za-z0-9]+", captured)


def sign_in_journey(local_stack):
    journey = Journey(local_stack.url)
    login = unique("octo")

    start = journey.start("/dashboard/team?tab=members")
    assert start.status_code == 302
    authorize = urlsplit(start.headers["location"])
    query = parse_qs(authorize.query)
    assert authorize.path.endswith("/_sandbox/github/login/oauth/authorize")
    assert query["redirect_uri"] == [f"{local_stack.url}/api/auth/github/callback"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["scope"] == ["read:user user:email"]
    prelogin = next(h for h in set_cookie_headers(start) if h.startswith("relay_prelogin="))
    assert "HttpOnly" in prelogin and "SameSite=Lax" in prelogin and "Secure" not in prelogin

    approved = journey.approve(start.headers["location"], login)
    assert approved.status_code == 302
    callback_url = approved.headers["location"]
    assert callback_url.startswith(f"{local_stack.url}/api/auth/github/callback?")

    done = journey.callback(callback_url)
    assert done.status_code == 302 and done.headers["location"] == "/dashboard/team?tab=members"
    session_cookie = next(h for h in set_cookie_headers(done) if h.startswith("relay_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie and "Max-Age=604800" in session_cookie
    assert any(h.startswith("relay_prelogin=;") for h in set_cookie_headers(done))

    status = journey.client.get("/api/auth/session").json()
    assert status["authenticated"] is True and status["user"]["github_login"] == login
    assert status["user"]["plan"] == "free"
    me = journey.client.get("/api/auth/me")
    assert me.status_code == 200 and me.json()["email"] == f"{login}@users.sandbox.test"

    # The GitHub token is in the table only as vault ciphertext.
    items = table_items(local_stack)
    dump = repr(items)
    assert "gho_" not in dump
    assert any(i.get("type", {}).get("S") == "CREDENTIAL" for i in items)
    for secret in journey.secrets:
        assert secret not in dump
    journey.secrets.add(status["csrf_token"])

    # Replaying the callback is refused, with a page and a code, and creates nothing.
    before = len(durable_items(local_stack))
    replay = journey.callback(callback_url)
    assert replay.status_code == 400 and 'data-code="OAUTH_STATE_INVALID"' in replay.text
    assert replay.headers["content-type"].startswith("text/html")
    assert "/dashboard?auth_error=OAUTH_STATE_INVALID" in replay.text
    assert len(durable_items(local_stack)) == before

    assert journey.client.post("/api/auth/logout", headers={"X-CSRF-Token": status["csrf_token"]}).status_code == 204
    return journey, status


def test_missing_state_is_a_400_with_a_code(http):
    response = http.get("/api/auth/github/callback", params={"code": "x"}, headers={"Accept": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "OAUTH_STATE_MISSING"


def test_state_from_another_browser_is_refused(local_stack):
    victim, attacker = Journey(local_stack.url), Journey(local_stack.url)
    start = attacker.start()
    callback_url = attacker.approve(start.headers["location"], unique("mallory")).headers["location"]
    # The victim's browser is sent the attacker's callback (login CSRF): no pre-login cookie matches.
    response = victim.callback(callback_url, headers={"Accept": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "OAUTH_STATE_INVALID"
    assert "relay_session=" not in " ".join(h for h in set_cookie_headers(response) if "Max-Age=0" not in h)


def test_cancel_at_github_is_reported(local_stack):
    journey = Journey(local_stack.url)
    authorize = journey.start().headers["location"]
    query = parse_qs(urlsplit(authorize).query)
    denied = f"{query['redirect_uri'][0]}?error=access_denied&state={query['state'][0]}"
    response = journey.callback(denied, headers={"Accept": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "OAUTH_DENIED"


def test_unknown_code_is_refused_and_nothing_is_created(local_stack):
    journey = Journey(local_stack.url)
    authorize = journey.start().headers["location"]
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    before = len(durable_items(local_stack))
    response = journey.callback(f"/api/auth/github/callback?code=not-a-code&state={state}",
                                headers={"Accept": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "OAUTH_CODE_INVALID"
    assert len(durable_items(local_stack)) == before


def test_github_outage_is_a_503_and_nothing_is_created(local_stack):
    journey = Journey(local_stack.url)
    callback_url = journey.approve(journey.start().headers["location"], unique("outage")).headers["location"]
    before = len(durable_items(local_stack))
    fault = journey.client.post("/_sandbox/github/_faults",
                                json={"path_contains": "/login/oauth/access_token", "status": 502, "count": 1})
    assert fault.status_code in (200, 201, 204)
    response = journey.callback(callback_url, headers={"Accept": "application/json"})
    assert response.status_code == 503 and response.json()["code"] == "UPSTREAM_UNAVAILABLE"
    assert len(durable_items(local_stack)) == before


def test_open_redirect_is_refused(local_stack):
    for evil in ("https://evil.test/", "//evil.test/x", "/\\evil.test"):
        journey = Journey(local_stack.url)
        approved = journey.approve(journey.start(evil).headers["location"], unique("redir"))
        assert journey.callback(approved.headers["location"]).headers["location"] == "/dashboard"


def test_signing_in_again_gives_a_new_session_id_and_ends_the_old_one(local_stack):
    login = unique("fixation")
    client = signed_in(local_stack.url, login)
    old = client.cookies.get("relay_session")
    journey = Journey(local_stack.url)
    journey.client.cookies.set("relay_session", old, domain=urlsplit(local_stack.url).hostname)
    approved = journey.approve(journey.start().headers["location"], login)
    done = journey.callback(approved.headers["location"])
    new = journey.client.cookies.get("relay_session")
    assert done.status_code == 302 and new and new != old
    assert client.get("/api/auth/me").status_code == 401


def test_csrf_is_required_on_cookie_authenticated_writes(local_stack):
    client = signed_in(local_stack.url, unique("csrf"))
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        refused = client.post("/api/auth/logout", headers=headers)
        assert refused.status_code == 403 and refused.json()["code"] == "CSRF_TOKEN_INVALID"
    assert client.get("/api/auth/me").status_code == 200  # still signed in
    assert client.post("/api/auth/logout", headers={"X-CSRF-Token": client.csrf_token}).status_code == 204
    expired = client.get("/api/auth/me")
    assert expired.status_code == 401 and expired.json()["code"] == "SESSION_EXPIRED"
    assert client.get("/api/auth/session").json() == {"authenticated": False, "code": "NOT_SIGNED_IN"}


def test_session_routes_refuse_anonymous_callers(http):
    for method, path in (("GET", "/api/auth/me"), ("POST", "/api/auth/logout"), ("DELETE", "/api/account")):
        response = http.request(method, path)
        assert response.status_code == 401 and response.json()["code"] == "SESSION_EXPIRED", path


def test_bogus_session_cookie_reads_as_expired(http):
    http.cookies.set("relay_session", "not-a-session")
    assert http.get("/api/auth/session").json() == {"authenticated": False, "code": "SESSION_EXPIRED"}


def test_delete_account_crypto_shreds_and_removes_everything(local_stack):
    login = unique("leaver")
    client = signed_in(local_stack.url, login)
    user_id = client.get("/api/auth/me").json()["id"]
    owned = [i for i in table_items(local_stack) if user_id in repr(i)]
    assert {i["type"]["S"] for i in owned} >= {"USER", "CREDENTIAL", "DATA_KEY", "SESSION", "GITHUB_IDENTITY"}

    refused = client.request("DELETE", "/api/account", json={"confirm": "someone"},
                             headers={"X-CSRF-Token": client.csrf_token})
    assert refused.status_code == 400 and refused.json()["code"] == "CONFIRMATION_REQUIRED"
    github = local_stack.sandboxes["github"]
    assert github.live_tokens(login) == 1
    deleted = client.request("DELETE", "/api/account", json={"confirm": login},
                             headers={"X-CSRF-Token": client.csrf_token})
    assert deleted.status_code == 204
    assert github.live_tokens(login) == 0  # the GitHub authorization was given back
    assert [i for i in table_items(local_stack) if user_id in repr(i)] == []
    assert client.get("/api/auth/me").status_code == 401

    again = signed_in(local_stack.url, login)
    assert again.get("/api/auth/me").json()["id"] != user_id
