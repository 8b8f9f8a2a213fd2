"""The custom-domain service (docs/design/workspaces.md "Domains") with in-memory fakes that keep the real
adapters' conditions: the plan gate (402 below Team), the records a claim answers with, verification
outcomes (TXT missing, CNAME wrong, both right → verified → issuing → active), a failed certificate
retried, squatting (a lapsed or merely unverified claim of another user never blocks the real owner; a
verified one of another workspace is 409), remove, teardown and tenancy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.domain.auth import Principal, User
from relay_cloud.domain.compute import ProviderRejected
from relay_cloud.domain.domains import (
    UNVERIFIED_CLAIM_TTL_SECONDS,
    ClaimChanged,
    DomainGuard,
    GuardHeld,
    is_ownership_token,
)
from relay_cloud.domain.errors import Conflict, DependencyUnavailable, NotFound, PaymentRequired, ValidationFailed
from relay_cloud.domain.workspaces import Workspace, WorkspaceStateConflict
from relay_cloud.services.domains import DomainService
from tests.fakes import Clock, FakeUsers

NOW = 1_800_000_000
DOMAIN = "app.customer.dev"
CHALLENGE = "_relay-challenge." + DOMAIN
TEAM, PRO, FREE = Principal("usr_team", "s1", "c1"), Principal("usr_pro", "s2", "c2"), Principal("usr_free", "s3", "c3")
RIVAL = Principal("usr_rival", "s4", "c4")  # another Team user


# -- fakes with the real adapters' conditions -------------------------------------------------------

class FakeWorkspaces:
    def __init__(self):
        self.items: dict[str, Workspace] = {}

    def add(self, n: int, user_id: str, *, status="running", host=True) -> str:
        workspace_id = f"ws_{n:020x}"
        app = f"ws-ws-{n:020x}"
        self.items[workspace_id] = Workspace(
            workspace_id=workspace_id, user_id=user_id, name=f"w{n}", status=status, compute="fly", region="iad",
            size="small", app_name=app, created_at=NOW, updated_at=NOW, host=f"{app}.fly.dev" if host else None)
        return workspace_id

    def get(self, workspace_id):
        return self.items.get(workspace_id)

    def domain(self, workspace_id):
        return self.items[workspace_id].domain


class FakeGuards:
    """The guard items and the workspaces' ``domain`` maps, changed together like the transactions."""

    def __init__(self, workspaces: FakeWorkspaces):
        self.workspaces, self.guards = workspaces, {}

    def get(self, domain):
        return self.guards.get(domain)

    def _map_free(self, guard):
        ws = self.workspaces.items.get(guard.workspace_id)
        return ws is not None and ws.user_id == guard.user_id and ws.status != "deleting" and not ws.domain

    def _set_map(self, workspace_id, state):
        ws = self.workspaces.items[workspace_id]
        self.workspaces.items[workspace_id] = replace(ws, domain={k: v for k, v in state.items() if v is not None})

    def _holds(self, workspace_id, token):
        ws = self.workspaces.items.get(workspace_id)
        return ws is not None and bool(ws.domain) and ws.domain.get("token") == token

    def claim(self, guard, state, *, now, replacing_token=None):
        current = self.guards.get(guard.domain)
        if replacing_token is None:
            free = current is None or (not current.verified and current.expires_at < now)
        else:
            free = current is not None and current.token == replacing_token
        if not self._map_free(guard):
            raise ClaimChanged()
        if not free:
            raise GuardHeld(current)
        self.guards[guard.domain] = guard
        self._set_map(guard.workspace_id, state)

    def claim_unguarded(self, guard, state, *, now):
        if not self._map_free(guard):
            raise ClaimChanged()
        self._set_map(guard.workspace_id, state)

    def mark_verified(self, guard, changes, *, now):
        current = self.guards.get(guard.domain)
        if not self._holds(guard.workspace_id, guard.token):
            raise ClaimChanged()
        if current is not None and current.verified and (current.workspace_id, current.token) != (
                guard.workspace_id, guard.token):
            raise GuardHeld(current)
        self.guards[guard.domain] = replace(guard, verified=True, verified_at=now, expires_at=None)
        self.update_claim(guard.workspace_id, guard.token, changes, now=now)

    def update_claim(self, workspace_id, token, changes, *, now):
        if not self._holds(workspace_id, token):
            raise ClaimChanged()
        self._set_map(workspace_id, {**self.workspaces.items[workspace_id].domain, **changes})

    def release(self, domain, workspace_id, token, *, now):
        if not self._holds(workspace_id, token):
            raise ClaimChanged()
        current = self.guards.get(domain)
        if current is not None and (current.workspace_id, current.token) == (workspace_id, token):
            del self.guards[domain]
        self.workspaces.items[workspace_id] = replace(self.workspaces.items[workspace_id], domain=None)

    def release_guard(self, domain, workspace_id):
        current = self.guards.get(domain)
        if current is not None and current.workspace_id == workspace_id:
            del self.guards[domain]


class FakeDns:
    def __init__(self):
        self.txt, self.cname, self.down = {}, {}, False

    def txt_values(self, name):
        if self.down:
            raise UpstreamUnavailable("dns")
        return list(self.txt.get(name, []))

    def cname_target(self, name):
        if self.down:
            raise UpstreamUnavailable("dns")
        return self.cname.get(name)


class FakeCompute:
    """Certificates by (app, hostname) with the provider's status; ``refuse`` makes the next add a 4xx."""

    def __init__(self):
        self.certs, self.requests, self.refuse, self.down = {}, 0, False, False

    def add_certificate(self, app, hostname):
        if self.down:
            raise UpstreamUnavailable("fly")
        if self.refuse:
            raise ProviderRejected("Fly.io refused", provider="fly", upstream_status=422,
                                   upstream_error="Hostname is already configured on another app")
        if (app, hostname) not in self.certs:
            self.requests += 1
            self.certs[(app, hostname)] = "pending"
        return self.certs[(app, hostname)]

    def certificate_status(self, app, hostname):
        if self.down:
            raise UpstreamUnavailable("fly")
        return self.certs.get((app, hostname))

    def delete_certificate(self, app, hostname):
        if self.down:
            raise UpstreamUnavailable("fly")
        self.certs.pop((app, hostname), None)


@pytest.fixture
def env():
    users = FakeUsers()
    for principal, plan in ((TEAM, "team"), (PRO, "pro"), (FREE, "free"), (RIVAL, "team")):
        users.users[principal.user_id] = User(principal.user_id, 1, principal.user_id, None, None, None, plan, NOW)
    workspaces = FakeWorkspaces()
    guards, dns, compute, clock = FakeGuards(workspaces), FakeDns(), FakeCompute(), Clock(NOW)
    service = DomainService(workspaces=workspaces, guards=guards, checker=dns, compute_for={"fly": compute}.__getitem__,
                            users=users, clock=clock)
    return {"service": service, "workspaces": workspaces, "guards": guards, "dns": dns, "compute": compute,
            "clock": clock, "users": users, "ws": workspaces.add(1, TEAM.user_id)}


def publish(env, view, *, txt=True, cname=True):
    txt_record, cname_record = view["records"]
    if txt:
        env["dns"].txt.setdefault(txt_record["name"], []).append(txt_record["value"])
    if cname:
        env["dns"].cname[cname_record["name"]] = cname_record["value"]


# -- plan gate ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("principal,plan", [(FREE, "free"), (PRO, "pro")])
def test_below_team_a_claim_is_402_feature_not_available(env, principal, plan):
    ws = env["workspaces"].add(7, principal.user_id)
    with pytest.raises(PaymentRequired) as caught:
        env["service"].claim(principal, ws, {"domain": DOMAIN})
    assert caught.value.body() == {"error": caught.value.message, "code": "FEATURE_NOT_AVAILABLE",
                                   "feature": "custom_domains", "required_plan": "team", "plan": plan}
    assert env["guards"].guards == {} and env["workspaces"].domain(ws) is None


def test_on_team_a_claim_answers_the_records_to_publish(env):
    view = env["service"].claim(TEAM, env["ws"], {"domain": "App.Customer.DEV."})
    token = env["guards"].guards[DOMAIN].token
    assert is_ownership_token(token)
    assert view == {
        "domain": DOMAIN, "status": "pending",
        "records": [{"type": "TXT", "name": CHALLENGE, "value": token},
                    {"type": "CNAME", "name": DOMAIN, "value": env["workspaces"].get(env["ws"]).host}],
        "expires_at": NOW + UNVERIFIED_CLAIM_TTL_SECONDS, "verified_at": None,
        "checks": {"txt": False, "cname": False}, "checked_at": None,
    }
    assert env["workspaces"].domain(env["ws"])["token"] == token
    assert env["service"].claim(TEAM, env["ws"], {"domain": DOMAIN}) == view  # the same claim again


@pytest.mark.parametrize("body", [{}, {"domain": "localhost"}, {"domain": "10.0.0.1"}, {"domain": "*.x.dev"},
                                  {"domain": "https://x.dev/"}, None, "x.dev"])
def test_a_bad_domain_is_400(env, body):
    with pytest.raises(ValidationFailed) as caught:
        env["service"].claim(TEAM, env["ws"], body)
    assert caught.value.code == "DOMAIN_INVALID"


def test_another_domain_while_one_is_set_is_409(env):
    env["service"].claim(TEAM, env["ws"], {"domain": DOMAIN})
    with pytest.raises(Conflict) as caught:
        env["service"].claim(TEAM, env["ws"], {"domain": "other.customer.dev"})
    assert caught.value.code == "DOMAIN_ALREADY_SET"


def test_a_workspace_without_a_host_or_being_deleted_takes_no_claim(env):
    for n, kwargs in ((2, {"status": "provisioning", "host": False}), (3, {"status": "deleting"})):
        ws = env["workspaces"].add(n, TEAM.user_id, **kwargs)
        with pytest.raises(WorkspaceStateConflict):
            env["service"].claim(TEAM, ws, {"domain": DOMAIN})
    assert env["guards"].guards == {}


# -- verify -------------------------------------------------------------------------------------------

def test_verify_reports_a_missing_txt_then_a_wrong_cname_then_verifies_and_issues(env):
    service, ws = env["service"], env["ws"]
    view = service.claim(TEAM, ws, {"domain": DOMAIN})

    checked = service.verify(TEAM, ws)
    assert checked["status"] == "pending" and checked["checks"] == {"txt": False, "cname": False}
    assert checked["reasons"] == ["TXT_MISSING", "CNAME_MISSING"]

    publish(env, view, cname=False)
    env["dns"].cname[DOMAIN] = "ws-someone-else.fly.dev"
    checked = service.verify(TEAM, ws)
    assert checked["status"] == "pending" and checked["checks"] == {"txt": True, "cname": False}
    assert checked["reasons"] == ["CNAME_MISMATCH"]
    assert env["compute"].certs == {} and not env["guards"].guards[DOMAIN].verified

    env["dns"].cname[DOMAIN] = env["workspaces"].get(ws).host.upper() + "."  # DNS names are case-insensitive
    env["clock"].advance(30)
    checked = service.verify(TEAM, ws)
    assert checked["status"] == "issuing" and checked["checks"] == {"txt": True, "cname": True}
    assert checked["verified_at"] == NOW + 30 and checked["expires_at"] is None and "reasons" not in checked
    guard = env["guards"].guards[DOMAIN]
    assert guard.verified and guard.expires_at is None
    app = env["workspaces"].get(ws).app_name
    assert env["compute"].certs == {(app, DOMAIN): "pending"}

    assert service.verify(TEAM, ws)["status"] == "issuing"  # the provider is not done yet
    env["compute"].certs[(app, DOMAIN)] = "active"
    assert service.verify(TEAM, ws)["status"] == "active"
    assert env["workspaces"].domain(ws)["status"] == "active"
    assert env["compute"].requests == 1


def test_a_txt_of_another_claim_proves_nothing(env):
    view = env["service"].claim(TEAM, env["ws"], {"domain": DOMAIN})
    env["dns"].txt[CHALLENGE] = ["relay-domain-verification=" + "a" * 32, view["records"][0]["value"] + "x"]
    publish(env, view, txt=False)
    checked = env["service"].verify(TEAM, env["ws"])
    assert checked["status"] == "pending" and checked["reasons"] == ["TXT_MISMATCH"]


def test_a_provider_refusal_fails_and_verify_again_requests_a_fresh_certificate(env):
    service, ws = env["service"], env["ws"]
    publish(env, service.claim(TEAM, ws, {"domain": DOMAIN}))
    env["compute"].refuse = True
    failed = service.verify(TEAM, ws)
    assert failed["status"] == "failed" and failed["error"]["code"] == "COMPUTE_PROVIDER_REJECTED"
    env["compute"].refuse = False
    assert service.verify(TEAM, ws)["status"] == "issuing"
    app = env["workspaces"].get(ws).app_name
    env["compute"].certs[(app, DOMAIN)] = "failed"
    assert service.verify(TEAM, ws)["status"] == "failed"
    assert service.verify(TEAM, ws)["status"] == "issuing"  # the failed one deleted, a new one requested
    assert env["compute"].requests == 2


def test_an_unreachable_provider_leaves_the_claim_verified_for_the_next_verify(env):
    service, ws = env["service"], env["ws"]
    publish(env, service.claim(TEAM, ws, {"domain": DOMAIN}))
    env["compute"].down = True
    assert service.verify(TEAM, ws)["status"] == "verified"
    env["compute"].down = False
    assert service.reconcile(env["workspaces"].get(ws)) == "issuing"


def test_an_unreachable_resolver_is_503_and_changes_nothing(env):
    service, ws = env["service"], env["ws"]
    service.claim(TEAM, ws, {"domain": DOMAIN})
    before = env["workspaces"].domain(ws)
    env["dns"].down = True
    with pytest.raises(DependencyUnavailable):
        service.verify(TEAM, ws)
    assert env["workspaces"].domain(ws) == before


def test_verify_without_a_domain_is_404(env):
    with pytest.raises(NotFound) as caught:
        env["service"].verify(TEAM, env["ws"])
    assert caught.value.code == "DOMAIN_NOT_FOUND"


def test_verify_after_a_downgrade_is_402(env):
    env["service"].claim(TEAM, env["ws"], {"domain": DOMAIN})
    env["users"].users[TEAM.user_id] = replace(env["users"].users[TEAM.user_id], plan="pro")
    with pytest.raises(PaymentRequired):
        env["service"].verify(TEAM, env["ws"])
    env["service"].remove(TEAM, env["ws"])  # removing always works
    assert env["workspaces"].domain(env["ws"]) is None


# -- squatting ------------------------------------------------------------------------------------------

def test_an_expired_unverified_claim_of_another_user_never_blocks_the_real_owner(env):
    service = env["service"]
    squatter_ws = env["workspaces"].add(9, RIVAL.user_id)
    service.claim(RIVAL, squatter_ws, {"domain": DOMAIN})
    env["clock"].advance(UNVERIFIED_CLAIM_TTL_SECONDS + 1)

    view = service.claim(TEAM, env["ws"], {"domain": DOMAIN})
    assert env["guards"].guards[DOMAIN].workspace_id == env["ws"]
    publish(env, view)
    assert service.verify(TEAM, env["ws"])["status"] == "issuing"
    with pytest.raises(Conflict) as caught:  # the squatter's stale claim is over
        service.verify(RIVAL, squatter_ws)
    assert caught.value.code == "DOMAIN_TAKEN"
    assert env["workspaces"].domain(squatter_ws) is None


def test_a_live_unverified_claim_of_another_user_never_blocks_the_real_owner_either(env):
    service = env["service"]
    squatter_ws = env["workspaces"].add(9, RIVAL.user_id)
    service.claim(RIVAL, squatter_ws, {"domain": DOMAIN})
    view = service.claim(TEAM, env["ws"], {"domain": DOMAIN})  # recorded on the workspace, guard untouched
    assert view["status"] == "pending" and env["guards"].guards[DOMAIN].workspace_id == squatter_ws
    publish(env, view)
    assert service.verify(TEAM, env["ws"])["status"] == "issuing"  # the DNS proof takes the guard
    assert env["guards"].guards[DOMAIN].workspace_id == env["ws"]


def test_a_verified_claim_of_another_workspace_is_409_domain_taken(env):
    service = env["service"]
    publish(env, service.claim(TEAM, env["ws"], {"domain": DOMAIN}))
    service.verify(TEAM, env["ws"])
    env["clock"].advance(10 * UNVERIFIED_CLAIM_TTL_SECONDS)
    for principal, n in ((RIVAL, 9), (TEAM, 10)):  # another user, or the same user's other workspace
        other = env["workspaces"].add(n, principal.user_id)
        with pytest.raises(Conflict) as caught:
            service.claim(principal, other, {"domain": DOMAIN})
        assert caught.value.code == "DOMAIN_TAKEN"
        assert env["workspaces"].domain(other) is None


def test_a_guard_left_by_a_deleted_workspace_does_not_block_the_name(env):
    service = env["service"]
    gone = env["workspaces"].add(9, RIVAL.user_id)
    publish(env, service.claim(RIVAL, gone, {"domain": DOMAIN}))
    service.verify(RIVAL, gone)
    del env["workspaces"].items[gone]  # deleted without its teardown releasing the guard
    service.claim(TEAM, env["ws"], {"domain": DOMAIN})
    assert env["guards"].guards[DOMAIN].workspace_id == env["ws"]


# -- remove, teardown, tenancy ---------------------------------------------------------------------------

def test_remove_deletes_the_certificate_the_guard_and_the_map(env):
    service, ws = env["service"], env["ws"]
    publish(env, service.claim(TEAM, ws, {"domain": DOMAIN}))
    service.verify(TEAM, ws)
    assert env["compute"].certs
    service.remove(TEAM, ws)
    assert env["compute"].certs == {} and env["guards"].guards == {} and env["workspaces"].domain(ws) is None
    service.remove(TEAM, ws)  # nothing left: still fine
    other = env["workspaces"].add(9, RIVAL.user_id)
    assert service.claim(RIVAL, other, {"domain": DOMAIN})["status"] == "pending"


def test_remove_with_the_provider_down_keeps_the_claim(env):
    service, ws = env["service"], env["ws"]
    service.claim(TEAM, ws, {"domain": DOMAIN})
    env["compute"].down = True
    with pytest.raises(DependencyUnavailable):
        service.remove(TEAM, ws)
    assert env["workspaces"].domain(ws) is not None and DOMAIN in env["guards"].guards


def test_teardown_frees_the_name(env):
    service, ws = env["service"], env["ws"]
    publish(env, service.claim(TEAM, ws, {"domain": DOMAIN}))
    service.verify(TEAM, ws)
    service.teardown(env["workspaces"].get(ws))
    assert env["guards"].guards == {} and env["compute"].certs == {}


def test_another_users_workspace_is_404_on_every_route(env):
    service = env["service"]
    service.claim(TEAM, env["ws"], {"domain": DOMAIN})
    for call in (lambda: service.claim(RIVAL, env["ws"], {"domain": "x.customer.dev"}),
                 lambda: service.verify(RIVAL, env["ws"]), lambda: service.remove(RIVAL, env["ws"]),
                 lambda: service.claim(FREE, env["ws"], {"domain": "x.customer.dev"}),
                 lambda: service.verify(TEAM, "ws_" + "0" * 20), lambda: service.remove(TEAM, None)):
        with pytest.raises(NotFound) as caught:
            call()
        assert caught.value.code == "WORKSPACE_NOT_FOUND"
    assert env["workspaces"].domain(env["ws"])["domain"] == DOMAIN


def test_the_fakes_keep_the_guard_condition():
    """Guard against the fake drifting from the adapter: a live unverified claim refuses a plain claim."""
    workspaces = FakeWorkspaces()
    a, b = workspaces.add(1, "u1"), workspaces.add(2, "u2")
    guards = FakeGuards(workspaces)
    token = "relay-domain-verification=" + "a" * 32
    first = DomainGuard(DOMAIN, a, "u1", token, False, NOW, expires_at=NOW + 10)
    guards.claim(first, {"domain": DOMAIN, "token": token}, now=NOW)
    with pytest.raises(GuardHeld):
        guards.claim(replace(first, workspace_id=b, user_id="u2"), {"domain": DOMAIN, "token": token}, now=NOW + 10)


# -- the workspace's own provider (Fly or Railway) ------------------------------------------------------

RAILWAY_HOST = "agent-host-production-1a2b.up.railway.app"


def railway_workspace(env, n: int = 5) -> str:
    """A Railway workspace as the provisioning leaves it: the service domain recorded by the ips step."""
    ws = env["workspaces"].add(n, TEAM.user_id)
    env["workspaces"].items[ws] = replace(
        env["workspaces"].items[ws], compute="railway", host=RAILWAY_HOST,
        resources={"ips": [{"address": RAILWAY_HOST, "type": "domain"}], "machine_id": "svc_1"})
    return ws


@pytest.fixture
def two_computes(env):
    railway = FakeCompute()
    env["service"].compute_for = {"fly": env["compute"], "railway": railway}.__getitem__
    env["railway"] = railway
    return env


def test_a_railway_workspace_points_its_domain_at_the_service_domain_and_its_certificate_is_railways(two_computes):
    env = two_computes
    service, ws = env["service"], railway_workspace(env)
    view = service.claim(TEAM, ws, {"domain": DOMAIN})
    assert view["records"][1] == {"type": "CNAME", "name": DOMAIN, "value": RAILWAY_HOST}
    publish(env, view)
    assert service.verify(TEAM, ws)["status"] == "issuing"
    app = env["workspaces"].get(ws).app_name
    assert env["railway"].certs == {(app, DOMAIN): "pending"} and env["compute"].certs == {}

    env["railway"].certs[(app, DOMAIN)] = "active"
    assert service.verify(TEAM, ws)["status"] == "active"
    service.teardown(env["workspaces"].get(ws))
    assert env["railway"].certs == {} and env["guards"].guards == {}


def test_a_fly_workspace_keeps_its_certificate_at_fly_when_railway_is_offered_too(two_computes):
    env = two_computes
    service, ws = env["service"], env["ws"]
    publish(env, service.claim(TEAM, ws, {"domain": DOMAIN}))
    service.verify(TEAM, ws)
    assert list(env["compute"].certs) == [(env["workspaces"].get(ws).app_name, DOMAIN)] and env["railway"].certs == {}
    service.remove(TEAM, ws)
    assert env["compute"].certs == {}
