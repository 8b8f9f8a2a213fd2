"""The workspaces API through the local stack (SPEC C6, C8; docs/design/workspaces.md): create answers 202
``provisioning`` with the workflow started, list with the plan's usage, get, rename, the events route,
the Free plan's 402, the lifecycle's 409, bad input's 400 codes, delete's 202, and another user's 404 on
every workspace route of the authorization table. (The create → running journey through the Fly sandbox
is the provisioning workflow's own e2e.)"""

from __future__ import annotations

import re

import httpx

from relay_cloud.http.access import ROUTE_ACCESS
from tests.e2e.test_daemon_linking import signed_in, write

WORKSPACES = "/api/workspaces"
# A body each route accepts, so a 404 is about the workspace and never about the input.
BODIES = {
    "PATCH /api/workspaces/{workspace_id}": {"name": "stolen"},
    "POST /api/workspaces/{workspace_id}/repos": {"repo_ids": ["repo_" + "0" * 24]},
    "POST /api/workspaces/{workspace_id}/domain": {"domain": "app.example.com"},
}


def create(client: httpx.Client, **body) -> httpx.Response:
    return write(client, "POST", WORKSPACES, json={"name": "dev box", **body})


def test_create_list_get_rename_events_and_delete(local_stack):
    alice = signed_in(local_stack, "ws-a")
    assert alice.get(WORKSPACES).json() == {"workspaces": [], "usage": {"used": 0, "limit": 1, "plan": "free"}}

    created = create(alice, providers=["anthropic"])
    assert created.status_code == 202, created.text
    workspace = created.json()
    assert workspace["status"] == "provisioning" and workspace["name"] == "dev box" and workspace["size"] == "small"
    assert re.fullmatch(r"ws_[0-9a-f]{20}", workspace["id"]) and workspace["providers"] == ["anthropic"]
    assert workspace["host"].endswith(".fly.dev") and workspace["error"] is None
    assert "execution_arn" not in workspace and "resources" not in workspace and "user_id" not in workspace
    path = f"{WORKSPACES}/{workspace['id']}"

    listed = alice.get(WORKSPACES).json()
    assert [w["id"] for w in listed["workspaces"]] == [workspace["id"]]
    assert listed["usage"] == {"used": 1, "limit": 1, "plan": "free"}
    assert alice.get(path).json()["id"] == workspace["id"]

    # Free allows one workspace: the second is refused with what the user can do about it.
    second = create(alice, name="second")
    assert second.status_code == 402, second.text
    limited = second.json()
    assert (limited["code"], limited["resource"], limited["limit"], limited["used"], limited["plan"]) == (
        "PLAN_LIMIT_EXCEEDED", "workspaces", 1, 1, "free")
    assert limited["upgrade_url"].endswith("/pricing")

    renamed = write(alice, "PATCH", path, json={"name": "renamed"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "renamed"
    assert alice.get(path).json()["name"] == "renamed"

    events = alice.get(f"{path}/events")
    assert events.status_code == 200, events.text
    body = events.json()
    assert set(body) == {"events", "cursor"} and isinstance(body["events"], list)
    for event in body["events"]:
        assert event["state"] in ("started", "succeeded", "failed", "compensating", "compensated")
    if body["cursor"]:
        assert alice.get(f"{path}/events", params={"after": body["cursor"]}).status_code == 200

    # Starting is only possible from stopped: whatever the workflow reached by now, this is a 409.
    started = write(alice, "POST", f"{path}/start")
    assert started.status_code == 409 and started.json()["code"] == "WORKSPACE_STATE"
    assert started.json()["status"] in ("provisioning", "running", "error")

    deleted = write(alice, "DELETE", path)
    assert deleted.status_code == 202, deleted.text
    assert deleted.json()["status"] == "deleting"
    assert write(alice, "PATCH", path, json={"name": "late"}).status_code in (404, 409)


def test_bad_input_is_400_with_a_machine_code(local_stack):
    alice = signed_in(local_stack, "ws-bad")
    cases = [
        ({}, "INVALID_WORKSPACE_NAME"),
        ({"name": "   "}, "INVALID_WORKSPACE_NAME"),
        ({"name": "x" * 65}, "INVALID_WORKSPACE_NAME"),
        ({"name": "ok", "size": "gigantic"}, "INVALID_SIZE"),
        ({"name": "ok", "compute": "mainframe"}, "INVALID_COMPUTE"),
        ({"name": "ok", "providers": ["no-such-provider"]}, "PROVIDER_NOT_FOUND"),
        ({"name": "ok", "repo_ids": "repo_x"}, "VALIDATION_FAILED"),
        ({"name": "ok", "repo_ids": ["../../etc"]}, "VALIDATION_FAILED"),
    ]
    for body, code in cases:
        answer = write(alice, "POST", WORKSPACES, json=body)
        assert answer.status_code == 400 and answer.json()["code"] == code, (body, answer.text)
    not_json = alice.post(WORKSPACES, content=b"{nope", headers={"Content-Type": "application/json",
                                                                 "X-CSRF-Token": alice.csrf_token})
    assert not_json.status_code == 400
    # Nothing was created by any of them.
    assert alice.get(WORKSPACES).json()["workspaces"] == []

    created = create(alice)
    assert created.status_code == 202, created.text
    path = f"{WORKSPACES}/{created.json()['id']}"
    assert write(alice, "PATCH", path, json={"name": ""}).json()["code"] == "INVALID_WORKSPACE_NAME"
    assert alice.get(f"{path}/events", params={"after": "WORKSPACE"}).json()["code"] == "INVALID_CURSOR"
    assert write(alice, "POST", f"{path}/repos", json={"repo_ids": []}).status_code == 400
    unknown_repo = write(alice, "POST", f"{path}/repos", json={"repo_ids": ["repo_" + "0" * 24]})
    assert unknown_repo.status_code == 404 and unknown_repo.json()["code"] == "REPO_NOT_FOUND"
    # Writes need the session's CSRF token.
    assert alice.post(WORKSPACES, json={"name": "no csrf"}).status_code == 403
    write(alice, "DELETE", path)


def test_another_user_gets_404_on_every_workspace_route(local_stack):
    alice, bob = signed_in(local_stack, "ws-own"), signed_in(local_stack, "ws-other")
    created = create(alice, name="alice's")
    assert created.status_code == 202, created.text
    workspace_id = created.json()["id"]
    before = alice.get(f"{WORKSPACES}/{workspace_id}").json()

    routes = [key for key in ROUTE_ACCESS if "{workspace_id}" in key]
    assert len(routes) == 11  # the contract's table: every one of them is checked below
    for key in routes:
        method, template = key.split(" ", 1)
        for target in (workspace_id, "ws_" + "0" * 20, "not-a-workspace"):
            path = template.replace("{workspace_id}", target)
            answer = write(bob, method, path, json=BODIES.get(key, {})) if method != "GET" else bob.get(path)
            assert answer.status_code == 404, (key, target, answer.status_code, answer.text)
            assert answer.json()["code"] == "WORKSPACE_NOT_FOUND", (key, answer.text)
            assert "alice" not in answer.text

    assert bob.get(WORKSPACES).json()["workspaces"] == []
    after = alice.get(f"{WORKSPACES}/{workspace_id}").json()
    assert after["name"] == before["name"] == "alice's" and after["status"] != "deleting"
    assert after["domain"] is None
    write(alice, "DELETE", f"{WORKSPACES}/{workspace_id}")


def wait_for(client: httpx.Client, path: str, statuses: set[str], timeout_s: float = 90.0) -> dict:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        workspace = client.get(path).json()
        if workspace["status"] in statuses or time.monotonic() > deadline:
            return workspace
        time.sleep(0.5)


def test_stop_start_restart_through_the_fly_sandbox_meter_the_running_time(local_stack):
    alice = signed_in(local_stack, "ws-life")
    created = create(alice)
    assert created.status_code == 202, created.text
    path = f"{WORKSPACES}/{created.json()['id']}"
    workspace = wait_for(alice, path, {"running", "error"})
    assert workspace["status"] == "running", workspace
    assert workspace["running_since"] is not None and workspace["compute_seconds"] == 0

    stopping = write(alice, "POST", f"{path}/stop")
    assert stopping.status_code == 202 and stopping.json()["status"] in ("stopping", "stopped"), stopping.text
    assert write(alice, "POST", f"{path}/restart").status_code == 409  # not from stopping/stopped
    stopped = wait_for(alice, path, {"stopped"})  # each read of a moving workspace asks the provider
    assert stopped["status"] == "stopped" and stopped["running_since"] is None
    assert stopped["compute_seconds"] >= 0

    starting = write(alice, "POST", f"{path}/start")
    assert starting.status_code == 202 and starting.json()["status"] in ("starting", "running"), starting.text
    running = wait_for(alice, path, {"running"})
    assert running["status"] == "running" and running["running_since"] is not None

    restarting = write(alice, "POST", f"{path}/restart")
    assert restarting.status_code == 202 and restarting.json()["status"] in ("restarting", "running")
    assert wait_for(alice, path, {"running"})["status"] == "running"
    write(alice, "DELETE", path)
