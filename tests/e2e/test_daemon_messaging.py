"""Two machines as a user runs them: two ``relay-cloud link``ed CLIs (separate RELAY_CLOUD_HOME) run
``relay-cloud daemon`` as real subprocesses against the local stack, with agents alice and bob; both show
online with their agents; ``relay-cloud send`` from A reaches bob's inbox on B as a private file; a daemon
that dies after writing a message but before acking it gets the message again once its lease is over
(the stored lease is moved back in time, as the linking tests age link requests) and de-duplicates it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import httpx

from relay_cloud.domain.daemons import parse_daemon_key
from relay_cloud.local.signin import sign_in
from tests.e2e.conftest import SEEN_SECRETS
from tests.e2e.test_cli_link import LinkProcess, cli_env

STANDINS = Path(__file__).resolve().parents[1] / "standins"


def signed_in(stack, prefix: str) -> httpx.Client:
    client = sign_in(stack.url, f"{prefix}-{uuid.uuid4().hex[:6]}")
    SEEN_SECRETS.update({client.csrf_token, *client.cookies.values()})
    return client


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = cli_env(home)
    env["PATH"] = f"{STANDINS}{os.pathsep}{env.get('PATH', '')}"  # the stand-in provider CLIs come first
    env.update(extra)
    return env


def cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relay_cloud.cli.main", *args], env=env_for(home, **extra),
                          capture_output=True, text=True, timeout=60)


def link_machine(stack, user: httpx.Client, home: Path, name: str, allowed_providers=()) -> dict:
    """``relay-cloud link`` approved in the dashboard's API; the saved config (its secrets registered)."""
    link = LinkProcess(home, stack.url, name)
    try:
        code = link.user_code()
        approved = user.post(f"/api/daemons/link/requests/{code}/approve", headers={"X-CSRF-Token": user.csrf_token},
                             json={"allowed_providers": list(allowed_providers)})
        assert approved.status_code == 200, approved.text
        assert link.wait() == 0, link.output()
    finally:
        link.kill()
    saved = json.loads((home / "config.json").read_text())
    SEEN_SECRETS.update({saved["api_key"], saved["private_key"], parse_daemon_key(saved["api_key"]).secret})
    return saved


class DaemonProcess:
    """``relay-cloud daemon`` in the background; its stderr (one JSON event a line) is collected."""

    def __init__(self, home: Path, *args: str, **extra: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "relay_cloud.cli.main", "daemon", *args],
                                     env=env_for(home, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (self.proc.stdout, self.proc.stderr)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            for reader in self._readers:
                reader.join(2)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_for(predicate, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def table(stack):
    return boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name="us-east-1"), stack.env["RELAY_TABLE_NAME"]


def end_lease(stack, daemon_id: str, message_id: str) -> None:
    """Move the message's lease into the past: what 60 s without an ack does."""
    client, name = table(stack)
    client.update_item(TableName=name, Key={"pk": {"S": f"INBOX#{daemon_id}"}, "sk": {"S": f"MSG#{message_id}"}},
                       UpdateExpression="SET lease_until = :past",
                       ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
                       ConditionExpression="attribute_exists(pk)")


def test_two_daemons_online_and_a_message_from_alice_reaches_bobs_inbox(local_stack, tmp_path):
    user = signed_in(local_stack, "msgs")
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    machine_a = link_machine(local_stack, user, home_a, "desk-a")
    machine_b = link_machine(local_stack, user, home_b, "desk-b")

    daemon_a = DaemonProcess(home_a, "--agent", "alice:anthropic")
    daemon_b = DaemonProcess(home_b, "--agent", "bob")
    try:
        def both_online():
            machines = {d["daemon_id"]: d for d in user.get("/api/daemons").json()["daemons"]}
            a, b = machines.get(machine_a["daemon_id"]), machines.get(machine_b["daemon_id"])
            return a and b and a["presence"] == b["presence"] == "online" and a["agents"] and b["agents"] and (a, b)

        a, b = wait_for(both_online, what="both machines online")
        assert a["agents"] == [{"name": "alice", "provider": "anthropic", "status": "idle"}]
        assert b["agents"] == [{"name": "bob", "status": "idle"}]

        sent = cli(home_a, "send", "desk-b/bob", "hello bob, from alice", "--from", "alice")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        message_id = sent.stdout.split()[1]
        assert message_id.startswith("msg_") and "desk-b/bob" in sent.stdout

        inbox_file = home_b / "inbox" / "bob" / f"{message_id}.json"
        wait_for(inbox_file.exists, timeout=30, what="the message in bob's inbox")
        saved = json.loads(inbox_file.read_text())
        assert saved["body"] == {"text": "hello bob, from alice"}
        assert saved["from"] == {"daemon_id": machine_a["daemon_id"], "agent": "alice"}
        assert saved["to"] == {"daemon_id": machine_b["daemon_id"], "agent": "bob"}
        assert mode(inbox_file) == 0o600 and mode(home_b / "inbox" / "bob") == 0o700

        # by daemon id too, with a JSON body from a file
        note = tmp_path / "note.json"
        note.write_text('{"task": "review", "pr": 7}')
        by_id = cli(home_a, "send", f"{machine_b['daemon_id']}/bob", f"@{note}", "--json")
        assert by_id.returncode == 0, by_id.stderr
        second = home_b / "inbox" / "bob" / f"{by_id.stdout.split()[1]}.json"
        wait_for(second.exists, timeout=30, what="the second message")
        assert json.loads(second.read_text())["body"] == {"task": "review", "pr": 7}

        unknown = cli(home_a, "send", "nowhere/bob", "hi")
        assert unknown.returncode == 1 and "no linked machine" in unknown.stderr

        # both exit cleanly on SIGTERM
        assert daemon_a.stop() == 0 and daemon_b.stop() == 0
    finally:
        daemon_a.kill()
        daemon_b.kill()
    for daemon in (daemon_a, daemon_b):
        assert "Traceback" not in daemon.output()
        assert "hello bob" not in daemon.output() and "review" not in daemon.output()
        assert daemon.events()[-1]["event"] == "stopped"
    received = [e for e in daemon_b.events() if e["event"] == "message_received"]
    assert [e["message_id"] for e in received] == [message_id, by_id.stdout.split()[1]]
    assert all(e["duplicate"] is False for e in received)


def test_a_daemon_killed_before_its_ack_gets_the_message_again_and_dedups_it(local_stack, tmp_path):
    user = signed_in(local_stack, "redeliver")
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    link_machine(local_stack, user, home_a, "sender")
    machine_b = link_machine(local_stack, user, home_b, "receiver")

    sent = cli(home_a, "send", "receiver/bob", "at least once")
    assert sent.returncode == 0, sent.stderr
    message_id = sent.stdout.split()[1]

    # One cycle that dies right before its ack, as a crash or kill -9 would leave it.
    crash = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "from relay_cloud.cli import daemon\n"
         "daemon.Daemon.ack = lambda self, ids: os._exit(9)\n"
         "from relay_cloud.cli.main import main\n"
         "sys.exit(main(['daemon', '--agent', 'bob', '--once']))\n"],
        env=env_for(home_b), capture_output=True, text=True, timeout=60)
    assert crash.returncode == 9, crash.stderr
    inbox_file = home_b / "inbox" / "bob" / f"{message_id}.json"
    written = inbox_file.read_bytes()

    # Leased, not acked: a cycle now finds nothing; after the lease, the same message comes back.
    quiet = cli(home_b, "daemon", "--agent", "bob", "--once")
    assert quiet.returncode == 0 and message_id not in quiet.stderr
    end_lease(local_stack, machine_b["daemon_id"], message_id)
    again = cli(home_b, "daemon", "--agent", "bob", "--once")
    assert again.returncode == 0, again.stderr
    received = [json.loads(line) for line in again.stderr.splitlines()
                if line.startswith("{") and '"message_received"' in line]
    assert [(e["message_id"], e["delivery_count"], e["duplicate"]) for e in received] == [(message_id, 2, True)]
    assert inbox_file.read_bytes() == written  # not rewritten

    # and it is acked now: nothing is left for this machine
    key = json.loads((home_b / "config.json").read_text())["api_key"]
    left = httpx.get(f"{local_stack.url}/api/daemons/messages", headers={"Authorization": f"Bearer {key}"})
    assert left.status_code == 200 and left.json()["messages"] == []


def test_an_unlinked_machines_daemon_exits_3(local_stack, tmp_path):
    user = signed_in(local_stack, "unlinked")
    home = tmp_path / "m"
    machine = link_machine(local_stack, user, home, "gone")
    assert user.delete(f"/api/daemons/{machine['daemon_id']}",
                       headers={"X-CSRF-Token": user.csrf_token}).status_code == 204
    result = cli(home, "daemon", "--once")
    assert result.returncode == 3
    assert "this machine was unlinked; run relay-cloud link" in result.stderr
    sent = cli(home, "send", "gone/bob", "hi")
    assert sent.returncode == 3
