"""The heartbeat through the local stack: a linked daemon reports its agents, the dashboard and the
daemon's agent listing show presence and the last report (which replaces the previous one), an unlinked
daemon's next heartbeat is 401, and another user's key never updates a daemon that is not its own."""

from __future__ import annotations

import httpx

from relay_cloud.domain.daemons import parse_daemon_key
from tests.e2e.test_daemon_linking import Cli, daemon_client, signed_in, start_link, table, write

HEARTBEAT = "/api/daemons/heartbeat"


def linked(stack, http, owner) -> tuple[str, str]:
    """Link a daemon the way relay-cloud link does; (daemon id, key)."""
    started = start_link(http)
    assert write(owner, "POST", f"/api/daemons/link/requests/{started['user_code']}/approve").status_code == 200
    status, token = Cli(http).poll(started["device_code"])
    assert status == 200
    return token["daemon_id"], token["access_token"]


def stored(stack, daemon_id: str) -> dict:
    client, name = table(stack)
    return client.get_item(TableName=name, Key={"pk": {"S": f"DAEMON#{daemon_id}"}, "sk": {"S": "DAEMON"}},
                           ConsistentRead=True)["Item"]


def test_heartbeats_drive_presence_and_the_inventory(local_stack, http):
    owner = signed_in(local_stack, "hb-owner")
    daemon_id, key = linked(local_stack, http, owner)
    daemon = daemon_client(local_stack, key)
    assert owner.get("/api/daemons").json()["daemons"][0]["presence"] == "offline"

    agents = [{"name": "claude-1", "provider": "anthropic", "status": "running", "pid": 4242},
              {"name": "codex.2", "provider": "openai", "status": "idle"}]
    reply = daemon.post(HEARTBEAT, json={"agents": agents, "metrics": {"cpu": 0.5, "agents.running": 1}})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"commands": [], "heartbeat_interval_s": 15}

    machine = owner.get("/api/daemons").json()["daemons"][0]
    assert machine["daemon_id"] == daemon_id and machine["presence"] == "online"
    assert machine["last_seen_at"] is not None and machine["agents"] == agents
    listing = daemon.get("/api/daemons/agents").json()
    assert listing == {"daemons": [{"daemon_id": daemon_id, "name": "Work laptop", "presence": "online",
                                    "agents": agents}]}

    # A second report with fewer agents replaces the inventory (no merge).
    again = daemon.post(HEARTBEAT, json={"agents": [{"name": "codex.2", "status": "stopped"}]})
    assert again.status_code == 200, again.text
    assert owner.get("/api/daemons").json()["daemons"][0]["agents"] == [{"name": "codex.2", "status": "stopped"}]
    assert stored(local_stack, daemon_id)["metrics"] == {"M": {}}

    bad = daemon.post(HEARTBEAT, json={"agents": [{"name": "bad name"}]})
    assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_FAILED"
    assert daemon.post(HEARTBEAT, content=b"{", headers={"Content-Type": "application/json"}).status_code == 400

    # Unlinked: the very next heartbeat is refused, without saying why.
    assert write(owner, "DELETE", f"/api/daemons/{daemon_id}").status_code == 204
    refused = daemon.post(HEARTBEAT, json={"agents": []})
    assert refused.status_code == 401 and refused.json()["code"] == "DAEMON_KEY_INVALID"
    assert stored(local_stack, daemon_id)["agents"] == {"L": [{"M": {"name": {"S": "codex.2"},
                                                                     "status": {"S": "stopped"}}}]}


def test_another_users_key_never_updates_this_daemon(local_stack, http):
    owner, stranger = signed_in(local_stack, "hb-a"), signed_in(local_stack, "hb-b")
    daemon_id, key = linked(local_stack, http, owner)
    other_id, other_key = linked(local_stack, http, stranger)
    before = stored(local_stack, daemon_id)

    foreign = f"rly_{daemon_id}_{parse_daemon_key(other_key).secret}"  # the stranger's secret on this daemon
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    for attempt in (foreign, forged):
        response = daemon_client(local_stack, attempt).post(HEARTBEAT, json={"agents": [{"name": "intruder"}]})
        assert response.status_code == 401 and response.json()["code"] == "DAEMON_KEY_INVALID"
    assert stored(local_stack, daemon_id) == before
    assert owner.get("/api/daemons").json()["daemons"][0]["agents"] == []

    # The stranger's own key updates only the stranger's daemon.
    assert daemon_client(local_stack, other_key).post(HEARTBEAT, json={"agents": [{"name": "mine"}]}).status_code == 200
    assert stored(local_stack, daemon_id) == before
    assert [d["daemon_id"] for d in stranger.get("/api/daemons").json()["daemons"]] == [other_id]
    assert owner.get("/api/daemons").json()["daemons"][0]["presence"] == "offline"


def test_heartbeat_key_format_and_session_cookies_are_refused(local_stack, http):
    owner = signed_in(local_stack, "hb-cookie")
    # A session is not a daemon key (and a cookie never substitutes for one).
    response = write(owner, "POST", HEARTBEAT, json={"agents": []})
    assert response.status_code == 401 and response.json()["code"] == "DAEMON_KEY_INVALID"
    for header in (None, "", "Bearer nope", "Basic cmx5Og==", "Bearer rly_dmn_" + "0" * 32 + "_short"):
        headers = {"Authorization": header} if header is not None else {}
        response = httpx.post(f"{local_stack.url}{HEARTBEAT}", json={"agents": []}, headers=headers)
        assert response.status_code == 401 and response.json()["code"] == "DAEMON_KEY_INVALID", header
    # Well-formed but unknown: the conditional write fails; nothing is created.
    unknown = "rly_dmn_" + "0" * 32 + "_" + "a" * 43
    response = httpx.post(f"{local_stack.url}{HEARTBEAT}", json={"agents": []},
                          headers={"Authorization": f"Bearer {unknown}"})
    assert response.status_code == 401 and response.json()["code"] == "DAEMON_KEY_INVALID"
    client, name = table(local_stack)
    assert "Item" not in client.get_item(TableName=name, Key={"pk": {"S": "DAEMON#dmn_" + "0" * 32},
                                                              "sk": {"S": "DAEMON"}})
