"""ProvisioningService with in-memory fakes: the paths the workflow tests cannot reach through the Fly
sandbox's fault injection — a workspace deleted while it provisions (finish refuses, compensation cleans
up, fail leaves it to the teardown), an app whose creation was never recorded, tenancy of the execution
input, a volume still attached when compensation deletes it, and how a caught error becomes the
workspace's ``{code, message, step}``."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.domain.compute import AppRef, IpRef, MachineRef, ProviderRejected, VolumeRef, app_name_for, parse_sizes
from relay_cloud.domain.workspaces import (
    DELETING,
    ERROR,
    PROVISIONING,
    RUNNING,
    Workspace,
    WorkspaceNotFound,
    WorkspaceStateConflict,
)
from relay_cloud.services.provisioning import (
    ProvisioningCancelled,
    ProvisioningService,
    StartTimeout,
    describe_failure,
    workspace_daemon_id,
)
from relay_cloud.services.domains import DomainService
from tests.fakes import Clock

WS = "ws_0123456789abcdef0123"
USER = "usr_owner"


class FakeWorkspaces:
    def __init__(self, workspace: Workspace):
        self.items = {workspace.workspace_id: workspace}
        self.events: list[tuple[str, str, str]] = []
        self.released = 0

    def get(self, workspace_id):
        return self.items.get(workspace_id)

    def set_resource(self, workspace_id, key, value):
        ws = self._existing(workspace_id)
        self.items[workspace_id] = replace(ws, resources={**ws.resources, key: value})

    def update(self, workspace_id, *, expected_status, now, **changes):
        ws = self._existing(workspace_id)
        expected = (expected_status,) if isinstance(expected_status, str) else tuple(expected_status)
        if ws.status not in expected:
            raise WorkspaceStateConflict(ws.status)
        self.items[workspace_id] = replace(ws, updated_at=now, **changes)
        return self.items[workspace_id]

    def fail(self, workspace_id, error, now, *, expected_status=PROVISIONING):
        ws = self._existing(workspace_id)
        if ws.status != expected_status:
            raise WorkspaceStateConflict(ws.status)
        if ws.slot_held:
            self.released += 1
        self.items[workspace_id] = replace(ws, status=ERROR, error=error, slot_held=False)
        return self.items[workspace_id]

    def add_event(self, workspace_id, step, state, message, now):
        self.events.append((step, state, message))

    def _existing(self, workspace_id):
        if workspace_id not in self.items:
            raise WorkspaceNotFound()
        return self.items[workspace_id]


class FakeFly:
    """One org's apps in memory, look-first like the real client; ``refuse`` makes a method raise."""

    provider = "fly"

    def __init__(self):
        self.apps: dict[str, dict] = {}
        self.refuse: dict[str, Exception] = {}

    def _check(self, method):
        if method in self.refuse:
            raise self.refuse[method]

    def ensure_app(self, app_name, org=None):
        self._check("ensure_app")
        created = app_name not in self.apps
        self.apps.setdefault(app_name, {"machines": {}, "volumes": {}, "ips": [], "secrets": {}})
        return AppRef(app_name, "org", created)

    def ensure_ips(self, app_name):
        self.apps[app_name]["ips"] = ["v6", "shared_v4"]
        return [IpRef("fdaa::1", "v6"), IpRef("66.241.124.1", "shared_v4")]

    def ensure_volume(self, app_name, name, region, size_gb):
        self.apps[app_name]["volumes"].setdefault("vol_1", size_gb)
        return VolumeRef("vol_1", name, region, size_gb)

    def set_secrets(self, app_name, values):
        self.apps[app_name]["secrets"] = dict(values)
        return 1

    def ensure_machine(self, app_name, name, spec):
        self.apps[app_name]["machines"].setdefault("m_1", "started")
        return MachineRef("m_1", name, "created", spec.region, volume_id=spec.volume_id)

    def wait_started(self, app_name, machine_id, timeout_s=60):
        return self.apps[app_name]["machines"].get(machine_id) == "started"

    def machine_state(self, app_name, machine_id):
        return self.apps.get(app_name, {}).get("machines", {}).get(machine_id)

    def delete_machine(self, app_name, machine_id):
        self.apps.get(app_name, {}).get("machines", {}).pop(machine_id, None)

    def delete_volume(self, app_name, volume_id):
        self._check("delete_volume")
        self.apps.get(app_name, {}).get("volumes", {}).pop(volume_id, None)

    def release_ips(self, app_name):
        self._check("release_ips")
        if app_name in self.apps:
            self.apps[app_name]["ips"] = []

    def delete_app(self, app_name):
        self.apps.pop(app_name, None)

    def delete_certificate(self, app_name, hostname):  # 404 = done
        self.apps.get(app_name, {}).get("certificates", set()).discard(hostname)


class FakeRailway(FakeFly):
    """Railway behind the same interface: no IP addresses, a generated service domain instead."""

    provider = "railway"

    def ensure_ips(self, app_name):
        self.apps[app_name]["ips"] = ["domain"]
        return [IpRef(f"{app_name}-production.up.railway.app", "domain")]


class FakeGuards:
    """The DOMAIN# guard items: deleted only while they name the workspace (the adapter's condition)."""

    def __init__(self):
        self.guards = {}

    def release_guard(self, domain, workspace_id):
        if self.guards.get(domain) == workspace_id:
            del self.guards[domain]


class FakeDaemons:
    def __init__(self):
        self.items = {}

    def upsert_workspace_daemon(self, daemon, *, now):
        self.items[daemon.daemon_id] = daemon

    def revoke(self, daemon_id, *, user_id, now):
        daemon = self.items.get(daemon_id)
        if daemon is None or daemon.user_id != user_id or daemon.revoked_at is not None:
            return False
        self.items[daemon_id] = replace(daemon, revoked_at=now)
        return True


def build(status=PROVISIONING, user_id=USER, compute="fly"):
    workspace = Workspace(workspace_id=WS, user_id=user_id, name="dev", status=status, compute=compute, region="iad",
                          size="small", app_name=app_name_for(WS), created_at=1, updated_at=1,
                          providers=("anthropic",), host=f"{app_name_for(WS)}.fly.dev" if compute == "fly" else None)
    workspaces, fly, daemons, clock = FakeWorkspaces(workspace), FakeFly(), FakeDaemons(), Clock()
    service = ProvisioningService(workspaces=workspaces, compute_for={"fly": fly}.__getitem__, daemons=daemons,
                                  cloud_url="https://relay.test", image="img", region="iad", sizes=parse_sizes(""),
                                  clock=clock)
    return service, workspaces, fly, daemons, clock


def with_railway(service, fly):
    """Both providers behind ``compute_for``, and the domain service the teardown releases domains with."""
    railway = FakeRailway()
    computes = {"fly": fly, "railway": railway}
    service.compute_for = computes.__getitem__
    guards = FakeGuards()
    service.domains = DomainService(workspaces=service.workspaces, guards=guards, checker=None,
                                    compute_for=computes.__getitem__, users=None)
    return railway, guards


def provision_until(service, last: str):
    for step in ("app", "ips", "volume", "secrets", "machine", "health", "finish"):
        getattr(service, step)(WS, USER)
        if step == last:
            return


def test_a_workspace_deleted_while_provisioning_is_compensated_and_left_to_the_teardown():
    service, workspaces, fly, daemons, clock = build()
    provision_until(service, "health")
    workspaces.update(WS, expected_status=PROVISIONING, now=2, status=DELETING)  # DELETE meanwhile

    with pytest.raises(ProvisioningCancelled):
        service.finish(WS, USER)
    assert service.compensate(WS, USER, "finish") == {"compensated": True}
    assert service.fail(WS, USER, "finish", {"Error": "ProvisioningCancelled"}, {"compensated": True}) == {
        "recorded": False}
    assert fly.apps == {}
    assert daemons.items[workspace_daemon_id(WS)].revoked_at == int(clock.now)
    stored = workspaces.get(WS)
    assert stored.status == DELETING and stored.error is None and workspaces.released == 0  # the teardown's


def test_a_step_of_a_workspace_that_is_gone_or_moved_on_refuses_to_create_anything():
    service, workspaces, fly, _, _ = build(status=RUNNING)
    with pytest.raises(ProvisioningCancelled):
        service.app(WS, USER)
    workspaces.items.clear()
    with pytest.raises(ProvisioningCancelled):
        service.app(WS, USER)
    assert fly.apps == {}
    assert service.compensate(WS, USER, "app") == {"compensated": True}  # nothing to do


def test_the_execution_input_must_name_the_owner():
    service, _, fly, _, _ = build()
    with pytest.raises(WorkspaceNotFound):
        service.app(WS, "usr_someone_else")
    with pytest.raises(WorkspaceNotFound):
        service.compensate(WS, "usr_someone_else", "app")
    assert fly.apps == {}


def test_compensation_deletes_the_app_by_its_name_even_when_it_was_never_recorded():
    service, workspaces, fly, _, _ = build()
    fly.ensure_app(app_name_for(WS))  # created upstream; the answer never came back
    assert workspaces.get(WS).resources == {}
    service.compensate(WS, USER, "app")
    assert fly.apps == {}
    assert ("compensate", "compensated", "Removed: nothing was left") in workspaces.events


def test_compensation_tolerates_a_volume_still_attached_and_forgets_what_it_removed():
    service, workspaces, fly, _, _ = build()
    provision_until(service, "machine")
    fly.refuse["delete_volume"] = ProviderRejected("busy", provider="fly", upstream_status=409)
    service.compensate(WS, USER, "wait")
    assert fly.apps == {}  # the app took the volume with it
    assert {k: v for k, v in workspaces.get(WS).resources.items() if v} == {"daemon_id": workspace_daemon_id(WS)}


def test_a_failed_compensation_is_recorded_as_incomplete_cleanup_and_the_slot_released():
    service, workspaces, fly, _, _ = build()
    provision_until(service, "ips")
    fly.refuse["release_ips"] = UpstreamUnavailable("fly")
    with pytest.raises(UpstreamUnavailable):
        service.compensate(WS, USER, "volume")
    refused = {"errorType": "ProviderRejected", "errorMessage": "Fly.io refused to create the volume"}
    failure = {"Error": "ProviderRejected", "Cause": json.dumps(refused)}
    compensation = {"Error": "UpstreamUnavailable", "Cause": "{}"}
    assert service.fail(WS, USER, "volume", failure, compensation) == {"recorded": True,
                                                                      "code": "COMPUTE_PROVIDER_REJECTED"}
    stored = workspaces.get(WS)
    assert stored.status == ERROR and workspaces.released == 1
    assert stored.error == {"code": "COMPUTE_PROVIDER_REJECTED", "message": "Fly.io refused to create the volume",
                            "step": "volume", "cleanup": "incomplete"}
    assert stored.resources["app"] == app_name_for(WS)  # still recorded: the delete's teardown removes it


def test_the_wait_step_answers_not_yet_then_times_out_at_the_deadline():
    service, workspaces, fly, _, clock = build()
    provision_until(service, "secrets")
    deadline = service.machine(WS, USER, deadline_seconds=30)["deadline"]
    fly.apps[app_name_for(WS)]["machines"]["m_1"] = "starting"
    assert service.wait(WS, USER, deadline, 0, wait_seconds=1) == {"started": False, "deadline": deadline, "polls": 1}
    clock.advance(31)
    with pytest.raises(StartTimeout):
        service.wait(WS, USER, deadline, 1, wait_seconds=1)
    assert [e[:2] for e in workspaces.events if e[0] == "wait"] == [("wait", "started"), ("wait", "failed")]


def test_secrets_mint_one_daemon_and_send_only_its_key_the_private_key_and_ids():
    service, _, fly, daemons, _ = build()
    provision_until(service, "secrets")
    sent = fly.apps[app_name_for(WS)]["secrets"]
    assert sorted(sent) == ["RELAY_CLOUD_URL", "RELAY_DAEMON_KEY", "RELAY_DAEMON_PRIVATE_KEY", "RELAY_WORKSPACE_ID"]
    assert sent["RELAY_DAEMON_KEY"].startswith(f"rly_{workspace_daemon_id(WS)}_")
    (daemon,) = daemons.items.values()
    assert daemon.machine_id == WS and daemon.allowed_providers == ("anthropic",) and daemon.key_hash
    assert sent["RELAY_DAEMON_KEY"] not in repr(daemon) and sent["RELAY_DAEMON_PRIVATE_KEY"] not in repr(daemon)


@pytest.mark.parametrize("failure, expected", [
    ({"Error": "AppNameTaken", "Cause": json.dumps({"errorMessage": "The app name ws-x is taken on Fly.io"})},
     ("APP_NAME_TAKEN", "The app name ws-x is taken on Fly.io")),
    ({"Error": "States.Timeout"}, ("STEP_TIMEOUT", "A provisioning step timed out")),
    # An error we did not type may carry anything in its text: only a generic sentence is recorded.
    ({"Error": "KeyError", "Cause": json.dumps({"errorMessage": "fo1_secret_token"})},
     ("PROVISIONING_FAILED", "Provisioning failed")),
    ({"Error": "ProviderRejected", "Cause": "not json"}, ("COMPUTE_PROVIDER_REJECTED", "Provisioning failed")),
])
def test_a_caught_error_becomes_code_message_and_step(failure, expected):
    error = describe_failure(failure, "app")
    assert (error["code"], error["message"], error["step"]) == (*expected, "app")


def test_finish_marks_running_with_the_host():
    service, workspaces, _, _, clock = build()
    provision_until(service, "finish")
    stored = workspaces.get(WS)
    assert stored.status == RUNNING and stored.running_since == int(clock.now)
    assert stored.host == f"{app_name_for(WS)}.fly.dev"


# -- the workspace's own provider, and its custom domain at teardown ------------------------------------

TEARDOWN = ("teardown_domain", "teardown_machine", "teardown_volume", "teardown_ips", "teardown_app",
            "teardown_daemon")


def test_a_railway_workspace_is_provisioned_and_torn_down_on_railway_with_its_service_domain_as_host():
    service, workspaces, fly, daemons, _ = build(compute="railway")
    railway, _ = with_railway(service, fly)
    provision_until(service, "finish")
    stored = workspaces.get(WS)
    assert stored.status == RUNNING and stored.host == f"{app_name_for(WS)}-production.up.railway.app"
    assert stored.domain_target == stored.host
    assert list(railway.apps) == [app_name_for(WS)] and fly.apps == {}
    assert railway.apps[app_name_for(WS)]["machines"] == {"m_1": "started"}

    workspaces.update(WS, expected_status=RUNNING, now=2, status=DELETING)
    for step in TEARDOWN:
        getattr(service, step)(WS, USER)
    assert railway.apps == {} and fly.apps == {}
    assert daemons.items[workspace_daemon_id(WS)].revoked_at is not None


@pytest.mark.parametrize("compute", ["fly", "railway"])
def test_the_teardown_releases_the_custom_domain_first_and_a_rerun_is_harmless(compute):
    service, workspaces, fly, _, _ = build(compute=compute)
    railway, guards = with_railway(service, fly)
    provider = {"fly": fly, "railway": railway}[compute]
    provision_until(service, "finish")
    app = app_name_for(WS)
    provider.apps[app]["certificates"] = {"app.customer.dev"}
    guards.guards["app.customer.dev"] = WS
    guards.guards["other.customer.dev"] = "ws_ffffffffffffffffffff"  # another workspace's name: not ours to free
    workspaces.items[WS] = replace(workspaces.get(WS), domain={"domain": "app.customer.dev", "status": "active",
                                                               "token": "t"})
    workspaces.update(WS, expected_status=RUNNING, now=2, status=DELETING)

    assert service.teardown_domain(WS, USER) == {"step": "teardown.domain"}
    assert provider.apps[app]["certificates"] == set()
    assert guards.guards == {"other.customer.dev": "ws_ffffffffffffffffffff"}
    assert ("teardown.domain", "succeeded", "Custom domain app.customer.dev released") in workspaces.events
    service.teardown_domain(WS, USER)  # a re-run (a retried step, a second teardown attempt): nothing left
    assert guards.guards == {"other.customer.dev": "ws_ffffffffffffffffffff"}


def test_the_domain_step_of_a_workspace_without_a_domain_or_gone_does_nothing():
    service, workspaces, _, _, _ = build(status=DELETING)
    assert service.teardown_domain(WS, USER) == {"step": "teardown.domain"}
    assert ("teardown.domain", "succeeded", "No custom domain") in workspaces.events
    workspaces.items.clear()
    assert service.teardown_domain(WS, USER) == {"step": "teardown.domain", "skipped": True}
