"""Workspaces (SPEC C6, C8; the contract is docs/design/workspaces.md): create one (a plan slot, the
attached repos and the provisioning workflow), read, rename, start/stop/restart its machine, follow the
workflow's events, attach repos, delete it (the teardown workflow), and the reconcile schedule that keeps
every watched workspace's status (and its compute meter) in step with what the provider reports.

Only the owner sees a workspace: anything else (another user's, an unknown id, a malformed id) is the
same 404 ``WORKSPACE_NOT_FOUND``. Every status write is conditional on the status this service read, so a
concurrent user action, workflow step or reconcile run is never overwritten.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

from relay_cloud.domain.auth import Principal
from relay_cloud.domain.compute import ProviderRejected, app_name_for
from relay_cloud.domain.errors import DependencyUnavailable, ValidationFailed
from relay_cloud.domain.plans import LimitReached, limit_exceeded
from relay_cloud.domain.workspaces import (
    COMPUTES,
    DEFAULT_EVENTS_PAGE,
    DELETING,
    ERROR,
    EVENT_CURSOR,
    MAX_EVENTS_PAGE,
    MAX_REPOS,
    PROVISIONING,
    RESOURCE,
    RUNNING,
    STATUSES,
    STOPPED,
    TRANSITIONAL,
    Workspace,
    WorkspaceNotFound,
    WorkspaceStateConflict,
    action_transition,
    new_workspace_id,
    parse_compute,
    parse_name,
    parse_providers,
    parse_repo_ids,
    parse_size,
    period_seconds,
    reconciled_status,
    valid_workspace_id,
)
from relay_cloud.services.plans import plan_of

# Where the provider serves an app: <app>.<suffix>. Railway's host is the service domain it generates (the
# provisioning's ``ips`` step records it; ``finish`` sets it).
HOST_SUFFIX = {"fly": "fly.dev"}
# A teardown execution's name: ``<workspace_id>-teardown-<attempt>``. A Standard execution's name cannot be
# used again for 90 days, so each new attempt (after a failed or aborted one) takes the next number.
TEARDOWN_NAME = re.compile(r"^(?P<workspace_id>ws_[0-9a-f]{20})-teardown(?:-(?P<attempt>\d{1,6}))?$")
TEARDOWN_IN_PROGRESS = ("RUNNING", "PENDING_REDRIVE")
NOT_DELETING = tuple(s for s in STATUSES if s != DELETING)
# What the provisioner's start/stop/restart answer means at once (anything else: the reconcile decides).
SETTLED = {"start": ("started", RUNNING), "restart": ("started", RUNNING), "stop": ("stopped", STOPPED)}


@dataclass
class ReconcileReport:
    checked: int = 0
    moved: int = 0
    errors: int = 0
    moves: list = field(default_factory=list)  # (workspace_id, from, to)

    def as_dict(self) -> dict:
        return {"checked": self.checked, "moved": self.moved, "errors": self.errors}


@dataclass
class WorkspaceService:
    workspaces: object  # adapters.dynamo.workspaces.WorkspaceRepository
    users: object  # the user's plan (adapters.dynamo.accounts.UserRepository)
    usage: object  # adapters.dynamo.usage.UsageRepository
    # The provisioner of a compute provider by name ("fly" | "railway"): a workspace's machine lives with
    # the provider the workspace records, whatever the default is.
    compute_for: Callable[[str], object]
    provisioning: object  # workflow starter of the provisioning state machine (adapters.workflows)
    teardown: object  # workflow starter of the teardown state machine
    registry: object  # provider ids a workspace daemon may lease
    sizes: dict  # size name → MachineSize (settings.sizes())
    region: str
    public_url: str
    audit: object = None
    domains: object = None  # services.domains.DomainService: the reconcile moves issuing certificates on
    clock: Callable[[], float] = time.time
    new_id: Callable[[], str] = new_workspace_id
    computes: tuple = ("fly",)  # the compute providers this deployment offers (configured ones)

    def _now(self) -> int:
        return int(self.clock())

    def _audit(self, principal: Principal, action: str, workspace: Workspace, **detail) -> None:
        if self.audit is not None:
            self.audit.record(subject_user_id=principal.user_id, action=action, actor=principal.user_id,
                              detail={"workspace_id": workspace.workspace_id, **detail})

    # -- reads -----------------------------------------------------------------------------------

    def list(self, principal: Principal) -> dict:
        plan = plan_of(self.users, principal.user_id)
        workspaces = [self._refreshed(w) for w in self.workspaces.owned_by(principal.user_id)]
        return {
            "workspaces": [w.to_public() for w in workspaces],
            "usage": {"used": self.usage.used(principal.user_id, RESOURCE), "limit": plan.limit(RESOURCE),
                      "plan": plan.tier},
        }

    def get(self, principal: Principal, workspace_id: str) -> dict:
        return self._refreshed(owned_workspace(self.workspaces, principal, workspace_id)).to_public()

    def events(self, principal: Principal, workspace_id: str, params: dict) -> dict:
        owned_workspace(self.workspaces, principal, workspace_id)
        after = params.get("after") or None
        if after is not None and not EVENT_CURSOR.match(after):
            raise ValidationFailed("after must be a cursor this API returned", code="INVALID_CURSOR", field="after")
        limit = params.get("limit")
        if limit is None:
            limit = DEFAULT_EVENTS_PAGE
        elif not (isinstance(limit, str) and limit.isdigit() and 1 <= int(limit) <= MAX_EVENTS_PAGE):
            raise ValidationFailed(f"limit must be 1-{MAX_EVENTS_PAGE}", field="limit")
        found, cursor = self.workspaces.events(workspace_id, after, int(limit))
        return {"events": [event.to_public() for event in found], "cursor": cursor}

    # -- create ----------------------------------------------------------------------------------

    def create(self, principal: Principal, body: dict) -> dict:
        """Validate, take a plan slot and attach the repos (one transaction), start the provisioning
        workflow; the 202's workspace is ``provisioning``."""
        name = parse_name(body.get("name"))
        repo_ids = parse_repo_ids(body.get("repo_ids"))
        providers = parse_providers(body.get("providers"), lambda p: self.registry.get(p) is not None)
        size = parse_size(body.get("size"), self.sizes)
        compute = parse_compute(body.get("compute"), tuple(c for c in COMPUTES if c in self.computes))
        plan = plan_of(self.users, principal.user_id)
        now = self._now()
        workspace_id = self.new_id()
        app_name = app_name_for(workspace_id)
        workspace = Workspace(
            workspace_id=workspace_id, user_id=principal.user_id, name=name, status=PROVISIONING,
            compute=compute, region=self.region, size=size, app_name=app_name, created_at=now, updated_at=now,
            repo_ids=repo_ids, providers=providers,
            host=f"{app_name}.{HOST_SUFFIX[compute]}" if compute in HOST_SUFFIX else None,
        )
        try:
            self.workspaces.create(workspace, limit=plan.limit(RESOURCE))
        except LimitReached:
            raise limit_exceeded(plan, RESOURCE, self.usage.used(principal.user_id, RESOURCE),
                                 self.public_url) from None
        self._audit(principal, "workspace.create", workspace, size=size, compute=compute)
        try:
            # The input holds ids only: each step reads the workspace itself. The execution name is the
            # workspace id, so a repeated start cannot run two provisionings.
            arn = self.provisioning.start(workspace_id, {"workspace_id": workspace_id, "user_id": principal.user_id})
        except DependencyUnavailable as exc:
            # No workflow will ever finish it: fail it now, which gives the plan slot back.
            self.workspaces.fail(workspace_id, {"code": exc.code, "message": "The provisioning could not be "
                                                "started; delete the workspace and try again", "step": "start"},
                                 self._now())
            raise
        try:
            workspace = self.workspaces.update(workspace_id, expected_status=NOT_DELETING, now=now,
                                               execution_arn=arn)
        except WorkspaceStateConflict:  # deleted meanwhile: the 202 still describes what was created
            pass
        return workspace.to_public()

    # -- changes ---------------------------------------------------------------------------------

    def rename(self, principal: Principal, workspace_id: str, body: dict) -> dict:
        current = owned_workspace(self.workspaces, principal, workspace_id)
        if body.get("name") is None:
            return current.to_public()
        name = parse_name(body.get("name"))
        return self.workspaces.update(workspace_id, expected_status=NOT_DELETING, now=self._now(),
                                      name=name).to_public()

    def attach_repos(self, principal: Principal, workspace_id: str, body: dict) -> dict:
        repo_ids = parse_repo_ids(body.get("repo_ids"), required=True)
        owned_workspace(self.workspaces, principal, workspace_id)
        workspace = self.workspaces.attach(workspace_id, principal.user_id, repo_ids, max_repos=MAX_REPOS,
                                           now=self._now())
        return workspace.to_public()

    def delete(self, principal: Principal, workspace_id: str) -> dict:
        """Mark it ``deleting`` and start the teardown workflow (which releases the custom domain, removes
        the provider resources, revokes the workspace daemon, detaches the repos, releases the slot and
        deletes the items). A repeated DELETE while that teardown runs changes nothing; after it failed
        (or was aborted, or never started) it starts the next attempt, so the user retries by deleting
        again."""
        current = owned_workspace(self.workspaces, principal, workspace_id)
        if current.status != DELETING:
            current = self.workspaces.update(workspace_id, expected_status=current.status, now=self._now(),
                                             status=DELETING)
            self._audit(principal, "workspace.delete", current)
            if current.execution_arn:
                # A provisioning still running would keep creating what the teardown removes.
                self.provisioning.stop(current.execution_arn, cause="workspace deleted")
        return self._start_teardown(current, principal).to_public()

    def _start_teardown(self, current: Workspace, principal: Principal) -> Workspace:
        """Start teardown attempt n+1 unless attempt n (the execution recorded on the workspace) still
        runs. Two concurrent DELETEs compute the same name with the same input, which Step Functions
        answers with the one execution: never two teardowns at once."""
        attempt = 1
        previous = _teardown_attempt(current.execution_arn, current.workspace_id)
        if previous is not None:
            if self.teardown.status(current.execution_arn) in TEARDOWN_IN_PROGRESS:
                return current
            attempt = previous + 1
        arn = self.teardown.start(f"{current.workspace_id}-teardown-{attempt}",
                                  {"workspace_id": current.workspace_id, "user_id": principal.user_id})
        changes = {"execution_arn": arn}
        if previous is not None:
            changes["error"] = None  # the failed attempt's error: this attempt starts afresh
        try:
            return self.workspaces.update(current.workspace_id, expected_status=DELETING, now=self._now(),
                                          **changes)
        except (WorkspaceStateConflict, WorkspaceNotFound):
            return current  # the teardown finished already (items gone): the 202 describes what was asked

    def start(self, principal: Principal, workspace_id: str) -> dict:
        return self._lifecycle(principal, workspace_id, "start")

    def stop(self, principal: Principal, workspace_id: str) -> dict:
        return self._lifecycle(principal, workspace_id, "stop")

    def restart(self, principal: Principal, workspace_id: str) -> dict:
        return self._lifecycle(principal, workspace_id, "restart")

    def _lifecycle(self, principal: Principal, workspace_id: str, action: str) -> dict:
        """Set the transitional status (conditional: two concurrent actions cannot both pass), then ask
        the provider; a refused or unreachable provider puts the previous status back."""
        current = owned_workspace(self.workspaces, principal, workspace_id)
        target = action_transition(action, current.status)
        if not current.machine_id:
            raise WorkspaceStateConflict(current.status, "The workspace has no machine yet")
        now = self._now()
        moving = self.workspaces.update(workspace_id, expected_status=current.status, now=now, status=target)
        try:
            state = getattr(self.compute_for(current.compute), action)(current.app_name, current.machine_id)
        except (DependencyUnavailable, ProviderRejected):
            try:
                self.workspaces.update(workspace_id, expected_status=target, now=self._now(), status=current.status)
            except WorkspaceStateConflict:
                pass  # someone moved it meanwhile: theirs stands
            raise
        self._audit(principal, f"workspace.{action}", current)
        settled_state, settled_status = SETTLED[action]
        if state == settled_state:  # already there (e.g. start of a machine Fly had started): no waiting
            moved = self._apply(moving, settled_status, self._now())
            return (moved or moving).to_public()
        return moving.to_public()

    # -- provider state ----------------------------------------------------------------------------

    def _refreshed(self, workspace: Workspace) -> Workspace:
        """A workspace in a transitional status, brought up to date with one provider read so the UI does
        not wait for the next reconcile; the stored workspace when the provider cannot say."""
        if workspace.status not in TRANSITIONAL or not workspace.machine_id:
            return workspace
        try:
            moved = self._reconcile_one(workspace, self._now())
        except (DependencyUnavailable, ProviderRejected):
            return workspace
        return moved or workspace

    def _reconcile_one(self, workspace: Workspace, now: int) -> Workspace | None:
        """Move one watched workspace to what the provider reports; the new workspace, or None."""
        state = (self.compute_for(workspace.compute).machine_state(workspace.app_name, workspace.machine_id)
                 if workspace.machine_id else None)
        target = reconciled_status(workspace.status, state, since=workspace.updated_at, now=now)
        if target is None:
            return None
        return self._apply(workspace, target, now)

    def _apply(self, workspace: Workspace, target: str, now: int) -> Workspace | None:
        """Write ``target`` conditional on the status read; opening or closing the running period. None
        when another writer moved the workspace first."""
        changes: dict = {"status": target}
        add = 0
        if target == RUNNING and workspace.running_since is None:
            changes["running_since"] = now
        elif target in (STOPPED, ERROR) and workspace.running_since is not None:
            add = period_seconds(workspace.running_since, now)
            changes["running_since"] = None
        if target == ERROR:
            changes["error"] = {"code": "MACHINE_GONE", "message": "The workspace's machine no longer exists; "
                                "delete the workspace and create it again", "step": "reconcile"}
        try:
            return self.workspaces.update(workspace.workspace_id, expected_status=workspace.status, now=now,
                                          add_compute_seconds=add, **changes)
        except (WorkspaceStateConflict, WorkspaceNotFound):
            return None

    def reconcile(self, now: int | None = None) -> ReconcileReport:
        """The schedule (every 5 minutes): every running or moving workspace (the sparse index, no scan)
        follows its machine's state; stopped or gone machines close their running period into
        ``compute_seconds``. A provider error skips that workspace until the next run."""
        now = self._now() if now is None else int(now)
        report = ReconcileReport()
        for workspace in self.workspaces.reconcilable():
            report.checked += 1
            try:
                moved = self._reconcile_one(workspace, now)
            except (DependencyUnavailable, ProviderRejected):
                report.errors += 1
                continue
            if moved is not None:
                report.moved += 1
                report.moves.append((workspace.workspace_id, workspace.status, moved.status))
            current = moved or workspace
            if self.domains is not None and current.domain and current.domain.get("status") in ("verified", "issuing"):
                try:
                    self.domains.reconcile(current)
                except (DependencyUnavailable, ProviderRejected):
                    report.errors += 1
        return report


def owned_workspace(workspaces, principal: Principal, workspace_id) -> Workspace:
    """The caller's workspace (the workspace and domain routes); anything else (another user's, an unknown
    or malformed id) is the same 404: existence is never disclosed."""
    if not valid_workspace_id(workspace_id):
        raise WorkspaceNotFound()
    workspace = workspaces.get(workspace_id)
    if workspace is None or workspace.user_id != principal.user_id:
        raise WorkspaceNotFound()
    return workspace


def _teardown_attempt(execution_arn: str | None, workspace_id: str) -> int | None:
    """The attempt number of the teardown execution ``execution_arn`` names (its last ``:`` field is the
    execution name), or None when it is not a teardown of this workspace (the provisioning's, or none)."""
    if not execution_arn:
        return None
    match = TEARDOWN_NAME.match(execution_arn.rsplit(":", 1)[-1])
    if match is None or match["workspace_id"] != workspace_id:
        return None
    return int(match["attempt"] or 0)
