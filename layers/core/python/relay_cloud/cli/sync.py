"""``relay-cloud sync``: fetch this machine's credential leases, open them with its private key and write
``<data dir>/credentials.env`` (0600) for agents to source, or print the exports.

Leases are short-lived, access-only credentials sealed to this machine's X25519 key (SPEC §2.3); a token
from a provider login on this machine (``credentials/anthropic.json``) is added as
``CLAUDE_CODE_OAUTH_TOKEN``. Values never appear on stderr.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import TextIO

import httpx

from relay_cloud.cli import config as cfg
from relay_cloud.cli._http import client, describe_network_error, error_code
from relay_cloud.cli.daemon import EXIT_UNLINKED, UNLINKED_TEXT, private_key_bytes
from relay_cloud.cli.logins import load_token

CREDENTIALS_PATH = "/api/daemons/credentials"
ENV_FILE = "credentials.env"
ENV_BY_PROVIDER = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "google": "GEMINI_API_KEY",
    "github": "GH_TOKEN",
}
ON_MACHINE_ENV = {"anthropic": "CLAUDE_CODE_OAUTH_TOKEN"}  # tokens of logins on this machine


def env_name(provider: str) -> str:
    """Built-in providers use the variable their CLI reads; an admin-configured one ``RELAY_<ID>_TOKEN``."""
    return ENV_BY_PROVIDER.get(provider) or "RELAY_" + re.sub(r"[^A-Z0-9]", "_", provider.upper()) + "_TOKEN"


def open_lease(linked: cfg.Config, lease: dict) -> dict:
    """The lease's plaintext ``{provider, kind, value, expires_at}``; ValueError when it does not open or
    does not match the lease it came in."""
    from relay_cloud.domain.sealing import lease_aad, open_sealed

    provider, lease_id, expires_at = lease["provider"], lease["lease_id"], lease["expires_at"]
    aad = lease_aad(linked.daemon_id, provider, lease_id, expires_at)
    plain = json.loads(open_sealed(private_key_bytes(linked), lease["sealed"], aad))
    if not isinstance(plain, dict) or plain.get("provider") != provider or not isinstance(plain.get("value"), str):
        raise ValueError("the lease does not match its envelope")
    return plain


def exports(values: dict[str, str]) -> str:
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(values.items()))


def run(*, print_env: bool = False, home: Path | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def note(text: str) -> None:
        print(f"relay-cloud sync: {text}", file=err, flush=True)

    try:
        directory, linked = cfg.load_linked(home)
    except cfg.ConfigError as exc:  # NoConfig included: its text says to run relay-cloud link
        note(str(exc))
        return 1

    try:
        with client(linked.cloud_url, api_key=linked.api_key) as http:
            response = http.get(CREDENTIALS_PATH)
    except httpx.TransportError as exc:
        note(f"cannot reach {linked.cloud_url} ({describe_network_error(exc)}); nothing was changed")
        return 1
    if response.status_code == 401:
        note(UNLINKED_TEXT)
        return EXIT_UNLINKED
    if response.status_code != 200:
        code, description = error_code(response)
        note(f"the cloud answered HTTP {response.status_code} ({code or description or response.reason_phrase}); "
             "nothing was changed")
        return 1
    try:
        body = response.json()
        leases, skipped = list(body.get("leases") or []), list(body.get("skipped") or [])
    except (ValueError, TypeError, AttributeError):
        note("the cloud sent an unexpected answer; nothing was changed")
        return 1

    values: dict[str, str] = {}
    failed = 0
    for lease in leases:
        try:
            plain = open_lease(linked, lease)
        except (ValueError, TypeError, KeyError, AttributeError):
            failed += 1
            note(f"a lease for {lease.get('provider') if isinstance(lease, dict) else '?'} could not be opened "
                 "with this machine's key; skipped")
            continue
        values[env_name(plain["provider"])] = plain["value"]
    for provider, name in ON_MACHINE_ENV.items():
        token = load_token(directory, provider)
        if token:
            values.setdefault(name, token)
    for entry in skipped:
        if isinstance(entry, dict):
            note(f"{entry.get('provider')}: skipped ({entry.get('reason')})")

    text = exports(values)
    if print_env:
        out.write(text)
        out.flush()
    else:
        path = directory / ENV_FILE
        try:
            cfg.write_private(path, text.encode())
        except OSError as exc:
            note(f"cannot write {path}: {exc.strerror or exc}")
            return 1
        names = ", ".join(sorted(values)) or "none"
        print(f"Wrote {len(values)} credential{'s' if len(values) != 1 else ''} to {path} ({names}); "
              f"use: source {shlex.quote(str(path))}", file=out, flush=True)
    return 1 if failed else 0
