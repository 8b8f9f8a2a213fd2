"""A Claude subscription login on the user's machine, end to end: the dashboard starts a
``workspace_login``; ``relay-cloud daemon`` (with the stand-in ``claude`` first on its PATH) runs
``claude setup-token`` in a pseudo-terminal and relays the URL; the user's pasted code travels sealed to
the machine and into the CLI; the connection shows connected. The token the CLI printed is in the
machine's credentials file (0600) and nowhere in the cloud: not in any item of the table, not in any
response, not in any log."""

from __future__ import annotations

import json
import secrets
import time

from tests.e2e.conftest import SEEN_SECRETS
from tests.e2e.test_daemon_messaging import DaemonProcess, cli, link_machine, mode, signed_in, table


def write(client, method: str, path: str, **kwargs):
    return client.request(method, path, headers={"X-CSRF-Token": client.csrf_token}, **kwargs)


def every_item(stack) -> str:
    client, name = table(stack)
    items, start = [], {}
    while True:
        page = client.scan(TableName=name, **start)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return json.dumps(items, default=str)
        start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def poll_login(user, login_id: str, until, daemon: DaemonProcess, timeout: float = 40) -> dict:
    deadline = time.monotonic() + timeout
    view = {}
    while time.monotonic() < deadline:
        view = user.get(f"/api/providers/flows/{login_id}").json()
        if until(view):
            return view
        time.sleep(0.3)
    # The daemon's events (ids, counts and codes only) say where the login stopped.
    raise AssertionError(f"the login stayed {view}; the daemon logged:\n{daemon.output()[-6000:]}")


def test_claude_login_on_the_machine_keeps_the_token_there(local_stack, tmp_path):
    user = signed_in(local_stack, "wslogin")
    home = tmp_path / "laptop"
    machine = link_machine(local_stack, user, home, "laptop")
    code = "auth-" + secrets.token_urlsafe(24) + "#state"
    SEEN_SECRETS.add(code)
    daemon = DaemonProcess(home, "--agent", "claude-1:anthropic", STANDIN_EXPECT_CODE=code)
    try:
        started = write(user, "POST", "/api/providers/anthropic/connect", json={"method": "workspace_login"})
        assert started.status_code == 202, started.text
        login = started.json()
        assert login["method"] == "workspace_login" and login["daemon_id"] == machine["daemon_id"]
        assert login["status"] == "pending" and login["stage"] == "waiting_for_machine"

        prompted = poll_login(user, login["login_id"], lambda v: v.get("stage") == "awaiting_user", daemon)
        prompt = prompted["prompt"]
        assert prompt["url"].startswith("https://claude.ai/oauth/authorize?") and prompt["needs_code"] is True
        SEEN_SECRETS.add(prompt["url"].rsplit("state=", 1)[1])

        relayed = write(user, "POST", f"/api/providers/logins/{login['login_id']}/code", json={"code": code})
        assert relayed.status_code == 202, relayed.text
        assert code not in relayed.text

        done = poll_login(user, login["login_id"], lambda v: v["status"] != "pending", daemon)
        assert done["status"] == "connected", done
        anthropic = {p["id"]: p for p in user.get("/api/providers").json()["providers"]}["anthropic"]
        assert anthropic["connection"]["method"] == "workspace_login"

        saved = home / "credentials" / "anthropic.json"
        assert mode(saved) == 0o600
        token = json.loads(saved.read_text())["token"]
        SEEN_SECRETS.add(token)
        assert token.startswith("sk-ant-oat01-")

        # On the machine, sync hands it to agents as CLAUDE_CODE_OAUTH_TOKEN.
        synced = cli(home, "sync", "--print-env")
        assert synced.returncode == 0, synced.stderr
        assert f"export CLAUDE_CODE_OAUTH_TOKEN={token}" in synced.stdout
        assert token not in synced.stderr

        stored = every_item(local_stack)
        assert token not in stored and token[len("sk-ant-oat01-"):][:24] not in stored
        assert code not in stored
        assert token not in json.dumps(done) and token not in anthropic.__repr__()
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    assert token not in daemon.output() and code not in daemon.output() and "sk-ant" not in daemon.output()
    assert "Traceback" not in daemon.output()
    reported = [e for e in daemon.events() if e["event"] == "command_reported"]
    assert [e["status"] for e in reported] == ["running", "succeeded", "succeeded"]  # prompt, code, login


def test_a_login_whose_cli_is_missing_shows_cli_not_installed(local_stack, tmp_path):
    user = signed_in(local_stack, "nocli")
    home = tmp_path / "bare"
    link_machine(local_stack, user, home, "bare")
    daemon = DaemonProcess(home, PATH="/nonexistent")
    try:
        started = write(user, "POST", "/api/providers/openai/connect", json={"method": "workspace_login"})
        assert started.status_code == 202, started.text
        failed = poll_login(user, started.json()["login_id"], lambda v: v["status"] != "pending", daemon)
        assert failed["status"] == "error"
        assert failed["error"]["code"] == "CLI_NOT_INSTALLED" and "codex" in failed["error"]["message"]
        assert daemon.stop() == 0
    finally:
        daemon.kill()
