"""``relay-cloud send DAEMON/AGENT (TEXT | @FILE) [--from AGENT] [--json]``: send a message to an agent
on one of the owner's machines (DAEMON is a daemon id or a machine name, resolved through
``GET /api/daemons/agents``).

The body is ``{"text": ...}`` (TEXT, or the UTF-8 content of FILE; ``@-`` reads stdin), or with ``--json``
the JSON value TEXT/FILE holds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

import httpx

from relay_cloud.cli import config as cfg
from relay_cloud.cli._http import client, describe_network_error, error_code
from relay_cloud.cli.daemon import EXIT_UNLINKED, UNLINKED_TEXT
from relay_cloud.domain.daemons import is_agent_name

AGENTS_PATH = "/api/daemons/agents"
MESSAGES_PATH = "/api/daemons/messages"
MAX_BODY_BYTES = 65536


class SendError(Exception):
    """Nothing was sent; the message is what the user reads."""


class NotLinked(SendError):
    pass


def parse_target(target: str) -> tuple[str, str]:
    """``DAEMON/AGENT``: the agent is after the last slash (agent names have none; machine names may)."""
    daemon, slash, agent = target.rpartition("/")
    if not slash or not daemon or not agent:
        raise SendError(f"{target!r}: the target is DAEMON/AGENT (a daemon id or machine name, then an agent)")
    if not is_agent_name(agent):
        raise SendError(f"agent name {agent!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return daemon, agent


def read_body(content: str, *, as_json: bool, stdin: TextIO | None = None) -> object:
    if content.startswith("@"):
        source = content[1:]
        try:
            text = (stdin or sys.stdin).read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SendError(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from None
    else:
        text = content
    if not as_json:
        return {"text": text}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SendError(f"--json: the message is not valid JSON ({exc})") from None


def resolve_daemon(http: httpx.Client, wanted: str) -> tuple[str, str]:
    """``(daemon_id, name)`` of the owner's machine whose id, else whose name, is ``wanted``."""
    machines = _json(_request(http, "GET", AGENTS_PATH), 200).get("daemons") or []
    by_id = [m for m in machines if m.get("daemon_id") == wanted]
    matches = by_id or [m for m in machines if m.get("name") == wanted]
    if not matches:
        raise SendError(f"no linked machine has the id or name {wanted!r} (relay-cloud status lists them)")
    if len(matches) > 1:
        ids = ", ".join(m["daemon_id"] for m in matches)
        raise SendError(f"several machines are named {wanted!r} ({ids}); use the daemon id")
    return matches[0]["daemon_id"], matches[0].get("name") or matches[0]["daemon_id"]


def _request(http: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    try:
        response = http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        raise SendError(f"cannot reach {http.base_url} ({describe_network_error(exc)}); nothing was sent") from None
    if response.status_code == 401:
        raise NotLinked(UNLINKED_TEXT)
    return response


def _json(response: httpx.Response, expected: int) -> dict:
    if response.status_code != expected:
        code, description = error_code(response)
        raise SendError(f"the cloud answered HTTP {response.status_code} "
                        f"({code or description or response.reason_phrase}); nothing was sent")
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SendError("the cloud sent an unexpected answer")
    return body


def run(*, target: str, content: str, from_agent: str | None = None, as_json: bool = False,
        home: Path | None = None, out: TextIO | None = None, err: TextIO | None = None,
        stdin: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        _, linked = cfg.load_linked(home)
        daemon, agent = parse_target(target)
        if from_agent is not None and not is_agent_name(from_agent):
            raise SendError(f"--from {from_agent!r} must be 1-64 characters of A-Z a-z 0-9 . _ -")
        body = read_body(content, as_json=as_json, stdin=stdin)
        size = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_BODY_BYTES:
            raise SendError(f"the message is {size} bytes; the limit is {MAX_BODY_BYTES}")
        with client(linked.cloud_url, api_key=linked.api_key) as http:
            daemon_id, name = resolve_daemon(http, daemon)
            request = {"to": {"daemon_id": daemon_id, "agent": agent}, "body": body}
            if from_agent is not None:
                request["from_agent"] = from_agent
            sent = _json(_request(http, "POST", MESSAGES_PATH, json=request), 201)
    except NotLinked as exc:
        print(f"relay-cloud send: {exc}", file=err, flush=True)
        return EXIT_UNLINKED
    except (SendError, cfg.ConfigError) as exc:
        print(f"relay-cloud send: {exc}", file=err, flush=True)
        return 1
    print(f"Sent {sent.get('message_id')} to {name}/{agent}", file=out, flush=True)
    return 0
