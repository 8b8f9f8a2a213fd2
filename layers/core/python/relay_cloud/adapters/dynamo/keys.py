"""Key builders for the single table: every pk/sk/gsi key is spelled here and nowhere else.

Secrets that act as lookup keys (session ids, OAuth state) are stored only as SHA-256 digests, so a
read of the table never yields a usable session or state.
"""

from __future__ import annotations

import hashlib


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def user_pk(user_id: str) -> str:
    return f"USER#{user_id}"


USER_PROFILE_SK = "PROFILE"


def github_identity_pk(github_id: int | str) -> str:
    """Guard item: one user per GitHub account id (unique through a conditional put)."""
    return f"GHID#{github_id}"


IDENTITY_SK = "IDENTITY"


def session_pk(session_id: str) -> str:
    return f"SESSION#{digest(session_id)}"


SESSION_SK = "SESSION"


def oauth_login_pk(state: str) -> str:
    return f"OAUTH#{digest(state)}"


OAUTH_LOGIN_SK = "LOGIN"


def data_key_sk(version: int) -> str:
    return f"DATAKEY#{version:06d}"


DATA_KEY_PREFIX = "DATAKEY#"


def credential_sk(provider: str, credential_id: str) -> str:
    return f"CRED#{provider}#{credential_id}"


CREDENTIAL_PREFIX = "CRED#"


def audit_sk(at_ms: int, event_id: str) -> str:
    return f"AUDIT#{at_ms:013d}#{event_id}"


AUDIT_PREFIX = "AUDIT#"


def owner_gsi_pk(user_id: str) -> str:
    return f"OWNER#{user_id}"


CONNECTION_ID = "default"  # one connection per provider and user (the sign-in token is "sign-in")


def device_flow_sk(flow_id: str) -> str:
    return f"FLOW#{flow_id}"


REFRESH_BUCKET_SECONDS = 300


def refresh_bucket(due_at: int) -> int:
    return due_at - due_at % REFRESH_BUCKET_SECONDS


def refresh_gsi_pk(bucket: int) -> str:
    """Credentials due for refresh, by 5-minute bucket: the sweep queries buckets, never scans."""
    return f"REFRESH#{bucket:010d}"


def refresh_gsi_sk(due_at: int, user_id: str, provider: str) -> str:
    return f"{due_at:010d}#{user_id}#{provider}"


def sweep_cursor_pk(sweep: str) -> str:
    """The oldest due bucket a sweep may still have work in (one item per sweep)."""
    return f"SWEEP#{sweep}"


SWEEP_CURSOR_SK = "CURSOR"


# -- daemon linking (docs/design/daemon-linking.md) ---------------------------------------------------

def link_request_pk(device_hash: str) -> str:
    """A link request, under the SHA-256 of its device code (the code itself is never stored)."""
    return f"LINK#{device_hash}"


LINK_REQUEST_SK = "REQUEST"


def link_code_pk(user_code: str) -> str:
    """Guard item: one live link request per user code (canonical 8 letters, no hyphen)."""
    return f"LINKCODE#{user_code}"


LINK_CODE_SK = "CODE"


def daemon_pk(daemon_id: str) -> str:
    return f"DAEMON#{daemon_id}"


DAEMON_SK = "DAEMON"
DAEMON_GSI_PREFIX = "DAEMON#"


def daemon_gsi_sk(linked_at: int, daemon_id: str) -> str:
    return f"{DAEMON_GSI_PREFIX}{linked_at:010d}#{daemon_id}"


def link_guess_sk(window: int) -> str:
    """A user's counter of failed user-code lookups in one rate-limit window (in the user's partition)."""
    return f"LINKGUESS#{window:010d}"


# -- messages, commands, workspace logins, rate limits (docs/design/daemon-messaging.md) -------------

def inbox_pk(daemon_id: str) -> str:
    """A daemon's inbox partition: its pending messages and their counter."""
    return f"INBOX#{daemon_id}"


MESSAGE_PREFIX = "MSG#"
INBOX_COUNTER_SK = "COUNTER"


def message_sk(message_id: str) -> str:
    return f"{MESSAGE_PREFIX}{message_id}"


COMMAND_RESULT_PREFIX = "CMDRESULT#"


def command_result_sk(command_id: str) -> str:
    """A finished command's outcome, in the daemon's partition (what makes results idempotent)."""
    return f"{COMMAND_RESULT_PREFIX}{command_id}"


def workspace_login_sk(login_id: str) -> str:
    """A provider login running on the user's machine (SPEC §2.1 workspace_login), in the user's partition."""
    return f"LOGIN#{login_id}"


def rate_limit_pk(scope: str, subject: str) -> str:
    """A fixed-window counter of one scope (e.g. 'link-device') and subject (a user id or the digest of an
    address)."""
    return f"RATE#{scope}#{subject}"


def rate_limit_sk(window: int) -> str:
    return f"W#{window:010d}"
