"""The device-flow workflow (SPEC C2, §2.4) executed for real: moto runs workflows/device_flow.asl.json,
whose Lambda tasks the local runtime serves with functions/workflows/handler.py, against the sandbox
GitHub and the sandbox OIDC provider. Approve, deny, expiry, slow_down (+5 s for every later poll),
transient and persistent upstream 5xx (Retry, then Catch → the flow records the error), cancel (the
execution is stopped), and no device code in the execution's input or history."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import httpx
import pytest

from relay_cloud.local.signin import sign_in

TOKEN_PATHS = {"github": "/login/oauth/access_token", "sandbox-idp": "/oauth/token"}
SANDBOXES = {"github": "github", "sandbox-idp": "idp"}
ENDED = {"connected", "denied", "expired", "cancelled", "error"}
WAIT_S = 30.0


@pytest.fixture
def stack(local_stack):
    """The local stack with fast device flows (1 s interval); sandbox settings and faults restored after."""
    saved = {}
    for name in SANDBOXES.values():
        base = f"{local_stack.url}/_sandbox/{name}"
        saved[name] = httpx.get(f"{base}/_config").json()
        assert httpx.post(f"{base}/_config", json={"device_interval": 1}).status_code == 200
    yield local_stack
    for name, settings in saved.items():
        base = f"{local_stack.url}/_sandbox/{name}"
        httpx.delete(f"{base}/_faults")
        httpx.post(f"{base}/_config", json={k: settings[k] for k in ("device_interval", "device_expires_in")})


@pytest.fixture
def sfn(stack):
    return boto3.client("stepfunctions", endpoint_url=stack.moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def signed_in(stack) -> httpx.Client:
    return sign_in(stack.url, f"flow-{uuid.uuid4().hex[:8]}")


def write(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    return client.request(method, path, headers={"X-CSRF-Token": client.csrf_token}, **kwargs)


def sandbox_url(stack, provider: str, path: str) -> str:
    return f"{stack.url}/_sandbox/{SANDBOXES[provider]}{path}"


def start_flow(stack, client, provider: str = "github") -> dict:
    started = write(client, "POST", f"/api/providers/{provider}/connect", json={"method": "device_flow"})
    assert started.status_code == 202, started.text
    flow = started.json()
    assert flow["status"] == "pending" and flow["interval"] == 1
    return flow


def decide(stack, provider: str, flow: dict, login: str, *, approve: bool = True) -> None:
    action = "approve" if approve else "deny"
    response = httpx.post(sandbox_url(stack, provider, f"/device/{action}"),
                          json={"user_code": flow["user_code"], "login": login})
    assert response.status_code == 200, response.text


def wait_for_flow(client, flow_id: str, until=ENDED, timeout_s: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout_s
    flow = {}
    while time.monotonic() < deadline:
        flow = client.get(f"/api/providers/flows/{flow_id}").json()
        if flow["status"] in until:
            return flow
        time.sleep(0.2)
    raise AssertionError(f"flow {flow_id} stayed {flow.get('status')!r} for {timeout_s} s")


def execution_arn(stack, flow_id: str) -> str:
    machine = stack.env["RELAY_DEVICE_FLOW_STATE_MACHINE_ARN"]
    return machine.replace(":stateMachine:", ":execution:") + f":{flow_id}"


def wait_for_execution(sfn, arn: str, timeout_s: float = WAIT_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.2)
    raise AssertionError(f"execution {arn} still running after {timeout_s} s")


def history(sfn, arn: str) -> list[dict]:
    return sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def poll_failures(events: list[dict]) -> list[str]:
    return [e["lambdaFunctionFailedEventDetails"]["error"] for e in events if e["type"] == "LambdaFunctionFailed"]


def providers(client) -> dict:
    return {p["id"]: p for p in client.get("/api/providers").json()["providers"]}


def login_of(client) -> str:
    return client.get("/api/auth/me").json()["github_login"]


def device_authorization(stack, provider: str, user_code: str):
    """The sandbox's record of the authorization (device code, interval, last poll)."""
    auth = stack.sandboxes[SANDBOXES[provider]].devices.find(user_code, time.time())
    assert auth is not None
    return auth


# -- outcomes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["github", "sandbox-idp"])
def test_approved_flow_connects_and_the_workflow_never_sees_the_device_code(stack, sfn, provider):
    client = signed_in(stack)
    login = login_of(client)
    flow = start_flow(stack, client, provider)
    device_code = device_authorization(stack, provider, flow["user_code"]).device_code
    decide(stack, provider, flow, login)

    assert wait_for_flow(client, flow["flow_id"])["status"] == "connected"
    entry = providers(client)[provider]
    assert entry["health"] == "valid"
    assert entry["connection"]["method"] == "device_flow" and entry["connection"]["account"] == login

    arn = execution_arn(stack, flow["flow_id"])
    described = wait_for_execution(sfn, arn)
    assert described["status"] == "SUCCEEDED"
    started = json.loads(described["input"])
    assert set(started) == {"flow_id", "user_id", "interval"} and started["flow_id"] == flow["flow_id"]
    events = history(sfn, arn)
    recorded = json.dumps(events, default=str) + described["input"] + described.get("output", "")
    assert device_code not in recorded and flow["user_code"] not in recorded
    assert [e for e in events if e["type"] == "LambdaFunctionSucceeded"], "the real handler ran"


@pytest.mark.parametrize("provider", ["github", "sandbox-idp"])
def test_denied_flow_ends_denied_and_stores_nothing(stack, sfn, provider):
    client = signed_in(stack)
    flow = start_flow(stack, client, provider)
    decide(stack, provider, flow, login_of(client), approve=False)

    assert wait_for_flow(client, flow["flow_id"])["status"] == "denied"
    assert providers(client)[provider]["health"] == "not_connected"
    # An outcome recorded on the flow, not a workflow failure.
    assert wait_for_execution(sfn, execution_arn(stack, flow["flow_id"]))["status"] == "SUCCEEDED"


def test_expired_flow_is_recorded_by_the_workflow(stack, sfn):
    httpx.post(sandbox_url(stack, "github", "/_config"), json={"device_expires_in": 2})
    client = signed_in(stack)
    flow = start_flow(stack, client)

    described = wait_for_execution(sfn, execution_arn(stack, flow["flow_id"]))
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["result"]["status"] == "expired"
    assert wait_for_flow(client, flow["flow_id"])["status"] == "expired"
    assert providers(client)["github"]["health"] == "not_connected"


# -- slow_down ------------------------------------------------------------------------------------------


def test_slow_down_raises_the_interval_for_every_later_poll(stack, sfn):
    client = signed_in(stack)  # before the fault: sign-in uses the same token endpoint
    fault = httpx.post(sandbox_url(stack, "github", "/_faults"),
                       json={"path_contains": TOKEN_PATHS["github"], "oauth_error": "slow_down", "count": 1})
    assert fault.status_code == 201
    flow = start_flow(stack, client)
    flow_id = flow["flow_id"]

    deadline = time.monotonic() + WAIT_S
    while client.get(f"/api/providers/flows/{flow_id}").json()["interval"] == 1:
        assert time.monotonic() < deadline, "the slow_down was never recorded"
        time.sleep(0.1)
    assert client.get(f"/api/providers/flows/{flow_id}").json()["interval"] == 6

    # Watch the sandbox's own record of the last token request: later polls come 6 s apart (polling any
    # sooner would be answered slow_down again by the sandbox and raise the interval to 11). Approve after
    # the first of them: the poll that redeems the approval keeps the interval too.
    auth = device_authorization(stack, "github", flow["user_code"])
    polls = [auth.last_poll]
    deadline = time.monotonic() + WAIT_S
    while len(polls) < 3:
        assert time.monotonic() < deadline, f"only {len(polls)} polls seen"
        if auth.last_poll != polls[-1]:
            polls.append(auth.last_poll)
            if len(polls) == 2:
                pending = client.get(f"/api/providers/flows/{flow_id}").json()
                assert pending["status"] == "pending" and pending["interval"] == 6
                decide(stack, "github", flow, login_of(client))
        time.sleep(0.05)
    gaps = [later - earlier for earlier, later in zip(polls, polls[1:])]
    assert all(gap >= 6 for gap in gaps), gaps

    ended = wait_for_flow(client, flow_id, timeout_s=10)
    assert ended["status"] == "connected" and ended["interval"] == 6
    waits = [json.loads(e["stateEnteredEventDetails"]["input"])["interval"]
             for e in history(sfn, execution_arn(stack, flow_id))
             if e["type"] == "WaitStateEntered"]
    assert waits[0] == 1 and set(waits[1:]) == {6}, waits


# -- upstream failures: Retry, then Catch -----------------------------------------------------------------


def test_transient_upstream_errors_are_retried_and_the_flow_still_connects(stack, sfn):
    client = signed_in(stack)
    login = login_of(client)
    fault = httpx.post(sandbox_url(stack, "github", "/_faults"),
                       json={"path_contains": TOKEN_PATHS["github"], "status": 503, "count": 2})
    assert fault.status_code == 201
    flow = start_flow(stack, client)
    decide(stack, "github", flow, login)

    assert wait_for_flow(client, flow["flow_id"])["status"] == "connected"
    assert providers(client)["github"]["health"] == "valid"
    arn = execution_arn(stack, flow["flow_id"])
    assert wait_for_execution(sfn, arn)["status"] == "SUCCEEDED"
    assert poll_failures(history(sfn, arn)) == ["UpstreamUnavailable", "UpstreamUnavailable"]


def test_persistent_upstream_errors_exhaust_the_retries_and_the_flow_records_the_error(stack, sfn):
    client = signed_in(stack)  # before the fault: sign-in uses the same token endpoint
    fault = httpx.post(sandbox_url(stack, "github", "/_faults"),
                       json={"path_contains": TOKEN_PATHS["github"], "status": 503, "count": 50})
    assert fault.status_code == 201
    flow = start_flow(stack, client)

    ended = wait_for_flow(client, flow["flow_id"], timeout_s=40)  # 1 s wait, then retries 1 + 2 + 4 + 8 s
    assert ended["status"] == "error" and ended["error"] == "UpstreamUnavailable"
    arn = execution_arn(stack, flow["flow_id"])
    described = wait_for_execution(sfn, arn)
    assert described["status"] == "FAILED" and described["error"] == "DeviceFlowFailed"
    events = history(sfn, arn)
    assert poll_failures(events) == ["UpstreamUnavailable"] * 5  # the first attempt and 4 retries
    recorded = json.dumps(events, default=str)
    assert "could not be reached" in recorded  # the typed error's public message, nothing more
    assert providers(client)["github"]["health"] == "not_connected"


# -- cancel -----------------------------------------------------------------------------------------------


def test_cancel_stops_the_execution_and_a_later_approval_stores_nothing(stack, sfn):
    client = signed_in(stack)
    login = login_of(client)
    flow = start_flow(stack, client)
    arn = execution_arn(stack, flow["flow_id"])
    assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"

    assert write(client, "DELETE", f"/api/providers/flows/{flow['flow_id']}").status_code == 204
    assert wait_for_execution(sfn, arn, timeout_s=10)["status"] == "ABORTED"
    assert client.get(f"/api/providers/flows/{flow['flow_id']}").json()["status"] == "cancelled"

    decide(stack, "github", flow, login)
    time.sleep(2.5)  # more than two intervals: a running workflow would have polled
    assert client.get(f"/api/providers/flows/{flow['flow_id']}").json()["status"] == "cancelled"
    assert providers(client)["github"]["health"] == "not_connected"
    assert device_authorization(stack, "github", flow["user_code"]).status == "approved"  # never redeemed
