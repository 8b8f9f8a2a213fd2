"""Custom-domain claims on moto and on DynamoDB Local: the guard and the workspace's ``domain`` map written
in one transaction; exactly one of N concurrent claims of a name wins; an unverified claim lapses and is
taken over, a verified one never; a DNS proof beats an unverified claim; release; and the whole flow
through DomainService over the real repositories."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.domains import DomainRepository
from relay_cloud.adapters.dynamo.models import DomainGuardItem, UserItem, WorkspaceItem
from relay_cloud.adapters.dynamo.workspaces import WorkspaceRepository
from relay_cloud.domain.auth import Principal
from relay_cloud.domain.domains import UNVERIFIED_CLAIM_TTL_SECONDS, ClaimChanged, DomainGuard, GuardHeld
from relay_cloud.services.domains import DomainService
from tests.fakes import Clock

NOW = 1_800_000_000
DOMAIN = "app.customer.dev"


def workspace(n: int, user_id: str = "usr_a", status: str = "running") -> str:
    workspace_id = f"ws_{n:020x}"
    WorkspaceItem(keys.workspace_pk(workspace_id), keys.WORKSPACE_SK, workspace_id=workspace_id, user_id=user_id,
                  name=f"w{n}", status=status, compute="fly", region="iad", size="small",
                  app_name=f"ws-{workspace_id}".replace("_", "-"), host=f"ws-{workspace_id}.fly.dev".replace("_", "-"),
                  created_at=NOW, updated_at=NOW, gsi1pk=keys.owner_gsi_pk(user_id),
                  gsi1sk=keys.workspace_gsi_sk(NOW, workspace_id)).save()
    return workspace_id


def guard(workspace_id: str, *, user_id: str = "usr_a", now: int = NOW, token: str | None = None) -> DomainGuard:
    return DomainGuard(domain=DOMAIN, workspace_id=workspace_id, user_id=user_id,
                       token=token or "relay-domain-verification=" + (workspace_id[-8:] * 4)[:32],
                       verified=False, claimed_at=now, expires_at=now + UNVERIFIED_CLAIM_TTL_SECONDS)


def state(g: DomainGuard) -> dict:
    return {"domain": g.domain, "status": "pending", "token": g.token, "claimed_at": g.claimed_at,
            "expires_at": g.expires_at, "checks": {"txt": False, "cname": False}}


def stored_map(workspace_id: str) -> dict | None:
    item = WorkspaceItem.get(keys.workspace_pk(workspace_id), keys.WORKSPACE_SK, consistent_read=True)
    return item.domain.as_dict() if item.domain is not None else None


def stored_guard() -> DomainGuardItem | None:
    try:
        return DomainGuardItem.get(keys.domain_pk(DOMAIN), keys.DOMAIN_SK, consistent_read=True)
    except DomainGuardItem.DoesNotExist:
        return None


def test_a_claim_writes_the_guard_and_the_map_together(backend):
    repo, ws = DomainRepository(), workspace(1)
    g = guard(ws)
    repo.claim(g, state(g), now=NOW)
    item = stored_guard()
    assert (item.workspace_id, item.user_id, item.token, item.verified) == (ws, "usr_a", g.token, False)
    assert int(item.expires_at) == NOW + UNVERIFIED_CLAIM_TTL_SECONDS
    assert stored_map(ws)["token"] == g.token and stored_map(ws)["status"] == "pending"
    assert repo.get(DOMAIN) == g


def test_a_claim_on_another_users_workspace_writes_nothing(backend):
    repo, ws = DomainRepository(), workspace(1, user_id="usr_b")
    g = guard(ws, user_id="usr_a")
    with pytest.raises(ClaimChanged):
        repo.claim(g, state(g), now=NOW)
    assert stored_guard() is None and stored_map(ws) is None


def test_a_workspace_being_deleted_takes_no_claim(backend):
    repo, ws = DomainRepository(), workspace(1, status="deleting")
    g = guard(ws)
    with pytest.raises(ClaimChanged):
        repo.claim(g, state(g), now=NOW)
    assert stored_guard() is None


def test_exactly_one_of_concurrent_claims_of_a_name_wins(backend):
    repo = DomainRepository()
    contenders = [workspace(n, user_id=f"usr_{n}") for n in range(1, 9)]
    start = threading.Barrier(len(contenders))

    def attempt(ws: str) -> str:
        g = guard(ws, user_id=WorkspaceItem.get(keys.workspace_pk(ws), keys.WORKSPACE_SK).user_id)
        start.wait()
        try:
            repo.claim(g, state(g), now=NOW)
            return "won"
        except GuardHeld as held:
            assert held.holder is not None and held.holder.workspace_id != ws
            return "held"

    with ThreadPoolExecutor(len(contenders)) as pool:
        outcomes = dict(zip(contenders, pool.map(attempt, contenders)))
    winners = [ws for ws, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1
    assert stored_guard().workspace_id == winners[0]
    assert [ws for ws in contenders if stored_map(ws) is not None] == winners


def test_an_unverified_claim_lapses_and_is_taken_over_a_verified_one_never(backend):
    repo, squatter, owner = DomainRepository(), workspace(1, user_id="usr_squat"), workspace(2, user_id="usr_owner")
    first = guard(squatter, user_id="usr_squat")
    repo.claim(first, state(first), now=NOW)

    expiry = NOW + UNVERIFIED_CLAIM_TTL_SECONDS
    early = guard(owner, user_id="usr_owner", now=expiry)  # at the expiry instant it still holds
    with pytest.raises(GuardHeld) as held:
        repo.claim(early, state(early), now=expiry)
    assert held.value.holder.workspace_id == squatter
    assert stored_map(owner) is None

    later = guard(owner, user_id="usr_owner", now=expiry + 1)
    repo.claim(later, state(later), now=expiry + 1)
    assert stored_guard().workspace_id == owner

    verified = DomainGuard(**{**later.__dict__, "verified": True, "expires_at": None})
    repo.mark_verified(verified, {"status": "verified", "expires_at": None, "verified_at": expiry + 2}, now=expiry + 2)
    item = stored_guard()
    assert item.verified is True and item.expires_at is None and int(item.verified_at) == expiry + 2
    assert stored_map(owner)["status"] == "verified" and "expires_at" not in stored_map(owner)

    years = expiry + 10 * 365 * 86_400
    retry = guard(squatter, user_id="usr_squat", now=years)
    repo.release(DOMAIN, squatter, first.token, now=years)  # the squatter's stale map goes; the guard is not theirs
    assert stored_guard().workspace_id == owner
    with pytest.raises(GuardHeld) as held:
        repo.claim(retry, state(retry), now=years)
    assert held.value.holder.verified and held.value.holder.workspace_id == owner


def test_a_dns_proof_beats_an_unverified_claim_but_not_a_verified_one(backend):
    repo, holder, prover, late = DomainRepository(), workspace(1, "usr_h"), workspace(2, "usr_p"), workspace(3, "usr_l")
    held = guard(holder, user_id="usr_h")
    repo.claim(held, state(held), now=NOW)
    proving = guard(prover, user_id="usr_p")
    repo.claim_unguarded(proving, state(proving), now=NOW)
    assert stored_guard().workspace_id == holder and stored_map(prover)["token"] == proving.token

    repo.mark_verified(DomainGuard(**{**proving.__dict__, "verified": True, "expires_at": None}),
                       {"status": "verified"}, now=NOW + 5)
    assert (stored_guard().workspace_id, stored_guard().verified) == (prover, True)

    too_late = guard(late, user_id="usr_l")
    repo.claim_unguarded(too_late, state(too_late), now=NOW)
    with pytest.raises(GuardHeld):
        repo.mark_verified(DomainGuard(**{**too_late.__dict__, "verified": True, "expires_at": None}),
                           {"status": "verified"}, now=NOW + 6)
    assert stored_map(late)["status"] == "pending"  # nothing of the refused transaction was written


def test_map_writes_follow_the_claims_token(backend):
    repo, ws = DomainRepository(), workspace(1)
    g = guard(ws)
    repo.claim(g, state(g), now=NOW)
    repo.update_claim(ws, g.token, {"checks": {"txt": True, "cname": False}, "reasons": ["CNAME_MISSING"],
                                    "checked_at": NOW + 1}, now=NOW + 1)
    stored = stored_map(ws)
    assert stored["checks"] == {"txt": True, "cname": False} and stored["reasons"] == ["CNAME_MISSING"]
    repo.update_claim(ws, g.token, {"reasons": None}, now=NOW + 2)
    assert "reasons" not in stored_map(ws)
    with pytest.raises(ClaimChanged):
        repo.update_claim(ws, "relay-domain-verification=" + "z" * 32, {"status": "active"}, now=NOW + 3)
    assert stored_map(ws)["status"] == "pending"


def test_release_deletes_our_guard_and_the_map_and_only_the_map_when_the_guard_is_not_ours(backend):
    repo, mine, other = DomainRepository(), workspace(1), workspace(2, "usr_b")
    g = guard(mine)
    repo.claim(g, state(g), now=NOW)
    repo.release(DOMAIN, mine, g.token, now=NOW + 1)
    assert stored_guard() is None and stored_map(mine) is None
    with pytest.raises(ClaimChanged):
        repo.release(DOMAIN, mine, g.token, now=NOW + 2)

    theirs = guard(other, user_id="usr_b")
    repo.claim(theirs, state(theirs), now=NOW)
    shadow = guard(mine, token="relay-domain-verification=" + "m" * 32)
    repo.claim_unguarded(shadow, state(shadow), now=NOW)
    repo.release(DOMAIN, mine, shadow.token, now=NOW + 3)
    assert stored_map(mine) is None and stored_guard().workspace_id == other

    repo.release_guard(DOMAIN, mine)  # not ours: kept
    assert stored_guard() is not None
    repo.release_guard(DOMAIN, other)
    assert stored_guard() is None
    repo.release_guard(DOMAIN, other)  # gone: nothing to do


# -- the service over the real repositories ---------------------------------------------------------


class DnsAnswers:
    def __init__(self):
        self.txt, self.cname = {}, {}

    def txt_values(self, name):
        return list(self.txt.get(name, []))

    def cname_target(self, name):
        return self.cname.get(name)


class Certificates:
    """The provider's certificates by (app, hostname): pending until ``issue``."""

    def __init__(self):
        self.certs = {}

    def add_certificate(self, app, hostname):
        return self.certs.setdefault((app, hostname), "pending")

    def certificate_status(self, app, hostname):
        return self.certs.get((app, hostname))

    def delete_certificate(self, app, hostname):
        self.certs.pop((app, hostname), None)


def test_claim_verify_issue_and_remove_through_the_service(backend):
    ws = workspace(1, user_id="usr_team")
    UserItem(keys.user_pk("usr_team"), keys.USER_PROFILE_SK, user_id="usr_team", github_id=1, github_login="team",
             plan="team", created_at=NOW, updated_at=NOW).save()
    from relay_cloud.adapters.dynamo.accounts import UserRepository

    dns, certs, clock = DnsAnswers(), Certificates(), Clock(NOW)
    service = DomainService(workspaces=WorkspaceRepository(), guards=DomainRepository(), checker=dns,
                            compute_for={"fly": certs}.__getitem__, users=UserRepository(), clock=clock)
    me = Principal("usr_team", "s", "c")
    claimed = service.claim(me, ws, {"domain": "App.Customer.dev."})
    assert claimed["domain"] == DOMAIN and claimed["status"] == "pending"
    assert claimed["expires_at"] == NOW + UNVERIFIED_CLAIM_TTL_SECONDS
    txt, cname = claimed["records"]
    host = WorkspaceItem.get(keys.workspace_pk(ws), keys.WORKSPACE_SK).host
    assert cname == {"type": "CNAME", "name": DOMAIN, "value": host}

    dns.txt[txt["name"]] = [txt["value"]]
    dns.cname[DOMAIN] = host
    clock.advance(60)
    assert service.verify(me, ws)["status"] == "issuing"
    assert stored_guard().verified is True and stored_guard().expires_at is None
    certs.certs[(WorkspaceItem.get(keys.workspace_pk(ws), keys.WORKSPACE_SK).app_name, DOMAIN)] = "active"
    view = service.verify(me, ws)
    assert view["status"] == "active" and view["checks"] == {"txt": True, "cname": True}
    assert stored_map(ws)["status"] == "active"

    service.remove(me, ws)
    assert certs.certs == {} and stored_guard() is None and stored_map(ws) is None


def test_the_whole_chain_with_real_dns_and_the_fly_sandbox(backend):
    """DomainChecker (dnspython) asking the DNS sandbox's server, FlyProvisioner against the Fly sandbox
    whose certificate DNS check reads the same records (as the local stack wires it)."""
    import time as real_time

    from relay_cloud.adapters.dns import DomainChecker
    from relay_cloud.adapters.dynamo.accounts import UserRepository
    from relay_cloud.adapters.fly import FlyProvisioner
    from relay_cloud.sandbox.dns import DnsSandbox
    from tests.integration.fly_support import ORG, serve_fly

    ws = workspace(1, user_id="usr_team")
    item = WorkspaceItem.get(keys.workspace_pk(ws), keys.WORKSPACE_SK)
    UserItem(keys.user_pk("usr_team"), keys.USER_PROFILE_SK, user_id="usr_team", github_id=1, github_login="team",
             plan="team", created_at=NOW, updated_at=NOW).save()
    dns = DnsSandbox()
    resolver = dns.start_server("127.0.0.1")
    try:
        with serve_fly(certificate_ms=100) as (fly, base, token, _other):
            fly.dns_configured = lambda hostname, app: any(
                r.value == f"{app}.fly.dev" for r in dns.records(hostname.lower(), "CNAME"))
            compute = FlyProvisioner(api_url=base, token=token, org=ORG, backoff_s=0.01)
            compute.ensure_app(item.app_name)
            service = DomainService(workspaces=WorkspaceRepository(), guards=DomainRepository(),
                                    checker=DomainChecker(resolver, timeout=2.0),
                                    compute_for={"fly": compute}.__getitem__, users=UserRepository())
            me = Principal("usr_team", "s", "c")
            txt, cname = service.claim(me, ws, {"domain": DOMAIN})["records"]
            assert service.verify(me, ws)["reasons"] == ["TXT_MISSING", "CNAME_MISSING"]
            dns.publish(txt["name"], "TXT", txt["value"])
            dns.publish(cname["name"], "CNAME", cname["value"])
            assert service.verify(me, ws)["status"] == "issuing"
            real_time.sleep(0.15)
            assert service.verify(me, ws)["status"] == "active"
            assert [(c.hostname) for c in fly._apps[item.app_name].certificates.values()] == [DOMAIN]
            service.remove(me, ws)
            compute.close()
            assert stored_guard() is None and stored_map(ws) is None
            assert not fly._apps[item.app_name].certificates
    finally:
        dns.close()
