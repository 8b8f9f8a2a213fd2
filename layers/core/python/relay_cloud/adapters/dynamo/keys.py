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


def github_login_pk(login: str) -> str:
    """Guard item: the user who last signed in with this GitHub login (an operator looks users up by
    login). Logins are case-insensitive and can be renamed or re-registered, so the item is rewritten at
    every sign-in and readers check it against the user's current login."""
    return f"GHLOGIN#{login.lower()}"


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


# -- repositories and plan usage (docs/design/repositories.md) ---------------------------------------

REPO_PREFIX = "REPO#"


def repo_sk(repo_id: str) -> str:
    """A repository the user added, in the user's partition."""
    return f"{REPO_PREFIX}{repo_id}"


def repo_guard_sk(github_id: int) -> str:
    """Guard item: the same GitHub repository once per user (created with the repo in one transaction)."""
    return f"REPOGH#{int(github_id)}"


def usage_sk(resource: str) -> str:
    """A user's usage counter of one plan-limited resource (e.g. 'repositories', 'workspaces')."""
    return f"USAGE#{resource}"


# -- workspaces (docs/design/workspaces.md) ----------------------------------------------------------

def workspace_pk(workspace_id: str) -> str:
    """A workspace's partition: the workspace item and its provisioning events."""
    return f"WORKSPACE#{workspace_id}"


WORKSPACE_SK = "WORKSPACE"
WORKSPACE_GSI_PREFIX = "WORKSPACE#"
EVENT_PREFIX = "EVENT#"


def workspace_gsi_sk(created_at: int, workspace_id: str) -> str:
    """The owner index's sort key: a user's workspaces, oldest first."""
    return f"{WORKSPACE_GSI_PREFIX}{created_at:010d}#{workspace_id}"


def workspace_event_sk(at_ms: int, suffix: str) -> str:
    """An event of a workspace's provisioning/teardown, in time order (``suffix``: 4 random hex)."""
    return f"{EVENT_PREFIX}{at_ms:013d}#{suffix}"


# Sparse index of the workspaces the reconcile schedule watches (running or moving): present only while
# the status is one of those, so the schedule queries exactly them, never the whole table.
WORKSPACE_RECONCILE_GSI_PK = "WSRECONCILE"


def workspace_reconcile_gsi_sk(workspace_id: str) -> str:
    return f"WORKSPACE#{workspace_id}"


# -- custom domains (docs/design/workspaces.md "Domains") --------------------------------------------

def domain_pk(domain: str) -> str:
    """Guard item: one workspace per custom domain (the normalized name), claimed by a conditional put."""
    return f"DOMAIN#{domain}"


DOMAIN_SK = "DOMAIN"
