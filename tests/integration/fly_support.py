"""The Fly sandbox served alone over real HTTP on 127.0.0.1 (a fresh one per test: inventories start empty)."""

from __future__ import annotations

import contextlib
import secrets
import threading

from relay_cloud.local.server import LocalServer
from relay_cloud.sandbox.fly import FlySandbox

ORG = "relay-test"
OTHER_ORG = "someone-else"
FAST = {"launch_ms": 40, "boot_ms": 120, "stop_ms": 80, "certificate_ms": 150}


@contextlib.contextmanager
def serve_fly(**settings):
    """Yields (sandbox, base_url, token, other_token): ``token`` manages ``ORG``, ``other_token`` another org."""
    sandbox = FlySandbox()
    sandbox.settings.update({**FAST, **settings})
    token, other = "fo1_" + secrets.token_urlsafe(24), "fo1_" + secrets.token_urlsafe(24)
    sandbox.register_token(token, ORG)
    sandbox.register_token(other, OTHER_ORG)
    server = LocalServer(0, sandboxes={"fly": sandbox})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield sandbox, f"{server.url}/_sandbox/fly", token, other
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
