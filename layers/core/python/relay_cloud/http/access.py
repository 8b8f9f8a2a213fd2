"""Who may call each route: the route authorization table (SPEC §2.8, §4).

Authorization is data. The resolver's global middleware (relay_cloud.http.app) looks up every matched
route here and enforces it before the route runs; a route missing from this table is refused (fail
closed), and tests/security/test_route_table.py fails when any registered route is missing or when an
entry names no registered route.

PUBLIC: anyone. SESSION: a signed-in user (cookie), with X-CSRF-Token on every state-changing method.
DAEMON: a daemon key (Authorization: Bearer rly_...), verified with one GetItem before the route runs.
DAEMON_HEARTBEAT: a daemon key checked for format only (no DynamoDB request): the route gets the claimed
daemon id and the key's hash, and its single conditional write is the verification. WEBHOOK: a verified upstream signature.
"""

from __future__ import annotations

from enum import Enum


class Access(str, Enum):
    PUBLIC = "public"
    SESSION = "session"
    DAEMON = "daemon"
    DAEMON_HEARTBEAT = "daemon_heartbeat"
    WEBHOOK = "webhook"


ROUTE_ACCESS: dict[str, Access] = {
    "GET /health": Access.PUBLIC,
    "GET /api/openapi.json": Access.PUBLIC,
    "GET /api/auth/github/login": Access.PUBLIC,
    "GET /api/auth/github/callback": Access.PUBLIC,
    "GET /api/auth/session": Access.PUBLIC,
    "GET /api/auth/me": Access.SESSION,
    "POST /api/auth/logout": Access.SESSION,
    "DELETE /api/account": Access.SESSION,
    "GET /api/providers": Access.SESSION,
    "POST /api/providers/{provider}/connect": Access.SESSION,
    "GET /api/providers/flows/{flow_id}": Access.SESSION,
    "DELETE /api/providers/flows/{flow_id}": Access.SESSION,
    "POST /api/providers/logins/{login_id}/code": Access.SESSION,
    "DELETE /api/providers/{provider}": Access.SESSION,
    "POST /api/daemons/link/device": Access.PUBLIC,
    "POST /api/daemons/link/token": Access.PUBLIC,
    "GET /api/daemons/link/requests/{user_code}": Access.SESSION,
    "POST /api/daemons/link/requests/{user_code}/approve": Access.SESSION,
    "POST /api/daemons/link/requests/{user_code}/deny": Access.SESSION,
    "GET /api/daemons": Access.SESSION,
    "DELETE /api/daemons/{daemon_id}": Access.SESSION,
    "DELETE /api/daemons/self": Access.DAEMON,
    "GET /api/daemons/agents": Access.DAEMON,
    "POST /api/daemons/heartbeat": Access.DAEMON_HEARTBEAT,
    "POST /api/daemons/messages": Access.DAEMON,
    "GET /api/daemons/messages": Access.DAEMON,
    "POST /api/daemons/messages/ack": Access.DAEMON,
    "POST /api/daemons/commands/{command_id}/result": Access.DAEMON,
    "GET /api/daemons/credentials": Access.DAEMON,
    "GET /api/repos": Access.SESSION,
    "GET /api/repos/github": Access.SESSION,
    "POST /api/repos": Access.SESSION,
    "POST /api/repos/bulk": Access.SESSION,
    "DELETE /api/repos/{repo_id}": Access.SESSION,
    "GET /api/workspaces": Access.SESSION,
    "POST /api/workspaces": Access.SESSION,
    "GET /api/workspaces/{workspace_id}": Access.SESSION,
    "PATCH /api/workspaces/{workspace_id}": Access.SESSION,
    "DELETE /api/workspaces/{workspace_id}": Access.SESSION,
    "POST /api/workspaces/{workspace_id}/start": Access.SESSION,
    "POST /api/workspaces/{workspace_id}/stop": Access.SESSION,
    "POST /api/workspaces/{workspace_id}/restart": Access.SESSION,
    "GET /api/workspaces/{workspace_id}/events": Access.SESSION,
    "POST /api/workspaces/{workspace_id}/repos": Access.SESSION,
    "POST /api/workspaces/{workspace_id}/domain": Access.SESSION,
    "DELETE /api/workspaces/{workspace_id}/domain": Access.SESSION,
    "POST /api/workspaces/{workspace_id}/domain/verify": Access.SESSION,
    "GET /api/billing/plans": Access.PUBLIC,
    "GET /api/billing/plans/{tier}": Access.PUBLIC,
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def route_key(method: str, rule: str) -> str:
    """'GET /api/x/<id>' (Powertools rule) -> 'GET /api/x/{id}' (the table's and OpenAPI's form)."""
    return f"{method.upper()} {rule.replace('<', '{').replace('>', '}')}"
