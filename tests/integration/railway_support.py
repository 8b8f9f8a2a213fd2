"""The Railway sandbox served alone over real HTTP on 127.0.0.1 (a fresh one per test: inventories start empty)."""

from __future__ import annotations

import contextlib
import secrets
import threading

from relay_cloud.local.server import LocalServer
from relay_cloud.sandbox.railway import RailwaySandbox

WORKSPACE = "ws-relay-test"
OTHER_WORKSPACE = "ws-someone-else"
FAST = {"initializing_ms": 40, "deploy_ms": 120, "stop_ms": 80, "certificate_ms": 150}


@contextlib.contextmanager
def serve_railway(**settings):
    """Yields (sandbox, graphql_url, token, other_token): ``token`` manages ``WORKSPACE``, ``other_token``
    another workspace."""
    sandbox = RailwaySandbox()
    sandbox.settings.update({**FAST, **settings})
    token, other = str(secrets.token_hex(16)), str(secrets.token_hex(16))
    sandbox.register_token(token, WORKSPACE)
    sandbox.register_token(other, OTHER_WORKSPACE)
    server = LocalServer(0, sandboxes={"railway": sandbox})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield sandbox, f"{server.url}/_sandbox/railway", token, other
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
