"""Daemon linking through the local stack, with a third-party OAuth client (oauthlib's DeviceClient)
driving the RFC 8628 device grant: every token-endpoint error, form and JSON bodies, the dashboard's
approve/deny, the key on daemon routes, unlinking from the dashboard and the CLI, tenant isolation,
session and CSRF checks, and no device code or key in any log line, other response or table item."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
import uuid

import boto3
import httpx
import pytest
from oauthlib.oauth2 import DeviceClient
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from relay_cloud.domain.daemons import parse_daemon_key
from relay_cloud.local.signin import sign_in
from tests.e2e.conftest import SEEN_SECRETS

CLIENT_ID = "relay-cloud-cli"
DEVICE = "/api/daemons/link/device"
TOKEN = "/api/daemons/link/token"


def signed_in(stack, prefix="dmn") -> httpx.Client:
    client = sign_in(stack.url, f"{prefix}-{uuid.uuid4().hex[:6]}")
    SEEN_SECRETS.update({client.csrf_token, *client.cookies.values()})
    return client


def write(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    return client.request(method, path, headers={"X-CSRF-Token": client.csrf_token}, **kwargs)


def public_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()


def start_link(http: httpx.Client, *, name="Work laptop", as_json=False) -> dict:
    params = {"client_id": CLIENT_ID, "machine_id": f"host-{uuid.uuid4().hex[:8]}", "name": name,
              "public_key": public_key()}
    response = http.post(DEVICE, json=params) if as_json else http.post(DEVICE, data=params)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    started = response.json()
    SEEN_SECRETS.add(started["device_code"])
    started["machine_id"] = params["machine_id"]
    return started


class Cli:
    """The CLI's side of the device grant, built on oauthlib's DeviceClient."""

    def __init__(self, http: httpx.Client):
        self.http, self.oauth = http, DeviceClient(CLIENT_ID)

    def poll(self, device_code: str, *, as_json=False) -> tuple[int, dict | str]:
        """(status, token dict) on success, (status, RFC 6749 error code) otherwise."""
        body = self.oauth.prepare_request_body(device_code, include_client_id=True)
        if as_json:
            response = self.http.post(TOKEN, json=dict(httpx.QueryParams(body)))
        else:
            response = self.http.post(TOKEN, content=body,
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert response.headers["cache-control"] == "no-store"
        try:
            token = self.oauth.parse_request_body_response(response.text)
        except OAuth2Error as error:
            assert response.status_code == 400, response.text
            return response.status_code, error.error
        SEEN_SECRETS.add(token["access_token"])
        SEEN_SECRETS.add(parse_daemon_key(token["access_token"]).secret)
        return response.status_code, dict(token)


def table(stack):
    return boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name="us-east-1"), stack.env["RELAY_TABLE_NAME"]


def link_request_key(device_code: str) -> dict:
    return {"pk": {"S": f"LINK#{hashlib.sha256(device_code.encode()).hexdigest()}"}, "sk": {"S": "REQUEST"}}


def age_link_request(stack, device_code: str, seconds: int) -> None:
    """Move a link request's creation (and last poll) back in time: the clock of the stored item."""
    client, name = table(stack)
    item = client.get_item(TableName=name, Key=link_request_key(device_code), ConsistentRead=True)["Item"]
    updates, values = ["created_at = :c"], {":c": {"N": str(int(item["created_at"]["N"]) - seconds)}}
    if "last_polled_at" in item:
        updates.append("last_polled_at = :p")
        values[":p"] = {"N": str(int(item["last_polled_at"]["N"]) - seconds)}
    client.update_item(TableName=name, Key=link_request_key(device_code), UpdateExpression="SET " + ", ".join(updates),
                       ExpressionAttributeValues=values)


def stored_interval(stack, device_code: str) -> int:
    client, name = table(stack)
    item = client.get_item(TableName=name, Key=link_request_key(device_code), ConsistentRead=True)["Item"]
    return int(item["interval"]["N"])


def daemon_client(stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_the_whole_link_flow_with_an_oauth_client_library(local_stack, http):
    owner = signed_in(local_stack, "owner")
    cli = Cli(http)
    started = start_link(http)
    assert set(started) - {"machine_id"} == {"device_code", "user_code", "verification_uri",
                                             "verification_uri_complete", "expires_in", "interval"}
    assert started["expires_in"] == 600 and started["interval"] == 5
    assert started["verification_uri"] == f"{local_stack.url}/dashboard/link"
    assert started["verification_uri_complete"] == f"{local_stack.url}/dashboard/link?user_code={started['user_code']}"
    code = started["user_code"]
    assert len(code) == 9 and code[4] == "-" and set(code.replace("-", "")) <= set("BCDFGHJKLMNPQRSTVWXZ")

    assert cli.poll(started["device_code"]) == (400, "authorization_pending")

    # The dashboard shows what asks to be linked (any case, with or without the hyphen).
    view = owner.get(f"/api/daemons/link/requests/{code.replace('-', '').lower()}")
    assert view.status_code == 200, view.text
    assert view.json()["machine_id"] == started["machine_id"] and view.json()["name"] == "Work laptop"
    assert view.json()["status"] == "pending" and view.json()["requesting_ip"] == http.source_address
    assert started["device_code"] not in view.text

    approved = write(owner, "POST", f"/api/daemons/link/requests/{code}/approve", json={"allowed_providers": ["github"]})
    assert approved.status_code == 200, approved.text
    daemon_id = approved.json()["daemon_id"]
    assert approved.json() == {"daemon_id": daemon_id, "name": "Work laptop", "machine_id": started["machine_id"]}

    status, token = cli.poll(started["device_code"])
    assert status == 200 and token["token_type"] == "Bearer" and token["daemon_id"] == daemon_id
    assert token["access_token"].startswith(f"rly_{daemon_id}_") and token["scope"] == ["daemon"]
    assert cli.poll(started["device_code"]) == (400, "invalid_grant")  # exactly one exchange

    key = token["access_token"]
    daemon = daemon_client(local_stack, key)
    agents = daemon.get("/api/daemons/agents")
    assert agents.status_code == 200, agents.text
    assert agents.json() == {"daemons": [{"daemon_id": daemon_id, "name": "Work laptop", "presence": "offline",
                                          "agents": []}]}
    machines = owner.get("/api/daemons").json()["daemons"]
    assert [(m["daemon_id"], m["presence"], m["allowed_providers"], m["heartbeat_interval_s"]) for m in machines] == [
        (daemon_id, "offline", ["github"], 15)]
    assert key not in repr(machines) and key not in agents.text

    # Nothing secret at rest: neither the device code nor the key (only their SHA-256).
    client, name = table(local_stack)
    items = repr(client.scan(TableName=name)["Items"])
    assert started["device_code"] not in items and parse_daemon_key(key).secret not in items

    # Unlinked from the dashboard: the very next request with the key is refused.
    assert write(owner, "DELETE", f"/api/daemons/{daemon_id}").status_code == 204
    refused = daemon.get("/api/daemons/agents")
    assert refused.status_code == 401 and refused.json()["code"] == "DAEMON_KEY_REVOKED"
    assert owner.get("/api/daemons").json() == {"daemons": []}
    assert write(owner, "DELETE", f"/api/daemons/{daemon_id}").status_code == 404


def test_json_bodies_and_unlink_from_the_cli(local_stack, http):
    owner = signed_in(local_stack)
    cli = Cli(http)
    started = start_link(http, as_json=True, name="Build server")
    assert cli.poll(started["device_code"], as_json=True) == (400, "authorization_pending")
    assert write(owner, "POST", f"/api/daemons/link/requests/{started['user_code']}/approve").status_code == 200
    status, token = cli.poll(started["device_code"], as_json=True)
    assert status == 200
    daemon = daemon_client(local_stack, token["access_token"])
    # Daemon routes need no cookie and no CSRF token.
    assert daemon.delete("/api/daemons/self").status_code == 204
    refused = daemon.get("/api/daemons/agents")
    assert refused.status_code == 401 and refused.json()["code"] == "DAEMON_KEY_REVOKED"
    assert daemon.delete("/api/daemons/self").status_code == 401
    assert owner.get("/api/daemons").json() == {"daemons": []}


def test_slow_down_grows_the_interval_of_that_device_code(local_stack, http):
    cli = Cli(http)
    fast, other = start_link(http), start_link(http)
    assert cli.poll(fast["device_code"]) == (400, "authorization_pending")
    assert cli.poll(fast["device_code"]) == (400, "slow_down")
    assert stored_interval(local_stack, fast["device_code"]) == 10
    assert cli.poll(fast["device_code"]) == (400, "slow_down")
    assert stored_interval(local_stack, fast["device_code"]) == 15
    assert stored_interval(local_stack, other["device_code"]) == 5
    age_link_request(local_stack, fast["device_code"], 15)  # the client waited the whole interval
    assert cli.poll(fast["device_code"]) == (400, "authorization_pending")
    assert stored_interval(local_stack, fast["device_code"]) == 15


def test_denied_expired_and_wrong_requests(local_stack, http):
    owner = signed_in(local_stack)
    cli = Cli(http)
    denied = start_link(http)
    assert write(owner, "POST", f"/api/daemons/link/requests/{denied['user_code']}/deny").status_code == 204
    assert cli.poll(denied["device_code"]) == (400, "access_denied")
    assert owner.get(f"/api/daemons/link/requests/{denied['user_code']}").json()["status"] == "denied"

    expired = start_link(http)
    assert cli.poll(expired["device_code"]) == (400, "authorization_pending")
    age_link_request(local_stack, expired["device_code"], 600)
    assert cli.poll(expired["device_code"]) == (400, "expired_token")
    gone = owner.get(f"/api/daemons/link/requests/{expired['user_code']}")
    assert gone.status_code == 404 and gone.json()["code"] == "LINK_REQUEST_NOT_FOUND"
    late = write(owner, "POST", f"/api/daemons/link/requests/{expired['user_code']}/approve")
    assert late.status_code == 404

    assert cli.poll("x" * 43) == (400, "invalid_grant")
    live = start_link(http)
    wrong_grant = http.post(TOKEN, data={"grant_type": "authorization_code", "device_code": live["device_code"],
                                         "client_id": CLIENT_ID})
    assert wrong_grant.status_code == 400 and wrong_grant.json()["error"] == "unsupported_grant_type"
    wrong_client = http.post(TOKEN, data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                          "device_code": live["device_code"], "client_id": "someone-else"})
    assert wrong_client.status_code == 400 and wrong_client.json()["error"] == "invalid_client"
    twice = http.post(TOKEN, content=f"grant_type=x&grant_type=y&client_id={CLIENT_ID}",
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert twice.status_code == 400 and twice.json()["error"] == "invalid_request"
    for bad in (b"{", b"[]", b'{"client_id": 1}'):
        response = http.post(TOKEN, content=bad, headers={"Content-Type": "application/json"})
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    for text in (wrong_grant.text, wrong_client.text):
        assert live["device_code"] not in text

    unknown_client = http.post(DEVICE, data={"client_id": "evil", "machine_id": "m", "name": "n",
                                             "public_key": public_key()})
    assert unknown_client.status_code == 401 and unknown_client.json()["error"] == "invalid_client"
    bad_key = http.post(DEVICE, data={"client_id": CLIENT_ID, "machine_id": "m", "name": "n", "public_key": "abc"})
    assert bad_key.status_code == 400 and bad_key.json()["error"] == "invalid_request"
    assert set(bad_key.json()) == {"error", "error_description"}


def test_other_tenants_get_404_and_sessions_and_csrf_are_enforced(local_stack, http):
    owner, stranger = signed_in(local_stack, "owner"), signed_in(local_stack, "stranger")
    cli = Cli(http)
    started = start_link(http)
    code = started["user_code"]
    assert write(owner, "POST", f"/api/daemons/link/requests/{code}/approve").status_code == 200
    status, token = cli.poll(started["device_code"])
    assert status == 200
    daemon_id = token["daemon_id"]

    for response in (
        stranger.get(f"/api/daemons/link/requests/{code}"),
        write(stranger, "POST", f"/api/daemons/link/requests/{code}/approve"),
        write(stranger, "POST", f"/api/daemons/link/requests/{code}/deny"),
        write(stranger, "DELETE", f"/api/daemons/{daemon_id}"),
    ):
        assert response.status_code == 404, response.text
    assert stranger.get("/api/daemons").json() == {"daemons": []}
    decided = write(owner, "POST", f"/api/daemons/link/requests/{code}/approve")
    assert decided.status_code == 409 and decided.json()["code"] == "LINK_REQUEST_DECIDED"

    anonymous = httpx.Client(base_url=local_stack.url)
    for method, path in (("GET", f"/api/daemons/link/requests/{code}"),
                         ("POST", f"/api/daemons/link/requests/{code}/approve"),
                         ("POST", f"/api/daemons/link/requests/{code}/deny"),
                         ("GET", "/api/daemons"), ("DELETE", f"/api/daemons/{daemon_id}")):
        response = anonymous.request(method, path)
        assert response.status_code == 401 and response.json()["code"] == "SESSION_EXPIRED", (method, path)

    pending = start_link(http)
    for path in (f"/api/daemons/link/requests/{pending['user_code']}/approve",
                 f"/api/daemons/link/requests/{pending['user_code']}/deny"):
        no_csrf = owner.post(path)
        assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "CSRF_TOKEN_INVALID"
    no_csrf = owner.delete(f"/api/daemons/{daemon_id}")
    assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "CSRF_TOKEN_INVALID"
    assert owner.get(f"/api/daemons/link/requests/{pending['user_code']}").json()["status"] == "pending"

    # Daemon routes: a session cookie is not a daemon key; malformed and forged keys are refused.
    key = token["access_token"]
    assert owner.get("/api/daemons/agents").status_code == 401
    for header in ("", "Bearer nope", f"Bearer {key[:-2]}", f"Bearer {key[:-1]}{'A' if key[-1] != 'A' else 'B'}",
                   f"Basic {key}"):
        response = httpx.get(f"{local_stack.url}/api/daemons/agents", headers={"Authorization": header})
        assert response.status_code == 401 and response.json()["code"] == "DAEMON_KEY_INVALID", header
    assert daemon_client(local_stack, key).get("/api/daemons/agents").status_code == 200


def test_failed_user_code_lookups_are_rate_limited(local_stack, http):
    guesser = signed_in(local_stack, "guesser")
    started = start_link(http)
    statuses = [guesser.get(f"/api/daemons/link/requests/ZZZZ-ZZ{a}{b}").status_code
                for a, b in zip("BCDFGHJKLM", "MLKJHGFDCB")]
    assert statuses == [404] * 10
    limited = guesser.get(f"/api/daemons/link/requests/{started['user_code']}")
    assert limited.status_code == 429 and limited.json()["code"] == "RATE_LIMITED"
    assert write(guesser, "POST", f"/api/daemons/link/requests/{started['user_code']}/approve").status_code == 429
    # Another user is not affected.
    assert signed_in(local_stack).get(f"/api/daemons/link/requests/{started['user_code']}").status_code == 200


def test_link_requests_are_limited_per_address(local_stack):
    """20 per address per 10-minute window, then RFC 8628-style 429 slow_down. The client connects from
    its own loopback address (all of 127/8 is local on Linux), so other tests keep their budget."""
    address = f"127.{secrets.randbelow(250) + 2}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"
    left_in_window = 600 - time.time() % 600
    if left_in_window < 10:  # windows are fixed: keep all 21 requests in one
        time.sleep(left_in_window)
    params = {"client_id": CLIENT_ID, "machine_id": "host-limited", "name": "Limited", "public_key": public_key()}
    with httpx.Client(base_url=local_stack.url, timeout=10,
                      transport=httpx.HTTPTransport(local_address=address)) as client:
        answers = [client.post(DEVICE, data=params) for _ in range(21)]
    SEEN_SECRETS.update(a.json()["device_code"] for a in answers if a.status_code == 200)
    assert [a.status_code for a in answers] == [200] * 20 + [429]
    refused = answers[-1]
    assert refused.json()["error"] == "slow_down" and "device_code" not in refused.text
    assert refused.headers["cache-control"] == "no-store" and 0 < int(refused.headers["retry-after"]) <= 600
    client, name = table(local_stack)
    window = int(time.time()) // 600
    counter = client.get_item(TableName=name, ConsistentRead=True, Key={
        "pk": {"S": f"RATE#link-device#{hashlib.sha256(address.encode()).hexdigest()}"},
        "sk": {"S": f"W#{window:010d}"}})["Item"]
    assert counter["count"] == {"N": "20"}  # keyed by the address's digest, never the address


@pytest.mark.parametrize("path", ["/api/daemons/agents", "/api/daemons/self"])
def test_daemon_routes_without_a_key_are_401(local_stack, path):
    method = "GET" if path.endswith("agents") else "DELETE"
    response = httpx.request(method, f"{local_stack.url}{path}")
    assert response.status_code == 401 and response.json()["code"] == "DAEMON_KEY_INVALID"
