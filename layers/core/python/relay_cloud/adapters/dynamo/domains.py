"""DynamoDB repository of custom-domain claims (docs/design/workspaces.md "Domains").

Two items move together: the guard ``DOMAIN#<domain>`` (which workspace holds the name, unique across
all workspaces) and the workspace's ``domain`` map (what the dashboard shows: status, token, checks).
Every write of both is one transaction, so a guard without its map (or the reverse) never exists:

- claim: Put the guard if the name is free or held by an unverified claim past its expiry
  (``attribute_not_exists(pk) OR (verified = false AND expires_at < now)``), and set the map if the
  workspace is the user's, has no domain yet and is not being deleted (``claim_unguarded`` sets the map
  alone while another workspace's unverified claim holds the guard);
- verify: Put the guard as verified (no ``expires_at``, so no TTL) if it is free, ours, or held only by an
  unverified claim: a DNS proof of control beats any unverified claim, so nobody can squat a name by
  claiming it first or by re-claiming it the moment a claim lapses;
- release: delete the guard if it is still ours, and remove the map.

Map writes are conditional on the map's ``token`` (each claim has its own), so a verify that raced a
remove and a new claim can never write onto the new claim.
"""

from __future__ import annotations

from pynamodb.exceptions import DeleteError, UpdateError

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import DomainGuardItem, WorkspaceItem
from relay_cloud.adapters.dynamo.repos import _commit as commit_transaction
from relay_cloud.domain.domains import ClaimChanged, DomainGuard, GuardHeld
from relay_cloud.domain.workspaces import DELETING

_GUARD, _WORKSPACE = 0, 1  # positions in the transactions below (a put or delete, then an update)


def _guard(item: DomainGuardItem) -> DomainGuard:
    return DomainGuard(
        domain=item.domain, workspace_id=item.workspace_id, user_id=item.user_id, token=item.token,
        verified=bool(item.verified), claimed_at=int(item.claimed_at),
        verified_at=int(item.verified_at) if item.verified_at is not None else None,
        expires_at=int(item.expires_at) if item.expires_at is not None else None,
    )


def _workspace_key(workspace_id: str) -> WorkspaceItem:
    return WorkspaceItem(keys.workspace_pk(workspace_id), keys.WORKSPACE_SK)


def _holds_claim(token: str):
    """The workspace's map is still the claim with this token."""
    return WorkspaceItem.pk.exists() & (WorkspaceItem.domain["token"] == token)


def _clean(state: dict) -> dict:
    return {key: value for key, value in state.items() if value is not None}


class DomainRepository:
    def get(self, domain: str) -> DomainGuard | None:
        """The guard of ``domain`` (strongly consistent), lapsed or not; None when nobody claimed it."""
        with translated("get"):
            try:
                item = DomainGuardItem.get(keys.domain_pk(domain), keys.DOMAIN_SK, consistent_read=True)
            except DomainGuardItem.DoesNotExist:
                return None
        return _guard(item)

    def claim(self, guard: DomainGuard, state: dict, *, now: int, replacing_token: str | None = None) -> None:
        """Write ``guard`` (unverified, ``expires_at`` set) and the workspace's ``domain`` map ``state`` in one
        transaction. ``replacing_token``: take over exactly that guard (one left behind by a workspace that
        no longer exists) instead of requiring the name to be free or lapsed.

        Raises ``GuardHeld`` (another claim holds the name) or ``ClaimChanged`` (the workspace is not the
        user's, is being deleted, or has a domain already)."""
        item = DomainGuardItem(
            keys.domain_pk(guard.domain), keys.DOMAIN_SK, domain=guard.domain, workspace_id=guard.workspace_id,
            user_id=guard.user_id, token=guard.token, verified=False, claimed_at=guard.claimed_at,
            expires_at=guard.expires_at,
        )
        if replacing_token is None:
            free = DomainGuardItem.pk.does_not_exist() | (
                (DomainGuardItem.verified == False) & (DomainGuardItem.expires_at < now))  # noqa: E712
        else:
            free = DomainGuardItem.token == replacing_token

        def build(tx):
            tx.save(item, condition=free)
            tx.update(_workspace_key(guard.workspace_id),
                      actions=[WorkspaceItem.domain.set(_clean(state)), WorkspaceItem.updated_at.set(now)],
                      condition=WorkspaceItem.pk.exists() & (WorkspaceItem.user_id == guard.user_id)
                      & (WorkspaceItem.status != DELETING) & WorkspaceItem.domain.does_not_exist())

        failed = commit_transaction(build)
        if _WORKSPACE in failed:
            raise ClaimChanged()
        if _GUARD in failed:
            raise GuardHeld(self.get(guard.domain))

    def claim_unguarded(self, guard: DomainGuard, state: dict, *, now: int) -> None:
        """Record a claim on the workspace alone while another workspace's unverified claim holds the
        guard (verify takes the guard with the DNS proof). ``ClaimChanged`` as for ``claim``."""
        with translated("update"):
            try:
                _workspace_key(guard.workspace_id).update(
                    actions=[WorkspaceItem.domain.set(_clean(state)), WorkspaceItem.updated_at.set(now)],
                    condition=WorkspaceItem.pk.exists() & (WorkspaceItem.user_id == guard.user_id)
                    & (WorkspaceItem.status != DELETING) & WorkspaceItem.domain.does_not_exist())
            except UpdateError as exc:
                if is_condition_failure(exc):
                    raise ClaimChanged() from exc
                raise

    def mark_verified(self, guard: DomainGuard, changes: dict, *, now: int) -> None:
        """The DNS proof succeeded: write ``guard`` as verified (no expiry: the TTL is gone) and apply
        ``changes`` to the map, in one transaction. Allowed when the name is free, ours already, or held
        only by an unverified claim (a proof beats a claim). Raises ``GuardHeld`` (verified by another
        workspace) or ``ClaimChanged`` (our claim was removed or replaced meanwhile)."""
        item = DomainGuardItem(
            keys.domain_pk(guard.domain), keys.DOMAIN_SK, domain=guard.domain, workspace_id=guard.workspace_id,
            user_id=guard.user_id, token=guard.token, verified=True, claimed_at=guard.claimed_at,
            verified_at=now,
        )
        ours = (DomainGuardItem.workspace_id == guard.workspace_id) & (DomainGuardItem.token == guard.token)

        def build(tx):
            tx.save(item, condition=DomainGuardItem.pk.does_not_exist() | (DomainGuardItem.verified == False)  # noqa: E712
                    | ours)
            tx.update(_workspace_key(guard.workspace_id), actions=self._map_actions(changes, now),
                      condition=_holds_claim(guard.token) & (WorkspaceItem.status != DELETING))

        failed = commit_transaction(build)
        if _WORKSPACE in failed:
            raise ClaimChanged()
        if _GUARD in failed:
            raise GuardHeld(self.get(guard.domain))

    def update_claim(self, workspace_id: str, token: str, changes: dict, *, now: int) -> None:
        """Apply ``changes`` (``None`` removes a key) to the workspace's map if it is still the claim with
        ``token``; ``ClaimChanged`` otherwise."""
        with translated("update"):
            try:
                _workspace_key(workspace_id).update(actions=self._map_actions(changes, now),
                                                    condition=_holds_claim(token))
            except UpdateError as exc:
                if is_condition_failure(exc):
                    raise ClaimChanged() from exc
                raise

    def release(self, domain: str, workspace_id: str, token: str, *, now: int) -> None:
        """Remove the claim with ``token`` from the workspace and delete the guard if it is still this
        claim's, in one transaction; when another workspace holds the guard by now, only the map goes.
        ``ClaimChanged`` when the map is not this claim any more."""
        guard_key = DomainGuardItem(keys.domain_pk(domain), keys.DOMAIN_SK)
        remove_map = [WorkspaceItem.domain.remove(), WorkspaceItem.updated_at.set(now)]
        ours = (DomainGuardItem.workspace_id == workspace_id) & (DomainGuardItem.token == token)

        def build(tx):
            tx.delete(guard_key, condition=ours)
            tx.update(_workspace_key(workspace_id), actions=remove_map, condition=_holds_claim(token))

        failed = commit_transaction(build)
        if _WORKSPACE in failed:
            raise ClaimChanged()
        if _GUARD in failed:  # not ours (lapsed and taken over, or never held): the map alone
            with translated("update"):
                try:
                    _workspace_key(workspace_id).update(actions=remove_map, condition=_holds_claim(token))
                except UpdateError as exc:
                    if is_condition_failure(exc):
                        raise ClaimChanged() from exc
                    raise

    def release_guard(self, domain: str, workspace_id: str) -> None:
        """Delete the guard if ``workspace_id`` holds it (the workspace's teardown; the map goes with the
        workspace item). Nothing when it is gone or held by another workspace."""
        with translated("delete"):
            try:
                DomainGuardItem(keys.domain_pk(domain), keys.DOMAIN_SK).delete(
                    condition=DomainGuardItem.workspace_id == workspace_id)
            except DeleteError as exc:
                if is_condition_failure(exc):
                    return
                raise

    @staticmethod
    def _map_actions(changes: dict, now: int) -> list:
        actions = [WorkspaceItem.updated_at.set(now)]
        for key, value in changes.items():
            path = WorkspaceItem.domain[key]
            actions.append(path.remove() if value is None else path.set(value))
        return actions
