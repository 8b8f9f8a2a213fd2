"""A workspace's whole life through the local stack (SPEC C6; docs/design/workspaces.md), driven over HTTP
like the dashboard: create → the provisioning workflow (Step Functions in moto, the workflows function,
the Fly sandbox) → events for every step → running; stop → stopped with the volume kept; start →
running on the same volume; delete → the teardown workflow leaves nothing in the Fly sandbox, the
items and the plan slot are gone, and the workspace daemon's key stops working."""

from __future__ import annotations

import time

import httpx
import pytest

from functions.manifest import SCHEDULES
from tests.e2e.test_daemon_linking import signed_in, write

WORKSPACES = "/api/workspaces"
STEPS = ("app", "ips", "volume", "secrets", "machine", "wait", "health", "finish")
WAIT_S = 60.0


@pytest.fixture
def stack(local_stack):
    """Faults cleared before and after (other modules share the sandbox)."""
    httpx.delete(f"{local_stack.url}/_sandbox/fly/_faults")
    yield local_stack
    httpx.delete(f"{local_stack.url}/_sandbox/fly/_faults")


def inventory(stack, app: str) -> dict:
    everything = httpx.get(f"{stack.url}/_sandbox/fly/_inventory").json()
    return {kind: [entry for entry in everything[kind] if entry.get("app", entry.get("name")) == app]
            for kind in ("apps", "machines", "volumes", "ips", "certificates", "secrets")}


def reconcile(stack) -> None:
    """What the 5-minute schedule does, now (the local ticker's own runner)."""
    (spec,) = [s for s in SCHEDULES if s.name == "workspace-reconcile"]
    stack.ticker.run_schedule(spec.name, spec.handler)


def wait_for_status(client: httpx.Client, stack, path: str, wanted: str, *, reconciling: bool = False) -> dict:
    deadline = time.monotonic() + WAIT_S
    workspace = {}
    while time.monotonic() < deadline:
        workspace = client.get(path).json()
        if workspace.get("status") == wanted:
            return workspace
        if reconciling:
            reconcile(stack)
        time.sleep(0.3)
    raise AssertionError(f"{path} stayed {workspace.get('status')!r} (wanted {wanted!r}): {workspace.get('error')}")


def all_events(client: httpx.Client, path: str) -> list[dict]:
    events, cursor = [], None
    while True:
        page = client.get(f"{path}/events", params={"after": cursor} if cursor else None)
        assert page.status_code == 200, page.text
        body = page.json()
        if not body["events"]:
            return events
        events += body["events"]
        cursor = body["cursor"]


def test_create_watch_running_stop_start_and_delete_leaving_nothing(stack):
    alice = signed_in(stack, "journey")
    created = write(alice, "POST", WORKSPACES, json={"name": "journey box", "providers": ["anthropic"]})
    assert created.status_code == 202, created.text
    workspace = created.json()
    assert workspace["status"] == "provisioning"
    path = f"{WORKSPACES}/{workspace['id']}"
    app = workspace["host"].split(".")[0]

    # Watch it as the dashboard does: the events grow until the workspace is running.
    running = wait_for_status(alice, stack, path, "running")
    assert running["error"] is None and running["running_since"]
    events = all_events(alice, path)
    for step in STEPS:
        assert {"started", "succeeded"} <= {e["state"] for e in events if e["step"] == step}, step
    assert not [e for e in events if e["state"] in ("failed", "compensating")]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert "rly_" not in str(events)  # the daemon key is never an event's text
    assert alice.get(WORKSPACES).json()["usage"] == {"used": 1, "limit": 1, "plan": "free"}

    held = inventory(stack, app)
    (machine,) = held["machines"]
    (volume,) = held["volumes"]
    assert machine["state"] == "started" and volume["attached_machine_id"] == machine["id"]
    assert len(held["ips"]) == 2 and {s["name"] for s in held["secrets"]} == {
        "RELAY_CLOUD_URL", "RELAY_DAEMON_KEY", "RELAY_DAEMON_PRIVATE_KEY", "RELAY_WORKSPACE_ID"}

    # The workspace's own daemon is one of the user's machines.
    daemons = alice.get("/api/daemons").json()["daemons"]
    assert [d["machine_id"] for d in daemons] == [workspace["id"]]
    assert daemons[0]["name"] == "journey box" and daemons[0]["allowed_providers"] == ["anthropic"]

    # Stop: the machine stops, the volume stays.
    stopped = write(alice, "POST", f"{path}/stop")
    assert stopped.status_code == 202, stopped.text
    assert stopped.json()["status"] in ("stopping", "stopped")
    wait_for_status(alice, stack, path, "stopped", reconciling=True)
    held = inventory(stack, app)
    assert [m["state"] for m in held["machines"]] == ["stopped"]
    assert [v["id"] for v in held["volumes"]] == [volume["id"]]

    # Start: the same machine on the same volume.
    started = write(alice, "POST", f"{path}/start")
    assert started.status_code == 202, started.text
    wait_for_status(alice, stack, path, "running", reconciling=True)
    held = inventory(stack, app)
    assert [(m["id"], m["state"]) for m in held["machines"]] == [(machine["id"], "started")]
    assert [(v["id"], v["attached_machine_id"]) for v in held["volumes"]] == [(volume["id"], machine["id"])]

    # Delete: the teardown removes everything, then the items; the slot is free again.
    deleted = write(alice, "DELETE", path)
    assert deleted.status_code == 202, deleted.text
    deadline = time.monotonic() + WAIT_S
    while alice.get(path).status_code != 404:
        assert time.monotonic() < deadline, alice.get(path).json()
        time.sleep(0.3)
    assert all(entries == [] for entries in inventory(stack, app).values()), inventory(stack, app)
    assert alice.get(WORKSPACES).json() == {"workspaces": [], "usage": {"used": 0, "limit": 1, "plan": "free"}}
    assert alice.get("/api/daemons").json()["daemons"] == []  # its daemon was revoked
