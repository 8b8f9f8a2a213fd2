"""``relay-cloud link | status | unlink`` as a user runs them, against the local stack: the CLI is a
subprocess that prints a code, a signed-in user approves it in the dashboard's API, the CLI stores a
private config; status checks the key; unlink revokes it, and the revocation holds on the next request."""

from __future__ import annotations

import json
import os
import queue
import re
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from relay_cloud.local.signin import sign_in
from tests.e2e.conftest import SEEN_SECRETS

CODE = re.compile(r"\b([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})\b")


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "AWS_"))}
    env["RELAY_CLOUD_HOME"] = str(home)
    return env


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "relay_cloud.cli.main", *args], env=cli_env(home), capture_output=True, text=True,
        timeout=60,
    )


class LinkProcess:
    """``relay-cloud link`` running in the background; its stdout lines arrive on a queue."""

    def __init__(self, home: Path, url: str, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay_cloud.cli.main", "link", "--cloud", url, "--name", name, "--no-qr"],
            env=cli_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)

    def user_code(self, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"link exited early: {''.join(self.stdout)}{''.join(self.stderr)}"
                continue
            if match := CODE.search(line):
                return match.group(1)
        raise AssertionError(f"no user code printed: {''.join(self.stdout)}{''.join(self.stderr)}")

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            time.sleep(0.2)  # let the reader threads drain the pipes

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_link_status_unlink_journey(local_stack, tmp_path):
    home = tmp_path / "relay-cloud"
    user = sign_in(local_stack.url, f"linker-{uuid.uuid4().hex[:6]}")
    SEEN_SECRETS.update({user.csrf_token, *user.cookies.values()})

    link = LinkProcess(home, local_stack.url, "laptop")
    try:
        code = link.user_code()
        assert f"{local_stack.url}/dashboard/link" in link.output()

        pending = user.get(f"/api/daemons/link/requests/{code}")
        assert pending.status_code == 200, pending.text
        assert pending.json()["name"] == "laptop" and pending.json()["status"] == "pending"

        approved = user.post(f"/api/daemons/link/requests/{code}/approve",
                             headers={"X-CSRF-Token": user.csrf_token}, json={})
        assert approved.status_code == 200, approved.text
        daemon_id = approved.json()["daemon_id"]

        assert link.wait() == 0, link.output()
    finally:
        link.kill()

    output = link.output()
    assert f"Linked laptop as {daemon_id}" in output
    config_file = home / "config.json"
    saved = json.loads(config_file.read_text())
    SEEN_SECRETS.update({saved["api_key"], saved["private_key"]})
    assert mode(config_file) == 0o600 and mode(home) == 0o700
    assert saved["daemon_id"] == daemon_id and saved["name"] == "laptop" and saved["cloud_url"] == local_stack.url
    assert saved["api_key"].startswith(f"rly_{daemon_id}_")
    assert saved["api_key"] not in output and saved["private_key"] not in output
    assert "Traceback" not in output

    listed = user.get("/api/daemons").json()["daemons"]
    assert [d["daemon_id"] for d in listed] == [daemon_id]

    status = cli(home, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "accepted" in status.stdout and daemon_id in status.stdout and local_stack.url in status.stdout
    assert saved["api_key"] not in status.stdout + status.stderr

    kept = config_file.read_bytes()
    unlinked = cli(home, "unlink")
    assert unlinked.returncode == 0, unlinked.stdout + unlinked.stderr
    assert not config_file.exists()
    after = cli(home, "status")
    assert after.returncode == 1 and "Not linked" in after.stdout

    # the revocation holds on the very next request: the old key, put back, is refused
    config_file.write_bytes(kept)
    os.chmod(config_file, 0o600)
    revoked = cli(home, "status")
    assert revoked.returncode == 1 and "revoked or unknown" in revoked.stdout
    again = cli(home, "unlink")
    assert again.returncode == 0 and "already revoked" in again.stdout
    assert not config_file.exists()
    assert user.get("/api/daemons").json()["daemons"] == []


def test_a_denied_link_exits_1_and_saves_nothing(local_stack, tmp_path):
    home = tmp_path / "relay-cloud"
    user = sign_in(local_stack.url, f"denier-{uuid.uuid4().hex[:6]}")
    SEEN_SECRETS.update({user.csrf_token, *user.cookies.values()})
    link = LinkProcess(home, local_stack.url, "desk")
    try:
        code = link.user_code()
        denied = user.post(f"/api/daemons/link/requests/{code}/deny", headers={"X-CSRF-Token": user.csrf_token})
        assert denied.status_code == 204, denied.text
        assert link.wait() == 1
    finally:
        link.kill()
    assert "denied" in link.output() and "Traceback" not in link.output()
    assert not (home / "config.json").exists()


def test_ctrl_c_while_waiting_exits_130_and_saves_nothing(local_stack, tmp_path):
    import signal

    home = tmp_path / "relay-cloud"
    link = LinkProcess(home, local_stack.url, "tablet")
    try:
        link.user_code()
        link.proc.send_signal(signal.SIGINT)
        assert link.wait(timeout=15) == 130
    finally:
        link.kill()
    assert "cancelled" in link.output() and "Traceback" not in link.output()
    assert not (home / "config.json").exists()
