"""``relay-cloud status``: what this machine is linked to, and whether the cloud still accepts its key.

Read-only: the only request is ``GET /api/daemons/agents``. Exit 0 when linked and the key is accepted,
1 otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import httpx

from relay_cloud.cli import config as cfg
from relay_cloud.cli._http import client, describe_network_error, error_code

AGENTS_PATH = "/api/daemons/agents"


def run(*, home: Path | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    try:
        directory, linked = cfg.load_linked(home)
    except cfg.NoConfig as exc:
        say(f"Not linked (no config in {exc.directory}) — run relay-cloud link")
        return 1
    except cfg.ConfigError as exc:
        print(f"relay-cloud status: {exc}", file=err, flush=True)
        return 1

    path = cfg.config_path(directory)
    say(f"Cloud:      {linked.cloud_url}")
    say(f"Daemon id:  {linked.daemon_id}")
    say(f"Name:       {linked.name}")
    say(f"Machine id: {linked.machine_id}")
    say(f"Config:     {path}")
    if not cfg.is_private(path):
        print(f"relay-cloud status: warning: {path} is readable by other users; run chmod 600 on it",
              file=err, flush=True)

    try:
        with client(linked.cloud_url, api_key=linked.api_key) as http:
            response = http.get(AGENTS_PATH)
    except httpx.TransportError as exc:
        say(f"Key:        unknown — cannot reach the cloud ({describe_network_error(exc)})")
        return 1
    except KeyboardInterrupt:
        return 130

    if response.status_code == 200:
        try:
            daemons = response.json()["daemons"]
            machines = len(daemons)
            agents = sum(len(d.get("agents") or []) for d in daemons)
        except (ValueError, KeyError, TypeError, AttributeError):
            say("Key:        accepted (the machine list could not be read)")
            return 0
        say(f"Key:        accepted ({machines} machine{'s' if machines != 1 else ''}, "
            f"{agents} agent{'s' if agents != 1 else ''})")
        return 0
    if response.status_code == 401:
        say("Key:        revoked or unknown — run relay-cloud link --force to link this machine again")
        return 1
    code, description = error_code(response)
    say(f"Key:        unknown — the cloud answered HTTP {response.status_code} "
        f"({code or description or response.reason_phrase})")
    return 1
