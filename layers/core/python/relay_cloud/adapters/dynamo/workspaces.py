"""DynamoDB repository of workspaces (docs/design/workspaces.md): the workspace item, its step events, the
plan slot and the repos it has attached.

Layout: the workspace and its events share the partition ``WORKSPACE#<id>`` (one query reads the
progress, one sweep deletes everything). The owner index (gsi1, ``OWNER#<user_id>``) lists a user's
workspaces; the sparse reconcile index (gsi2, ``WSRECONCILE``) holds only the workspaces whose status the
reconcile schedule watches (domain ``RECONCILED``), maintained by every status write here.

Invariants kept by transactions:
- the ``workspaces`` usage counter moves only with the workspace: +1 in the create transaction, -1 in
  the transaction that marks it failed (``fail``) or deletes it (``delete_all``), never twice: the
  workspace's ``slot_held`` flag says whether its slot is still counted and is part of the condition;
- a repo's ``attached_workspace_id`` is set in the same transaction that lists it on the workspace,
  conditional on the repo being the user's (it lives in the user's partition) and unattached, and is
  removed in the transaction that deletes the workspace;
- every status write is conditional on the status(es) the writer expects, so the API, the workflows and
  the reconcile schedule never overwrite each other's decisions.
"""

from __future__ import annotations

import secrets

from pynamodb.exceptions import UpdateError
from pynamodb.expressions.condition import size

from relay_cloud.adapters.dynamo import keys, usage
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import RepoItem, WorkspaceEventItem, WorkspaceItem
from relay_cloud.adapters.dynamo.repos import _commit as commit_transaction
from relay_cloud.domain.errors import Conflict, DependencyUnavailable, NotFound
from relay_cloud.domain.plans import LimitReached
from relay_cloud.domain.workspaces import (
    DELETING,
    ERROR,
    EVENT_TTL_SECONDS,
    PROVISIONING,
    RECONCILED,
    RESOURCE,
    Workspace,
    WorkspaceEvent,
    WorkspaceNotFound,
    WorkspaceStateConflict,
)

# Fields ``update`` may change (``None`` removes the attribute). Status changes also move the sparse
# reconcile index; ``updated_at`` is always set.
UPDATABLE = frozenset({"name", "status", "error", "execution_arn", "running_since", "host", "domain",
                       "providers", "compute_seconds"})
ATTEMPTS = 3  # optimistic re-reads when a concurrent write changed what a transaction was built from


def _repo_not_found() -> NotFound:
    return NotFound("No such repository", code="REPO_NOT_FOUND")


def _repo_in_use(repo_id: str) -> Conflict:
    return Conflict("The repository is attached to another workspace", code="REPO_IN_USE", repo_id=repo_id)


def _workspace(item: WorkspaceItem) -> Workspace:
    def as_dict(value):
        return value.as_dict() if hasattr(value, "as_dict") else (dict(value) if value else None)

    return Workspace(
        workspace_id=item.workspace_id, user_id=item.user_id, name=item.name, status=item.status,
        compute=item.compute, region=item.region, size=item.size, app_name=item.app_name,
        created_at=int(item.created_at), updated_at=int(item.updated_at),
        repo_ids=tuple(item.repo_ids or ()), providers=tuple(item.providers or ()),
        resources=as_dict(item.resources) or {}, host=item.host, error=as_dict(item.error),
        execution_arn=item.execution_arn,
        running_since=int(item.running_since) if item.running_since is not None else None,
        compute_seconds=int(item.compute_seconds or 0), domain=as_dict(item.domain),
        slot_held=bool(item.slot_held) if item.slot_held is not None else False,
    )


def _event(item: WorkspaceEventItem) -> WorkspaceEvent:
    return WorkspaceEvent(cursor=item.sk, step=item.step, state=item.state, message=item.message, at=int(item.at))


def _key(workspace_id: str) -> WorkspaceItem:
    return WorkspaceItem(keys.workspace_pk(workspace_id), keys.WORKSPACE_SK)


def _status_actions(status: str, workspace_id: str) -> list:
    """The status and the sparse reconcile index that follows it."""
    actions = [WorkspaceItem.status.set(status)]
    if status in RECONCILED:
        actions += [WorkspaceItem.gsi2pk.set(keys.WORKSPACE_RECONCILE_GSI_PK),
                    WorkspaceItem.gsi2sk.set(keys.workspace_reconcile_gsi_sk(workspace_id))]
    else:
        actions += [WorkspaceItem.gsi2pk.remove(), WorkspaceItem.gsi2sk.remove()]
    return actions


def _expecting(expected_status) -> tuple[str, ...]:
    return (expected_status,) if isinstance(expected_status, str) else tuple(expected_status)


class WorkspaceRepository:
    # -- reads -----------------------------------------------------------------------------------

    def get(self, workspace_id: str) -> Workspace | None:
        """The workspace (strongly consistent), or None. Callers check ``user_id`` for tenancy."""
        with translated("get"):
            try:
                item = WorkspaceItem.get(keys.workspace_pk(workspace_id), keys.WORKSPACE_SK, consistent_read=True)
            except WorkspaceItem.DoesNotExist:
                return None
        return _workspace(item)

    def owned_by(self, user_id: str) -> list[Workspace]:
        """The user's workspaces, oldest first (owner index: eventually consistent)."""
        with translated("query"):
            items = WorkspaceItem.by_owner.query(
                keys.owner_gsi_pk(user_id), WorkspaceItem.gsi1sk.startswith(keys.WORKSPACE_GSI_PREFIX))
            return [_workspace(item) for item in items]

    def reserved_slots(self, user_id: str) -> int:
        """Plan slots the user's workspaces hold: the usage counter their create transaction moved, read
        consistently (the owner index may not show a workspace created a moment ago)."""
        return usage.UsageRepository().used(user_id, RESOURCE)

    def reconcilable(self) -> list[Workspace]:
        """Every workspace the reconcile schedule watches (running or moving), from the sparse index."""
        with translated("query"):
            items = WorkspaceItem.by_due_time.query(keys.WORKSPACE_RECONCILE_GSI_PK)
            return [_workspace(item) for item in items]

    # -- create ----------------------------------------------------------------------------------

    def create(self, workspace: Workspace, *, limit: int | None) -> None:
        """One transaction: Put the workspace (``slot_held``), reserve one ``workspaces`` slot on the
        owner's counter (refused at ``limit``; None = unlimited) and attach each of ``workspace.repo_ids``
        (conditional: the owner's and unattached).

        Raises ``LimitReached`` (→ 402), ``NotFound REPO_NOT_FOUND``, ``Conflict REPO_IN_USE``.
        Concurrent creates on the same counter are retried, then 503."""
        item = WorkspaceItem(
            keys.workspace_pk(workspace.workspace_id), keys.WORKSPACE_SK,
            workspace_id=workspace.workspace_id, user_id=workspace.user_id, name=workspace.name,
            status=workspace.status, compute=workspace.compute, region=workspace.region, size=workspace.size,
            app_name=workspace.app_name, repo_ids=list(workspace.repo_ids), providers=list(workspace.providers),
            resources=dict(workspace.resources), host=workspace.host, compute_seconds=0, slot_held=True,
            created_at=workspace.created_at, updated_at=workspace.updated_at,
            gsi1pk=keys.owner_gsi_pk(workspace.user_id),
            gsi1sk=keys.workspace_gsi_sk(workspace.created_at, workspace.workspace_id),
        )
        if workspace.status in RECONCILED:
            item.gsi2pk = keys.WORKSPACE_RECONCILE_GSI_PK
            item.gsi2sk = keys.workspace_reconcile_gsi_sk(workspace.workspace_id)

        def build(tx):
            tx.save(item, condition=WorkspaceItem.pk.does_not_exist())
            usage.reserve(tx, workspace.user_id, RESOURCE, limit)
            for repo_id in workspace.repo_ids:
                _attach(tx, workspace.user_id, repo_id, workspace.workspace_id)

        # Positions: the put (0), then the updates in order: the counter (1), the repos (2...).
        failed = commit_transaction(build)
        if not failed:
            return
        if 1 in failed:
            raise LimitReached(RESOURCE, limit)
        self._explain_repo_failure(workspace.user_id, workspace.repo_ids, {i - 2 for i in failed if i >= 2},
                                   workspace.workspace_id)
        # The id was taken (80 random bits: never in practice), or a repo changed back meanwhile.
        raise Conflict("Please retry", code="WORKSPACE_CHANGED")

    def _explain_repo_failure(self, user_id: str, repo_ids, failed_positions: set[int], workspace_id: str) -> None:
        """Raise why a repo refused to be attached: gone / never the user's → 404, attached → 409."""
        for position in sorted(failed_positions):
            repo_id = repo_ids[position]
            with translated("get"):
                try:
                    repo = RepoItem.get(keys.user_pk(user_id), keys.repo_sk(repo_id), consistent_read=True)
                except RepoItem.DoesNotExist:
                    raise _repo_not_found() from None
            if repo.attached_workspace_id not in (None, workspace_id):
                raise _repo_in_use(repo_id)

    # -- attach ----------------------------------------------------------------------------------

    def attach(self, workspace_id: str, user_id: str, repo_ids, *, max_repos: int, now: int) -> Workspace:
        """Attach more of the user's repos (ids already on the workspace are skipped): one transaction
        appends them to ``repo_ids`` (conditional: the user's workspace, not deleting, unchanged list,
        at most ``max_repos`` in all) and sets each repo's ``attached_workspace_id`` (conditional: the
        user's and unattached). Raises ``WorkspaceNotFound``, ``WorkspaceStateConflict`` (deleting),
        ``ValidationFailed TOO_MANY_REPOS``, ``NotFound REPO_NOT_FOUND``, ``Conflict REPO_IN_USE``."""
        from relay_cloud.domain.errors import ValidationFailed

        for _ in range(ATTEMPTS):
            current = self.get(workspace_id)
            if current is None or current.user_id != user_id:
                raise WorkspaceNotFound()
            if current.status == DELETING:
                raise WorkspaceStateConflict(current.status)
            new = [r for r in dict.fromkeys(repo_ids) if r not in current.repo_ids]
            if not new:
                return current
            if len(current.repo_ids) + len(new) > max_repos:
                raise ValidationFailed(f"A workspace holds at most {max_repos} repositories",
                                       code="TOO_MANY_REPOS", field="repo_ids")

            def build(tx, current=current, new=new):
                tx.update(
                    _key(workspace_id),
                    actions=[WorkspaceItem.repo_ids.set(WorkspaceItem.repo_ids.append(new)),
                             WorkspaceItem.updated_at.set(now)],
                    condition=(WorkspaceItem.user_id == user_id) & (WorkspaceItem.status != DELETING)
                    & (size(WorkspaceItem.repo_ids) == len(current.repo_ids)),
                )
                for repo_id in new:
                    _attach(tx, user_id, repo_id, workspace_id)

            failed = commit_transaction(build)
            if not failed:
                return self.get(workspace_id)
            self._explain_repo_failure(user_id, new, {i - 1 for i in failed if i >= 1}, workspace_id)
            # Only the workspace's own condition failed: it changed meanwhile; read it again.
        raise DependencyUnavailable("The workspace is changing, please retry", code="DATABASE_UNAVAILABLE")

    # -- status and fields -----------------------------------------------------------------------

    def update(self, workspace_id: str, *, expected_status, now: int, add_compute_seconds: int = 0,
               **changes) -> Workspace:
        """Change fields of the workspace, conditional on its status being ``expected_status`` (a status
        or an iterable of statuses). ``changes`` are among ``UPDATABLE``; a ``None`` value removes the
        attribute (e.g. ``running_since=None``); ``status`` also moves the sparse reconcile index;
        ``add_compute_seconds`` is added atomically to the meter; ``updated_at`` = ``now``.

        Returns the workspace as written. Raises ``WorkspaceNotFound`` (gone) or
        ``WorkspaceStateConflict`` (its status is not an expected one: carries ``current_status``)."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        actions = [WorkspaceItem.updated_at.set(int(now))]
        for name, value in changes.items():
            if name == "status":
                actions += _status_actions(value, workspace_id)
                continue
            attribute = getattr(WorkspaceItem, name)
            if value is None:
                actions.append(attribute.remove())
            else:
                actions.append(attribute.set(list(value) if name == "providers" else value))
        if add_compute_seconds:
            actions.append(WorkspaceItem.compute_seconds.add(int(add_compute_seconds)))
        expected = _expecting(expected_status)
        item = _key(workspace_id)
        with translated("update"):
            try:
                item.update(actions=actions,
                            condition=WorkspaceItem.pk.exists() & WorkspaceItem.status.is_in(*expected))
            except UpdateError as exc:
                if not is_condition_failure(exc):
                    raise
                current = self.get(workspace_id)
                if current is None:
                    raise WorkspaceNotFound() from exc
                raise WorkspaceStateConflict(current.status) from exc
        return _workspace(item)

    def set_resource(self, workspace_id: str, key: str, value) -> None:
        """Record one provider resource in the workspace's ``resources`` map (``app``, ``ips``,
        ``volume_id``, ``machine_id``, ``daemon_id``; value: a string, list or map; ``None`` removes the
        key, once the resource is deleted). Idempotent; what compensation and teardown delete is read from
        here. ``WorkspaceNotFound`` when it is gone."""
        path = WorkspaceItem.resources[key]
        with translated("update"):
            try:
                _key(workspace_id).update(actions=[path.remove() if value is None else path.set(value)],
                                          condition=WorkspaceItem.pk.exists())
            except UpdateError as exc:
                if is_condition_failure(exc):
                    raise WorkspaceNotFound() from exc
                raise

    def fail(self, workspace_id: str, error: dict, now: int, *, expected_status=PROVISIONING) -> Workspace:
        """The provisioning failed: status ``error`` with ``error`` (``{code, message, step}``) and, in
        the same transaction, the plan slot released (once: conditional on ``slot_held``, then cleared).
        Idempotent: a workspace already in ``error`` is returned as it is. Repos stay attached (the user
        may retry or delete). Raises ``WorkspaceNotFound`` or ``WorkspaceStateConflict``."""
        expected = _expecting(expected_status)
        for _ in range(ATTEMPTS):
            current = self.get(workspace_id)
            if current is None:
                raise WorkspaceNotFound()
            if current.status == ERROR:
                return current
            if current.status not in expected:
                raise WorkspaceStateConflict(current.status)

            def build(tx, current=current):
                tx.update(
                    _key(workspace_id),
                    actions=[*_status_actions(ERROR, workspace_id), WorkspaceItem.error.set(dict(error)),
                             WorkspaceItem.running_since.remove(), WorkspaceItem.slot_held.set(False),
                             WorkspaceItem.updated_at.set(int(now))],
                    condition=WorkspaceItem.status.is_in(*expected)
                    & (WorkspaceItem.slot_held == current.slot_held),
                )
                if current.slot_held:
                    usage.release(tx, current.user_id, RESOURCE)

            if not commit_transaction(build):
                return self.get(workspace_id)
        raise DependencyUnavailable("The workspace is changing, please retry", code="DATABASE_UNAVAILABLE")

    # -- events ----------------------------------------------------------------------------------

    def add_event(self, workspace_id: str, step: str, state: str, message: str, now: float) -> WorkspaceEvent:
        """Append a step event (``state``: started | succeeded | failed | compensating | compensated) at
        ``now`` (seconds, float: the sort key has milliseconds). Kept 30 days (TTL)."""
        at_ms = int(now * 1000)
        item = WorkspaceEventItem(
            keys.workspace_pk(workspace_id), keys.workspace_event_sk(at_ms, secrets.token_hex(2)),
            step=step, state=state, message=message[:500], at=at_ms,
            expires_at=int(now) + EVENT_TTL_SECONDS,
        )
        with translated("put"):
            item.save(condition=WorkspaceEventItem.pk.does_not_exist())
        return _event(item)

    def events(self, workspace_id: str, after: str | None = None, limit: int = 100) -> tuple[list[WorkspaceEvent], str | None]:
        """Events oldest first, strictly after the cursor ``after`` (an event's sort key), at most
        ``limit``; and the cursor to pass next (the last event's, or ``after`` when there is none new)."""
        # Event keys all have the same length, so every key after ``after`` sorts at or above ``after + " "``;
        # the upper bound keeps the workspace item ("WORKSPACE" > "EVENT#...") out of the range.
        low = f"{after} " if after else keys.EVENT_PREFIX
        with translated("query"):
            items = WorkspaceEventItem.query(
                keys.workspace_pk(workspace_id), WorkspaceEventItem.sk.between(low, f"{keys.EVENT_PREFIX}~"),
                consistent_read=True, limit=limit)
            found = [_event(item) for item in items]
        return found, (found[-1].cursor if found else after)

    # -- delete ----------------------------------------------------------------------------------

    def delete_all(self, workspace_id: str, user_id: str) -> None:
        """Teardown's last step: in one transaction delete the workspace (conditional: the user's and
        ``deleting``), detach its repos and release the plan slot if still held; then delete its events.
        Idempotent: a workspace already gone only has its leftover events swept. Raises
        ``WorkspaceStateConflict`` when the workspace is not ``deleting`` (or is another user's)."""
        for _ in range(ATTEMPTS):
            current = self.get(workspace_id)
            if current is None:
                break
            if current.status != DELETING or current.user_id != user_id:
                raise WorkspaceStateConflict(current.status, "Only a deleting workspace is removed")
            attached = self._attached_repos(user_id, workspace_id, current.repo_ids)

            def build(tx, current=current, attached=attached):
                tx.delete(_key(workspace_id),
                          condition=(WorkspaceItem.status == DELETING) & (WorkspaceItem.user_id == user_id)
                          & (WorkspaceItem.slot_held == current.slot_held))
                for repo_id in attached:
                    tx.update(RepoItem(keys.user_pk(user_id), keys.repo_sk(repo_id)),
                              actions=[RepoItem.attached_workspace_id.remove()],
                              condition=RepoItem.attached_workspace_id == workspace_id)
                if current.slot_held:
                    usage.release(tx, user_id, RESOURCE)

            if not commit_transaction(build):
                break
        else:
            raise DependencyUnavailable("The workspace is changing, please retry", code="DATABASE_UNAVAILABLE")
        self._purge_partition(workspace_id)

    def _attached_repos(self, user_id: str, workspace_id: str, repo_ids) -> list[str]:
        attached = []
        for repo_id in repo_ids:
            with translated("get"):
                try:
                    repo = RepoItem.get(keys.user_pk(user_id), keys.repo_sk(repo_id), consistent_read=True)
                except RepoItem.DoesNotExist:
                    continue
            if repo.attached_workspace_id == workspace_id:
                attached.append(repo_id)
        return attached

    def _purge_partition(self, workspace_id: str) -> None:
        """Delete what is left in the workspace's partition (its events), in batches."""
        from relay_cloud.adapters.dynamo.models import Item

        with translated("batch_write"):
            items = list(Item.query(keys.workspace_pk(workspace_id), consistent_read=True))
            with Item.batch_write() as batch:
                for item in items:
                    batch.delete(item)


def _attach(tx, user_id: str, repo_id: str, workspace_id: str) -> None:
    """Attach one repo inside a transaction: the user's (its partition) and not attached to anything."""
    tx.update(RepoItem(keys.user_pk(user_id), keys.repo_sk(repo_id)),
              actions=[RepoItem.attached_workspace_id.set(workspace_id)],
              condition=RepoItem.pk.exists() & RepoItem.attached_workspace_id.does_not_exist())
