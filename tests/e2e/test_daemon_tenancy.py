"""One owner can never send to, read from, command, or lease for another owner's machine (SPEC C4, §2.3):
every such attempt through the local stack answers 404 (or simply finds nothing), and the other owner's
state is untouched."""

from __future__ import annotations

from tests.e2e.test_daemon_heartbeat import linked
from tests.e2e.test_daemon_linking import daemon_client, signed_in, write
from tests.e2e.test_providers import ANTHROPIC_KEY

MESSAGES = "/api/daemons/messages"


def test_messages_commands_leases_and_logins_stay_inside_one_owner(local_stack, http):
    alice, bob = signed_in(local_stack, "ten-a"), signed_in(local_stack, "ten-b")
    alice_id, alice_key = linked(local_stack, http, alice)
    bob_id, bob_key = linked(local_stack, http, bob)
    alice_daemon, bob_daemon = daemon_client(local_stack, alice_key), daemon_client(local_stack, bob_key)

    # Send: another owner's machine does not exist for alice.
    foreign = alice_daemon.post(MESSAGES, json={"to": {"daemon_id": bob_id, "agent": "x"}, "body": "hi"})
    assert foreign.status_code == 404 and foreign.json()["code"] == "DAEMON_NOT_FOUND"

    # Read: bob's own message is never in alice's inbox, and alice cannot ack it away.
    sent = bob_daemon.post(MESSAGES, json={"to": {"daemon_id": bob_id, "agent": "b"}, "body": {"n": 1}})
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["message_id"]
    assert alice_daemon.get(MESSAGES).json() == {"messages": []}
    acked = alice_daemon.post(f"{MESSAGES}/ack", json={"message_ids": [message_id]})
    assert acked.status_code == 200 and acked.json() == {"acked": [], "unknown": [message_id]}
    received = bob_daemon.get(MESSAGES).json()["messages"]
    assert [m["message_id"] for m in received] == [message_id] and received[0]["body"] == {"n": 1}

    # Logins (and so commands): alice cannot start one on bob's machine, nor see or feed bob's.
    on_bobs = write(alice, "POST", "/api/providers/anthropic/connect",
                    json={"method": "workspace_login", "daemon_id": bob_id})
    assert on_bobs.status_code == 404 and on_bobs.json()["code"] == "DAEMON_NOT_FOUND"
    login = write(bob, "POST", "/api/providers/anthropic/connect",
                  json={"method": "workspace_login", "daemon_id": bob_id})
    assert login.status_code == 202, login.text
    login_id = login.json()["login_id"]
    assert alice.get(f"/api/providers/flows/{login_id}").status_code == 404
    code = write(alice, "POST", f"/api/providers/logins/{login_id}/code", json={"code": "stolen"})
    assert code.status_code == 404 and code.json()["code"] == "LOGIN_NOT_FOUND"
    assert write(alice, "DELETE", f"/api/providers/flows/{login_id}").status_code == 404

    # The command is bob's machine's alone: alice's machine never sees it and cannot report on it.
    assert alice_daemon.post("/api/daemons/heartbeat", json={"agents": []}).json()["commands"] == []
    commands = bob_daemon.post("/api/daemons/heartbeat", json={"agents": []}).json()["commands"]
    assert [c["type"] for c in commands] == ["provider_login"]
    command_id = commands[0]["command_id"]
    hijack = alice_daemon.post(f"/api/daemons/commands/{command_id}/result",
                               json={"status": "succeeded", "output": {"account": "mallory"}})
    assert hijack.status_code == 404 and hijack.json()["code"] == "COMMAND_NOT_FOUND"
    assert bob.get(f"/api/providers/flows/{login_id}").json()["status"] == "pending"

    # Leases: bob's key, allowed on bob's machine, is never leased to alice's machine.
    assert write(bob, "POST", "/api/providers/anthropic/connect",
                 json={"method": "api_key", "api_key": ANTHROPIC_KEY}).status_code == 201
    leases = alice_daemon.get("/api/daemons/credentials")
    assert leases.status_code == 200 and leases.json()["leases"] == []
    assert ANTHROPIC_KEY not in leases.text

    # A dashboard session cannot use daemon routes, and a daemon key cannot use dashboard routes.
    assert alice.get(MESSAGES).status_code == 401
    assert alice_daemon.get("/api/daemons").status_code == 401
