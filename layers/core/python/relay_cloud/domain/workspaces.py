"""Workspaces (SPEC C6, docs/design/workspaces.md): what a workspace is, its lifecycle, the input rules and
the shape the API answers with. No I/O.

A workspace is the user's hosted agent machine on a compute provider. Its life is a small state machine
whose every write is conditional on the status it expects, so the API, the provisioning workflow and the
reconcile schedule can never overwrite each other's decision:

    provisioning → running | error
    running → stopping → stopped → starting → running
    running → restarting → running
    any → deleting → (items gone)
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from dataclasses import dataclass, field

from relay_cloud.domain.domains import public_view as domain_view
from relay_cloud.domain.errors import Conflict, NotFound, ValidationFailed

RESOURCE = "workspaces"  # the plan catalog's limit name (domain/plans.py LIMITS)

PROVISIONING, RUNNING, ERROR = "provisioning", "running", "error"
STOPPING, STOPPED, STARTING, RESTARTING, DELETING = "stopping", "stopped", "starting", "restarting", "deleting"
STATUSES = (PROVISIONING, RUNNING, ERROR, STOPPING, STOPPED, STARTING, RESTARTING, DELETING)

# Statuses the reconcile schedule watches (a sparse index holds exactly these): the provider may move the
# machine on its own (crash, host migration, a stop that finished), so the stored status follows it.
# ``provisioning`` and ``deleting`` belong to their workflows, ``stopped`` and ``error`` are at rest.
RECONCILED = frozenset({RUNNING, STARTING, STOPPING, RESTARTING})
TRANSITIONAL = frozenset({STARTING, STOPPING, RESTARTING})
TRANSITION_GRACE_SECONDS = 180  # how long a start/stop/restart may take before the provider's state wins

# The API's lifecycle actions: the statuses each may start from, and the transitional status it sets.
# ``start`` of a running machine or ``stop`` of a stopped one is refused (409) rather than silently
# accepted, so the UI learns the real state.
ACTIONS = {
    "start": (frozenset({STOPPED}), STARTING),
    "stop": (frozenset({RUNNING, STARTING, RESTARTING}), STOPPING),
    "restart": (frozenset({RUNNING}), RESTARTING),
}

# Fly machine states (the provisioner's ``machine_state``) → the workspace status they mean. Anything
# else (created, replacing, suspending...) is still moving: the status stays as it is until next time.
MACHINE_STATUS = {
    "started": RUNNING,
    "stopped": STOPPED,
    "suspended": STOPPED,
}

DEFAULT_SIZE = "small"
DEFAULT_COMPUTE = "fly"
COMPUTES = ("fly", "railway")  # the providers a workspace may run on (the deployment may offer fewer)
MAX_NAME_LENGTH = 64
MAX_REPOS = 25  # per workspace: attaching is one transaction together with the workspace write
MAX_PROVIDERS = 16
EVENT_TTL_SECONDS = 30 * 24 * 3600
EVENT_STATES = ("started", "succeeded", "failed", "compensating", "compensated")
MAX_EVENT_MESSAGE = 500
DEFAULT_EVENTS_PAGE = 100
MAX_EVENTS_PAGE = 500

WORKSPACE_ID = re.compile(r"^ws_[0-9a-f]{20}$")
EVENT_CURSOR = re.compile(r"^EVENT#\d{13}#[0-9a-f]{4}$")
_REPO_ID = re.compile(r"^repo_[0-9a-f]{24}$")


def new_workspace_id() -> str:
    return f"ws_{secrets.token_hex(10)}"


class WorkspaceNotFound(NotFound):
    """Unknown, or another user's (the same answer: existence is not disclosed)."""

    code = "WORKSPACE_NOT_FOUND"

    def __init__(self):
        super().__init__("No such workspace")


class WorkspaceStateConflict(Conflict):
    """The workspace is not in a status that allows the change (someone else moved it first)."""

    code = "WORKSPACE_STATE"

    def __init__(self, status: str | None, message: str | None = None):
        super().__init__(message or f"Not possible while the workspace is {status}", status=status)
        self.current_status = status


@dataclass(frozen=True)
class Workspace:
    workspace_id: str
    user_id: str
    name: str
    status: str
    compute: str
    region: str
    size: str
    app_name: str
    created_at: int
    updated_at: int
    repo_ids: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    resources: dict = field(default_factory=dict)  # app, ips, volume_id, machine_id, daemon_id
    host: str | None = None
    error: dict | None = None  # {code, message, step}
    execution_arn: str | None = None
    running_since: int | None = None
    compute_seconds: int = 0
    domain: dict | None = None
    slot_held: bool = True  # the plan slot is still counted (released by fail or by the final delete)

    @property
    def machine_id(self) -> str | None:
        return self.resources.get("machine_id")

    @property
    def domain_target(self) -> str | None:
        """What a custom domain's CNAME points at: the provider's own host name of the workspace. Railway
        gives no addresses: its service domain (recorded by the ``ips`` step as an address of type
        ``domain``) is that name; Fly's is the ``<app>.fly.dev`` host."""
        for ip in self.resources.get("ips") or ():
            if isinstance(ip, dict) and ip.get("type") == "domain" and ip.get("address"):
                return ip["address"]
        return self.host

    def to_public(self) -> dict:
        """The API's Workspace: never the daemon key, the execution ARN or provider resource ids."""
        return {
            "id": self.workspace_id, "name": self.name, "status": self.status, "compute": self.compute,
            "region": self.region, "size": self.size, "repo_ids": list(self.repo_ids),
            "providers": list(self.providers), "host": self.host, "error": self.error,
            "created_at": self.created_at, "updated_at": self.updated_at, "running_since": self.running_since,
            "compute_seconds": self.compute_seconds,
            # The same view the domain routes answer: never the raw map (token bookkeeping, claim times).
            "domain": domain_view(self.domain, self.domain_target),
        }


@dataclass(frozen=True)
class WorkspaceEvent:
    cursor: str  # the event's sort key: the `after` of the next page
    step: str
    state: str
    message: str
    at: int  # ms

    def to_public(self) -> dict:
        return {"id": self.cursor, "step": self.step, "state": self.state, "message": self.message, "at": self.at}


# -- input rules -------------------------------------------------------------------------------------

def parse_name(raw) -> str:
    """1-64 printable characters, surrounding whitespace dropped."""
    if not isinstance(raw, str):
        raise ValidationFailed("name is required", code="INVALID_WORKSPACE_NAME", field="name")
    name = raw.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH or any(
            unicodedata.category(ch)[0] in ("C", "Z") and ch != " " for ch in name):
        raise ValidationFailed(f"name must be 1-{MAX_NAME_LENGTH} printable characters",
                               code="INVALID_WORKSPACE_NAME", field="name")
    return name


def parse_repo_ids(raw, *, required: bool = False) -> tuple[str, ...]:
    """Distinct repo ids in the order given (duplicates dropped), at most ``MAX_REPOS``."""
    if raw is None and not required:
        return ()
    if not isinstance(raw, list) or (required and not raw) or len(raw) > MAX_REPOS or not all(
            isinstance(r, str) and _REPO_ID.match(r) for r in raw):
        raise ValidationFailed(f"repo_ids must be a list of up to {MAX_REPOS} repository ids",
                               code="VALIDATION_FAILED", field="repo_ids")
    return tuple(dict.fromkeys(raw))


def parse_providers(raw, is_known) -> tuple[str, ...]:
    """Distinct provider ids of the catalog (``is_known(id)``): the workspace daemon may lease only these."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_PROVIDERS or not all(
            isinstance(p, str) and 0 < len(p) <= 64 for p in raw):
        raise ValidationFailed("providers must be a list of provider ids", code="VALIDATION_FAILED",
                               field="providers")
    unknown = sorted({p for p in raw if not is_known(p)})
    if unknown:
        raise ValidationFailed("Unknown provider", code="PROVIDER_NOT_FOUND", field="providers", unknown=unknown[:5])
    return tuple(dict.fromkeys(raw))


def parse_size(raw, sizes) -> str:
    if raw is None:
        raw = DEFAULT_SIZE if DEFAULT_SIZE in sizes else next(iter(sizes))
    if not isinstance(raw, str) or raw not in sizes:
        raise ValidationFailed(f"size must be one of: {', '.join(sizes)}", code="INVALID_SIZE", field="size")
    return raw


def parse_compute(raw, offered=COMPUTES) -> str:
    """``fly`` by default; one of the ``offered`` providers (those this deployment is configured for)."""
    if raw is None:
        return DEFAULT_COMPUTE
    if not isinstance(raw, str) or raw not in offered:
        raise ValidationFailed(f"compute must be one of: {', '.join(offered)}", code="INVALID_COMPUTE",
                               field="compute")
    return raw


def valid_workspace_id(raw) -> bool:
    return isinstance(raw, str) and bool(WORKSPACE_ID.match(raw))


# -- lifecycle ---------------------------------------------------------------------------------------

def action_transition(action: str, status: str) -> str:
    """The transitional status ``action`` sets from ``status``; ``WorkspaceStateConflict`` when not allowed."""
    allowed, target = ACTIONS[action]
    if status not in allowed:
        raise WorkspaceStateConflict(status, f"Cannot {action} a workspace that is {status}")
    return target


def reconciled_status(status: str, machine_state: str | None, *, since: int, now: int) -> str | None:
    """The status a watched workspace moves to given what the provider reports, or None to leave it.

    ``since`` is when the current status was set. A machine that is gone (``None``) while we think it
    exists is an error the user must see (delete and recreate). A transitional status waits for its own
    target (a ``stopping`` machine still reported ``started`` is on its way down; Fly reports ``stopped``
    for a moment during a restart) for ``TRANSITION_GRACE_SECONDS``; after that the provider's word wins
    (the start or stop did not happen).
    """
    if machine_state is None:
        return ERROR
    target = MACHINE_STATUS.get(machine_state)
    if target is None or target == status:
        return None
    settling = now - since < TRANSITION_GRACE_SECONDS
    if status == STOPPING and target == RUNNING and settling:
        return None
    if status in (STARTING, RESTARTING) and target == STOPPED and settling:
        return None
    return target


def period_seconds(running_since: int | None, now: int) -> int:
    """The length of a running period ending ``now`` (0 when none was open)."""
    if running_since is None:
        return 0
    return max(0, now - int(running_since))
