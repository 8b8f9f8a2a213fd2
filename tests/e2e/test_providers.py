"""Provider connections through the local stack: API keys validated by the sandbox providers, device
flows executed by the real state machine, tenant isolation, CSRF, and no secret in the logs."""

from __future__ import annotations

import time
import uuid

import boto3
import httpx

from relay_cloud.local.signin import sign_in
from tests.e2e.conftest import SEEN_SECRETS

ANTHROPIC_KEY = "sk-ant-api03-" + "k" * 48


def signed_in(stack, prefix="prov") -> httpx.Client:
    client = sign_in(stack.url, f"{prefix}-{uuid.uuid4().hex[:6]}")
    SEEN_SECRETS.update({client.csrf_token, *client.cookies.values()})
    return client


def write(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    return client.request(method, path, headers={"X-CSRF-Token": client.csrf_token}, **kwargs)


def providers(client) -> dict:
    return {p["id"]: p for p in client.get("/api/providers").json()["providers"]}


def wait_for_flow(client, flow_id: str, until: set[str], timeout_s: float = 40) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        flow = client.get(f"/api/providers/flows/{flow_id}").json()
        if flow["status"] in until:
            return flow
        time.sleep(0.3)
    raise AssertionError(f"flow stayed {flow['status']}")


def test_api_key_connect_validate_and_disconnect(local_stack):
    client = signed_in(local_stack)
    SEEN_SECRETS.add(ANTHROPIC_KEY)
    assert providers(client)["anthropic"]["health"] == "not_connected"

    rejected = write(client, "POST", "/api/providers/anthropic/connect", json={"method": "api_key", "api_key": "sk-ant-short"})
    assert rejected.status_code == 400 and rejected.json()["code"] == "INVALID_CREDENTIAL"
    assert providers(client)["anthropic"]["health"] == "not_connected"

    fault = httpx.post(f"{local_stack.url}/_sandbox/anthropic/_faults", json={"path_contains": "/v1/models", "status": 503, "count": 5})
    assert fault.status_code < 300
    unreachable = write(client, "POST", "/api/providers/anthropic/connect", json={"method": "api_key", "api_key": ANTHROPIC_KEY})
    assert unreachable.status_code == 503 and unreachable.json()["code"] == "UPSTREAM_UNAVAILABLE"
    assert providers(client)["anthropic"]["health"] == "not_connected"
    httpx.delete(f"{local_stack.url}/_sandbox/anthropic/_faults")

    created = write(client, "POST", "/api/providers/anthropic/connect", json={"method": "api_key", "api_key": ANTHROPIC_KEY})
    assert created.status_code == 201, created.text
    assert created.json()["provider"]["health"] == "valid" and ANTHROPIC_KEY not in created.text
    listing = client.get("/api/providers")
    assert listing.json() and ANTHROPIC_KEY not in listing.text
    assert providers(client)["anthropic"]["connection"]["method"] == "api_key"

    scan = boto3.client("dynamodb", endpoint_url=local_stack.moto_url, region_name="us-east-1").scan(
        TableName=local_stack.env["RELAY_TABLE_NAME"])
    assert ANTHROPIC_KEY not in repr(scan["Items"])

    assert write(client, "DELETE", "/api/providers/anthropic").status_code == 204
    assert providers(client)["anthropic"]["health"] == "not_connected"
    assert write(client, "DELETE", "/api/providers/anthropic").json()["code"] == "NOT_CONNECTED"


def test_bad_requests_are_400_not_500(local_stack):
    client = signed_in(local_stack)
    for body in (b"not json", b"[1]", b'{"method": "api_key"}', b'{"method": 7}'):
        response = write(client, "POST", "/api/providers/anthropic/connect", content=body)
        assert response.status_code == 400, (body, response.text)
    assert write(client, "POST", "/api/providers/nope/connect", json={"method": "api_key"}).status_code == 404
    response = write(client, "POST", "/api/providers/anthropic/connect", json={"method": "workspace_login"})
    assert response.status_code == 409 and response.json()["code"] == "NO_MACHINE_LINKED"


def test_provider_routes_need_a_session_and_csrf(local_stack):
    anonymous = httpx.Client(base_url=local_stack.url)
    assert anonymous.get("/api/providers").status_code == 401
    client = signed_in(local_stack)
    no_csrf = client.post("/api/providers/anthropic/connect", json={"method": "api_key", "api_key": ANTHROPIC_KEY})
    assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "CSRF_TOKEN_INVALID"


def test_device_flow_connects_github_and_other_tenants_see_404(local_stack):
    httpx.post(f"{local_stack.url}/_sandbox/github/_config", json={"device_interval": 1})
    owner, stranger = signed_in(local_stack, "owner"), signed_in(local_stack, "stranger")
    started = write(owner, "POST", "/api/providers/github/connect", json={"method": "device_flow"})
    assert started.status_code == 202, started.text
    flow = started.json()
    assert flow["status"] == "pending" and len(flow["user_code"]) == 9 and flow["interval"] == 1

    # Another tenant can neither read nor cancel it.
    assert stranger.get(f"/api/providers/flows/{flow['flow_id']}").status_code == 404
    assert write(stranger, "DELETE", f"/api/providers/flows/{flow['flow_id']}").status_code == 404

    me = owner.get("/api/auth/me").json()["github_login"]
    approved = httpx.post(f"{local_stack.url}/_sandbox/github/device/approve",
                          json={"user_code": flow["user_code"], "login": me})
    assert approved.status_code < 300
    assert wait_for_flow(owner, flow["flow_id"], {"connected", "error", "expired", "denied"})["status"] == "connected"
    github = providers(owner)["github"]
    assert github["health"] == "valid" and github["connection"]["account"] == me
    assert providers(stranger)["github"]["health"] == "not_connected"
    assert write(stranger, "DELETE", "/api/providers/github").status_code == 404
    assert providers(owner)["github"]["health"] == "valid"


def test_device_flow_cancel(local_stack):
    httpx.post(f"{local_stack.url}/_sandbox/github/_config", json={"device_interval": 1})
    client = signed_in(local_stack)
    flow = write(client, "POST", "/api/providers/github/connect", json={"method": "device_flow"}).json()
    assert write(client, "DELETE", f"/api/providers/flows/{flow['flow_id']}").status_code == 204
    assert client.get(f"/api/providers/flows/{flow['flow_id']}").json()["status"] == "cancelled"
    me = client.get("/api/auth/me").json()["github_login"]
    httpx.post(f"{local_stack.url}/_sandbox/github/device/approve", json={"user_code": flow["user_code"], "login": me})
    time.sleep(2.5)
    assert providers(client)["github"]["health"] == "not_connected"
