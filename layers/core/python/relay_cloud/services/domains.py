"""Custom domains for workspaces (SPEC C6, issue 5 item 4; the contract is docs/design/workspaces.md
"Domains"): claim a name, prove it through DNS, get the provider's certificate, remove it.

    claim   → ``pending``: the ownership TXT token and the CNAME to publish, held until ``expires_at``
    verify  → TXT at ``_relay-challenge.<domain>`` holds the token AND the domain is a CNAME to exactly the
              workspace's host → ``verified`` → the provider's certificate requested → ``issuing`` →
              ``active`` once the provider says so (``failed`` if it gives up; verify again retries)
    remove  → the certificate deleted at the provider (404 = done), then the guard and the map

Team plan and up (402 ``FEATURE_NOT_AVAILABLE`` below) for claim and verify; remove always works, so a
downgraded user can still clean up. Another user's workspace is 404 ``WORKSPACE_NOT_FOUND``.

Unlike the original, nothing is trusted without proof: the TXT token proves control of the zone, the CNAME
must name exactly this workspace's host (Railway: its service domain; no substring match), a name is unique across all workspaces (the
guard item), and ``active`` comes only from the provider's own certificate status.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.domain.auth import Principal
from relay_cloud.domain.compute import ProviderRejected
from relay_cloud.domain.domains import (
    ACTIVE,
    FAILED,
    ISSUING,
    PENDING,
    UNVERIFIED_CLAIM_TTL_SECONDS,
    VERIFIED,
    ClaimChanged,
    DomainGuard,
    GuardHeld,
    challenge_name,
    new_ownership_token,
    normalize_domain,
    public_view,
    verify,
)
from relay_cloud.domain.errors import Conflict, NotFound, PaymentRequired, ValidationFailed
from relay_cloud.domain.plans import PLANS, REQUIRED_PLAN
from relay_cloud.domain.workspaces import DELETING, Workspace, WorkspaceStateConflict
from relay_cloud.services.plans import plan_of
from relay_cloud.services.workspaces import owned_workspace

FEATURE = "custom_domains"
CERTIFICATE_STATUS = {"pending": ISSUING, "active": ACTIVE, "failed": FAILED}  # provider → claim status
ATTEMPTS = 3  # re-reads when a concurrent write changed the claim under us


class DomainTaken(Conflict):
    code = "DOMAIN_TAKEN"

    def __init__(self, domain: str):
        super().__init__("This domain is already in use by another workspace", domain=domain)


def _no_domain() -> NotFound:
    return NotFound("This workspace has no custom domain", code="DOMAIN_NOT_FOUND")


def feature_not_available(plan_tier: str, feature: str = FEATURE) -> PaymentRequired:
    """The 402 of SPEC C8 for a feature the plan lacks."""
    required = REQUIRED_PLAN[feature]
    return PaymentRequired(
        f"{feature.replace('_', ' ').capitalize()} need the {PLANS[required].name} plan or higher",
        code="FEATURE_NOT_AVAILABLE",
        feature=feature, required_plan=required, plan=plan_tier,
    )


@dataclass
class DomainService:
    workspaces: object  # adapters.dynamo.workspaces.WorkspaceRepository (get)
    guards: object  # adapters.dynamo.domains.DomainRepository
    checker: object  # adapters.dns.DomainChecker (txt_values, cname_target)
    # The provisioner of a compute provider by name ("fly" | "railway"): a workspace's certificates live with
    # its own provider (Fly: the app's; Railway: the service's custom domain).
    compute_for: Callable[[str], object]
    users: object  # the plan
    clock: Callable[[], float] = time.time
    new_token: Callable[[], str] = new_ownership_token

    def _now(self) -> int:
        return int(self.clock())

    def _require_plan(self, user_id: str) -> None:
        plan = plan_of(self.users, user_id)
        if not plan.allows(FEATURE):
            raise feature_not_available(plan.tier)

    # -- claim -----------------------------------------------------------------------------------

    def claim(self, principal: Principal, workspace_id: str, body) -> dict:
        """201 ``{domain, status: pending, records, expires_at, ...}``. The same domain again answers the
        current claim; another domain while one is set is 409 ``DOMAIN_ALREADY_SET`` (remove it first)."""
        workspace = owned_workspace(self.workspaces, principal, workspace_id)
        self._require_plan(principal.user_id)
        domain = parse_claim_body(body)
        for _ in range(ATTEMPTS):
            if workspace.status == DELETING:
                raise WorkspaceStateConflict(workspace.status, "The workspace is being deleted")
            if not workspace.domain_target:
                raise WorkspaceStateConflict(
                    workspace.status, "The workspace has no address yet: add a domain once it is provisioned")
            if workspace.domain:
                if workspace.domain.get("domain") == domain:
                    return public_view(workspace.domain, workspace.domain_target)
                raise Conflict("This workspace already has a custom domain; remove it first",
                               code="DOMAIN_ALREADY_SET", domain=workspace.domain.get("domain"))
            try:
                return self._claim(workspace, domain)
            except ClaimChanged:
                # Changed meanwhile: decide again.
                workspace = owned_workspace(self.workspaces, principal, workspace_id)
        raise Conflict("The workspace changed meanwhile, please retry", code="WORKSPACE_CHANGED")

    def _claim(self, workspace: Workspace, domain: str) -> dict:
        """The guard and the map in one transaction when the name is free or its claim lapsed. When
        another workspace's unverified claim holds it, this claim is recorded on the workspace alone: an
        unverified claim proves nothing and must never block the real owner (verify decides, by DNS)."""
        now = self._now()
        guard = DomainGuard(domain=domain, workspace_id=workspace.workspace_id, user_id=workspace.user_id,
                            token=self.new_token(), verified=False, claimed_at=now,
                            expires_at=now + UNVERIFIED_CLAIM_TTL_SECONDS)
        state = {"domain": domain, "status": PENDING, "token": guard.token, "claimed_at": now,
                 "expires_at": guard.expires_at, "checks": {"txt": False, "cname": False}}
        try:
            self.guards.claim(guard, state, now=now)
        except GuardHeld as held:
            holder = held.holder
            if holder is None or holder.lapsed(now):
                raise ClaimChanged() from held  # released or lapsed just now: try again
            if holder.workspace_id != workspace.workspace_id and self.workspaces.get(holder.workspace_id) is not None:
                if holder.verified:
                    raise DomainTaken(domain) from held
                self.guards.claim_unguarded(guard, state, now=now)
                return public_view(state, workspace.domain_target)
            # A guard its workspace did not take along when it was deleted (or ours without its map): it
            # proves nothing any more, take exactly that one over.
            try:
                self.guards.claim(guard, state, now=now, replacing_token=holder.token)
            except GuardHeld as again:
                raise DomainTaken(domain) from again
        return public_view(state, workspace.domain_target)

    # -- verify ----------------------------------------------------------------------------------

    def verify(self, principal: Principal, workspace_id: str) -> dict:
        """200 the domain view after one step forward: DNS checks while ``pending`` (or ``failed``), the
        certificate requested once ``verified``, its status read while ``issuing`` or ``active``."""
        workspace = owned_workspace(self.workspaces, principal, workspace_id)
        if not workspace.domain:
            raise _no_domain()
        self._require_plan(principal.user_id)
        if workspace.status == DELETING:
            raise WorkspaceStateConflict(workspace.status, "The workspace is being deleted")
        try:
            state = self._advance(workspace, dict(workspace.domain))
        except ClaimChanged:
            # Removed or replaced meanwhile.
            workspace = owned_workspace(self.workspaces, principal, workspace_id)
            if not workspace.domain:
                raise _no_domain() from None
            state = workspace.domain
        return public_view(state, workspace.domain_target)

    def _advance(self, workspace: Workspace, state: dict) -> dict:
        status = state.get("status", PENDING)
        if status in (PENDING, FAILED):
            state = self._check_dns(workspace, state)
            if state["status"] != VERIFIED:
                return state
            # A failed certificate is deleted and requested anew: verifying again is the user's retry.
            return self._request_certificate(workspace, state, fresh=status == FAILED)
        if status == VERIFIED:
            return self._request_certificate(workspace, state)
        if status in (ISSUING, ACTIVE):
            return self._refresh_certificate(workspace, state)
        return state

    def _check_dns(self, workspace: Workspace, state: dict) -> dict:
        """Ask DNS; on success take the guard as verified (a DNS proof beats any unverified claim)."""
        domain, token, now = state["domain"], state["token"], self._now()
        if not workspace.domain_target:
            raise WorkspaceStateConflict(workspace.status, "The workspace has no address to point the domain at")
        holder = self.guards.get(domain)
        if holder is not None and holder.verified and holder.workspace_id != workspace.workspace_id:
            self._lose(workspace, state, now)  # another workspace proved the name first: this claim is over
        result = verify(self.checker.txt_values(challenge_name(domain)), self.checker.cname_target(domain),
                        token, workspace.domain_target, domain=domain)
        checks = {"txt": result.ownership_ok, "cname": result.routing_ok}
        if not result.verified:
            changes = {"checks": checks, "checked_at": now, "reasons": list(result.reasons)}
            self.guards.update_claim(workspace.workspace_id, token, changes, now=now)
            return {**state, **changes}
        changes = {"checks": checks, "checked_at": now, "reasons": None, "expires_at": None, "error": None,
                   "verified_at": state.get("verified_at") or now, "status": VERIFIED}
        guard = DomainGuard(domain=domain, workspace_id=workspace.workspace_id, user_id=workspace.user_id,
                            token=token, verified=True, claimed_at=int(state.get("claimed_at") or now))
        try:
            self.guards.mark_verified(guard, changes, now=now)
        except GuardHeld as held:
            if held.holder is None:
                raise ClaimChanged() from held
            self._lose(workspace, state, now)  # verified by another workspace a moment before us
        return {key: value for key, value in {**state, **changes}.items() if value is not None}

    def _lose(self, workspace: Workspace, state: dict, now: int):
        """The name is verified by another workspace: drop this workspace's claim and say so (409)."""
        try:
            self.guards.release(state["domain"], workspace.workspace_id, state["token"], now=now)
        except ClaimChanged:
            pass
        raise DomainTaken(state["domain"])

    def _request_certificate(self, workspace: Workspace, state: dict, *, fresh: bool = False) -> dict:
        """Ask the provider for the domain's certificate (it looks first: never two); ``fresh`` deletes a
        failed one first."""
        domain, now, compute = state["domain"], self._now(), self.compute_for(workspace.compute)
        try:
            if fresh:
                compute.delete_certificate(workspace.app_name, domain)
            provider_status = compute.add_certificate(workspace.app_name, domain)
        except ProviderRejected as exc:
            changes = {"status": FAILED, "error": {"code": exc.code, "message": exc.message}}
        except UpstreamUnavailable:
            return state  # stays verified: the next verify (or the reconcile schedule) asks again
        else:
            changes = {"status": CERTIFICATE_STATUS.get(provider_status, ISSUING), "error": None,
                       "certificate_requested_at": now}
        self.guards.update_claim(workspace.workspace_id, state["token"], changes, now=now)
        return {key: value for key, value in {**state, **changes}.items() if value is not None}

    def _refresh_certificate(self, workspace: Workspace, state: dict) -> dict:
        provider_status = self.compute_for(workspace.compute).certificate_status(workspace.app_name, state["domain"])
        if provider_status is None:  # deleted at the provider behind our back: ask again
            return self._request_certificate(workspace, {**state, "status": VERIFIED})
        status = CERTIFICATE_STATUS.get(provider_status, ISSUING)
        if status == state["status"]:
            return state
        changes = {"status": status}
        if status == FAILED:
            changes["error"] = {"code": "CERTIFICATE_FAILED",
                                "message": "The certificate authority did not issue a certificate; verify again"}
        self.guards.update_claim(workspace.workspace_id, state["token"], changes, now=self._now())
        return {**state, **changes}

    def reconcile(self, workspace: Workspace) -> str | None:
        """The reconcile schedule's step for one workspace: move a verified or issuing domain on (request
        the certificate, read its status). Answers the domain's status, None when it has no domain."""
        state = workspace.domain
        if not state:
            return None
        if state.get("status") not in (VERIFIED, ISSUING):
            return state.get("status")
        try:
            return self._advance(workspace, dict(state))["status"]
        except (ClaimChanged, UpstreamUnavailable):
            return state.get("status")

    # -- remove ----------------------------------------------------------------------------------

    def remove(self, principal: Principal, workspace_id: str) -> None:
        """204: the certificate deleted at the provider (404 = done), then the guard (if still ours) and the
        map in one transaction. Nothing to remove is also 204."""
        workspace = owned_workspace(self.workspaces, principal, workspace_id)
        for _ in range(ATTEMPTS):
            state = workspace.domain
            if not state:
                return
            # Always asked (404 = done): a certificate may exist even when our record says otherwise.
            self.compute_for(workspace.compute).delete_certificate(workspace.app_name, state["domain"])
            try:
                self.guards.release(state["domain"], workspace.workspace_id, state["token"], now=self._now())
                return
            except ClaimChanged:
                workspace = owned_workspace(self.workspaces, principal, workspace_id)
        raise Conflict("The workspace changed meanwhile, please retry", code="WORKSPACE_CHANGED")

    def teardown(self, workspace: Workspace) -> None:
        """The teardown workflow's first step (``ProvisioningService.teardown_domain``), before the
        workspace's items go: the certificate deleted at the provider (404 = done; the app's deletion
        would take it too, but the app may outlive a failed teardown) and the guard deleted if it still
        names this workspace, so the name is free again. Idempotent: a re-run finds nothing to delete."""
        state = workspace.domain
        if not state:
            return
        self.compute_for(workspace.compute).delete_certificate(workspace.app_name, state["domain"])
        self.guards.release_guard(state["domain"], workspace.workspace_id)


def parse_claim_body(body) -> str:
    """The claim body's domain (also validated by ``normalize_domain``)."""
    if not isinstance(body, dict):
        raise ValidationFailed("Expected a JSON object with a domain", code="DOMAIN_INVALID", reason="EMPTY")
    return normalize_domain(body.get("domain"))
