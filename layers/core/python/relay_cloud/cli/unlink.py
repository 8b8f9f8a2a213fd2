"""``relay-cloud unlink``: revoke this machine's daemon key (``DELETE /api/daemons/self``), then forget it.

The local config is deleted when the cloud revoked the key (204) or no longer accepts it (401: already
revoked, e.g. from the dashboard). On a network error or any other answer the config is kept, so the
user can retry: deleting it would leave a live key on the server that nothing on this machine knows.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import httpx

from relay_cloud.cli import config as cfg
from relay_cloud.cli._http import client, describe_network_error, error_code

SELF_PATH = "/api/daemons/self"


def run(*, home: Path | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def fail(text: str) -> int:
        print(f"relay-cloud unlink: {text}", file=err, flush=True)
        return 1

    try:
        directory, linked = cfg.load_linked(home)
    except cfg.NoConfig as exc:
        return fail(f"this machine is not linked (no config in {exc.directory})")
    except cfg.ConfigError as exc:
        return fail(f"{exc}; remove it by hand if this machine should no longer be linked")

    try:
        with client(linked.cloud_url, api_key=linked.api_key) as http:
            response = http.delete(SELF_PATH)
    except httpx.TransportError as exc:
        return fail(
            f"cannot reach {linked.cloud_url} ({describe_network_error(exc)}); the link is unchanged, try again"
        )
    except KeyboardInterrupt:
        print("\nrelay-cloud unlink: cancelled; the local config is kept", file=err, flush=True)
        return 130

    if response.status_code == 204:
        cfg.delete(directory)
        print(f"Unlinked {linked.name} ({linked.daemon_id}): the cloud revoked its key and the local config "
              "was deleted.", file=out, flush=True)
        return 0
    if response.status_code == 401:
        cfg.delete(directory)
        print(f"{linked.name} ({linked.daemon_id}) was already revoked or unknown to the cloud; deleted the "
              "local config.", file=out, flush=True)
        return 0
    code, description = error_code(response)
    detail = code or description or response.reason_phrase
    return fail(f"the cloud answered HTTP {response.status_code} ({detail}); the link is unchanged")
