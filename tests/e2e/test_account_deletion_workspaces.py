"""Account deletion and workspaces through the local stack: an account that still owns a workspace is
refused (409 ``WORKSPACES_EXIST``: its machine would keep running, and billing, at the provider); a
repeated DELETE of the workspace while its teardown runs starts no second teardown; once the teardown
has removed the workspace, the account deletion goes through and leaves nothing of the user behind."""

from __future__ import annotations

import time

import boto3
import httpx
import pytest

from tests.e2e.test_daemon_linking import signed_in, write
from tests.e2e.test_sign_in import table_items

WAIT_S = 60.0


@pytest.fixture
def stack(local_stack):
    httpx.delete(f"{local_stack.url}/_sandbox/fly/_faults")
    yield local_stack
    httpx.delete(f"{local_stack.url}/_sandbox/fly/_faults")


def wait_until(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def teardown_executions(stack, workspace_id: str) -> list[str]:
    sfn = boto3.client("stepfunctions", endpoint_url=stack.moto_url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    found = sfn.list_executions(stateMachineArn=stack.env["RELAY_TEARDOWN_STATE_MACHINE_ARN"])["executions"]
    return sorted(e["name"] for e in found if e["name"].startswith(workspace_id))


def test_an_account_with_a_workspace_is_kept_until_the_workspace_is_deleted(stack):
    client = signed_in(stack, "leaver")
    me = client.get("/api/auth/me").json()
    login, user_id = me["github_login"], me["id"]
    created = write(client, "POST", "/api/workspaces", json={"name": "last box"})
    assert created.status_code == 202, created.text
    path = f"/api/workspaces/{created.json()['id']}"
    wait_until(lambda: client.get(path).json()["status"] == "running", "the workspace never ran")
    app = created.json()["host"].split(".")[0]

    refused = write(client, "DELETE", "/api/account", json={"confirm": login})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "WORKSPACES_EXIST" and body["count"] == 1
    assert "Delete your workspaces first" in body["error"]
    assert client.get("/api/auth/me").status_code == 200  # nothing was deleted or shredded

    # Delete the workspace; a second DELETE while the teardown runs starts no other teardown.
    workspace_id = created.json()["id"]
    assert write(client, "DELETE", path).status_code == 202
    again = write(client, "DELETE", path)
    assert again.status_code in (202, 404), again.text  # 404: the teardown had already finished
    wait_until(lambda: client.get(path).status_code == 404, "the teardown never finished")
    assert teardown_executions(stack, workspace_id) == [f"{workspace_id}-teardown-1"]

    deleted = write(client, "DELETE", "/api/account", json={"confirm": login})
    assert deleted.status_code == 204, deleted.text
    everything = httpx.get(f"{stack.url}/_sandbox/fly/_inventory").json()
    assert not [a for a in everything["apps"] if a.get("name") == app]
    assert client.get("/api/auth/me").status_code == 401
    assert [item for item in table_items(stack) if user_id in repr(item)] == []


def railway_inventory(stack, project: str) -> dict:
    everything = httpx.get(f"{stack.url}/_sandbox/railway/_inventory").json()
    return {kind: [e for e in entries if e.get("project", e.get("name")) == project]
            for kind, entries in everything.items() if isinstance(entries, list)}


def test_a_railway_workspace_runs_stops_starts_and_goes_on_railway(stack):
    """The compute the user picked is the one every step, action and the reconcile use (none of it at Fly)."""
    client = signed_in(stack, "rail")
    created = write(client, "POST", "/api/workspaces", json={"name": "rail box", "compute": "railway"})
    assert created.status_code == 202, created.text
    workspace = created.json()
    assert workspace["compute"] == "railway" and workspace["host"] is None  # Railway names it while provisioning
    path = f"/api/workspaces/{workspace['id']}"
    wait_until(lambda: client.get(path).json()["status"] in ("running", "error"), "never settled")
    running = client.get(path).json()
    assert running["status"] == "running", running["error"]
    project = "ws-" + workspace["id"].replace("_", "-")
    held = railway_inventory(stack, project)
    assert [d["domain"] for d in held["domains"]] == [running["host"]]  # the service domain is the host
    assert running["host"].endswith(".up.railway.app")
    fly = httpx.get(f"{stack.url}/_sandbox/fly/_inventory").json()
    assert not [a for a in fly["apps"] if a.get("name") == project]

    assert write(client, "POST", f"{path}/stop").status_code == 202
    wait_until(lambda: client.get(path).json()["status"] == "stopped", "never stopped")
    assert write(client, "POST", f"{path}/start").status_code == 202
    wait_until(lambda: client.get(path).json()["status"] == "running", "never started again")

    assert write(client, "DELETE", path).status_code == 202
    wait_until(lambda: client.get(path).status_code == 404, "the teardown never finished")
    assert all(entries == [] for entries in railway_inventory(stack, project).values()), railway_inventory(
        stack, project)
