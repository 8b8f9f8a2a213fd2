"""``relay-cloud dev``: start the local stack, print where it is, serve until Ctrl-C or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
import threading


def _configure_logging() -> None:
    # Our own JSON lines only (access log, ticker); the handlers' Powertools logger prints itself.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    local = logging.getLogger("relay_cloud.local")
    local.addHandler(handler)
    local.setLevel(logging.INFO)
    local.propagate = False


def run(*, port: int = 8787, sandbox: bool = True) -> int:
    _configure_logging()
    from relay_cloud.local.stack import LocalStack, LocalStackError

    stopping = threading.Event()

    def _request_stop(signum, _frame):
        stopping.set()

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = LocalStack(port=port, sandbox=sandbox)
    try:
        try:
            stack.start()
        except (LocalStackError, OSError) as exc:
            print(f"relay-cloud dev: {exc}", file=sys.stderr, flush=True)
            return 2
        print(f"Agent Relay Cloud is running at {stack.url}", flush=True)
        if sandbox:
            print(f"  sandbox GitHub: {stack.url}/_sandbox/github (sign in as anyone; nothing leaves this machine)",
                  flush=True)
        print(f"  operator commands: AWS_ENDPOINT_URL={stack.moto_url} RELAY_TABLE_NAME={stack.env['RELAY_TABLE_NAME']} "
              "relay-cloud admin set-plan LOGIN PLAN", flush=True)
        print("  press Ctrl-C to stop", flush=True)
        while not stopping.wait(0.5):
            pass
        print("Stopping…", flush=True)
        return 0
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
