"""``relay-cloud dev`` as a user runs it: a subprocess that prints its URL, serves, and stops on Ctrl-C."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dev_serves_until_sigint_and_exits_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "AWS_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay_cloud.cli.main", "dev", "--port", str(port)],
        cwd=tmp_path,  # not the repository: the command must find functions/ and web/ itself
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    stderr: list[str] = []
    threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True).start()
    try:
        expected = f"Agent Relay Cloud is running at http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                assert proc.poll() is None, "".join(stderr)
                continue
            seen.append(line)
            if line.strip() == expected:
                break
        else:
            raise AssertionError(f"no URL printed: {seen} {''.join(stderr)}")

        response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert response.status_code == 200 and response.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/billing/plans", timeout=10).status_code == 200
        code = httpx.get(
            f"http://127.0.0.1:{port}/api/billing/plans?code=E2ESECRETCODE&state=E2ESECRETSTATE", timeout=10
        )
        assert code.status_code == 200

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.2)  # let the reader threads drain the pipes
    logs = "".join(stderr)
    assert '"path":"/health"' in logs  # one JSON access line per request on stderr
    assert "E2ESECRET" not in logs and "Traceback" not in logs
    # the port is free again
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
