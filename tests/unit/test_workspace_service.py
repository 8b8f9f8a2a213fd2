"""The workspace service with in-memory fakes (docs/design/workspaces.md): create's validation and plan
limit, the workflow it starts, tenancy, the lifecycle's state machine, and the reconcile schedule moving
statuses to what the provider reports while metering compute seconds on a controllable clock."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from relay_cloud.adapters.providers import UpstreamUnavailable
from relay_cloud.domain.auth import Principal
from relay_cloud.domain.compute import DEFAULT_SIZES, app_name_for, parse_sizes
from relay_cloud.domain.errors import Conflict, DependencyUnavailable, NotFound, PaymentRequired, ValidationFailed
from relay_cloud.domain.plans import LimitReached
from relay_cloud.domain.workspaces import (
    DELETING,
    ERROR,
    EVENT_CURSOR,
    PROVISIONING,
    RECONCILED,
    RUNNING,
    STOPPED,
    TRANSITION_GRACE_SECONDS,
    WorkspaceEvent,
    WorkspaceNotFound,
    WorkspaceStateConflict,
)
from relay_cloud.services.workspaces import WorkspaceService
from tests.fakes import Clock, FakeAudit

ALICE = Principal(user_id="usr_alice", session_id="s1", csrf_token="c1")
BOB = Principal(user_id="usr_bob", session_id="s2", csrf_token="c2")
REPO_A, REPO_B = "repo_" + "a" * 24, "repo_" + "b" * 24


class FakeWorkspaces:
    """The repository's semantics in memory: the plan slot counter, conditional status writes, repos."""

    def __init__(self, repos: dict[str, tuple[str, str | None]]):
        self.items, self.events_of, self.slots = {}, {}, {}
        self.repos = repos  # repo_id → (owner, attached workspace id)

    def _check_repos(self, user_id, repo_ids):
        for repo_id in repo_ids:
            owner, attached = self.repos.get(repo_id, (None, None))
            if owner != user_id:
                raise NotFound("No such repository", code="REPO_NOT_FOUND")
            if attached is not None:
                raise Conflict("in use", code="REPO_IN_USE")

    def create(self, workspace, *, limit):
        if limit is not None and self.slots.get(workspace.user_id, 0) >= limit:
            raise LimitReached("workspaces", limit)
        self._check_repos(workspace.user_id, workspace.repo_ids)
        for repo_id in workspace.repo_ids:
            self.repos[repo_id] = (workspace.user_id, workspace.workspace_id)
        self.slots[workspace.user_id] = self.slots.get(workspace.user_id, 0) + 1
        self.items[workspace.workspace_id] = workspace

    def get(self, workspace_id):
        return self.items.get(workspace_id)

    def owned_by(self, user_id):
        return sorted((w for w in self.items.values() if w.user_id == user_id), key=lambda w: w.created_at)

    def reconcilable(self):
        return [w for w in self.items.values() if w.status in RECONCILED]

    def update(self, workspace_id, *, expected_status, now, add_compute_seconds=0, **changes):
        current = self.items.get(workspace_id)
        if current is None:
            raise WorkspaceNotFound()
        expected = (expected_status,) if isinstance(expected_status, str) else tuple(expected_status)
        if current.status not in expected:
            raise WorkspaceStateConflict(current.status)
        updated = replace(current, updated_at=now, compute_seconds=current.compute_seconds + add_compute_seconds,
                          **changes)
        self.items[workspace_id] = updated
        return updated

    def set_resource(self, workspace_id, key, value):
        current = self.items[workspace_id]
        self.items[workspace_id] = replace(current, resources={**current.resources, key: value})

    def fail(self, workspace_id, error, now, *, expected_status=PROVISIONING):
        current = self.items[workspace_id]
        if current.slot_held:
            self.slots[current.user_id] -= 1
        self.items[workspace_id] = replace(current, status=ERROR, error=error, slot_held=False, updated_at=now)
        return self.items[workspace_id]

    def attach(self, workspace_id, user_id, repo_ids, *, max_repos, now):
        current = self.items.get(workspace_id)
        if current is None or current.user_id != user_id:
            raise WorkspaceNotFound()
        new = [r for r in repo_ids if r not in current.repo_ids]
        self._check_repos(user_id, new)
        for repo_id in new:
            self.repos[repo_id] = (user_id, workspace_id)
        self.items[workspace_id] = replace(current, repo_ids=current.repo_ids + tuple(new), updated_at=now)
        return self.items[workspace_id]

    def events(self, workspace_id, after, limit):
        found = [e for e in self.events_of.get(workspace_id, []) if after is None or e.cursor > after][:limit]
        return found, (found[-1].cursor if found else after)


class FakeCompute:
    """Machines by (app, id) with a state the test moves; can refuse the next call as unreachable."""

    provider = "fly"

    def __init__(self):
        self.machines = {}
        self.unreachable = False

    def _reach(self):
        if self.unreachable:
            raise UpstreamUnavailable("fly")

    def machine_state(self, app, machine_id):
        self._reach()
        return self.machines.get((app, machine_id))

    def start(self, app, machine_id):
        self._reach()
        if self.machines[(app, machine_id)] == "stopped":
            self.machines[(app, machine_id)] = "starting"
        return self.machines[(app, machine_id)]

    def stop(self, app, machine_id):
        self._reach()
        if self.machines[(app, machine_id)] == "started":
            self.machines[(app, machine_id)] = "stopping"
        return self.machines[(app, machine_id)]

    def restart(self, app, machine_id):
        self._reach()
        self.machines[(app, machine_id)] = "starting"
        return "starting"


class FakeWorkflow:
    """Step Functions' naming rule for Standard executions: the same name and input while it runs answers
    the same execution; a name whose execution has closed cannot be used again (ExecutionAlreadyExists,
    which the adapter raises as DependencyUnavailable)."""

    def __init__(self, name: str):
        self.name, self.executions, self.stopped, self.down = name, {}, [], False
        self.statuses: dict[str, str] = {}  # execution name → RUNNING | SUCCEEDED | FAILED | ABORTED

    def _arn(self, name):
        return f"arn:aws:states:us-east-1:1:execution:{self.name}:{name}"

    def start(self, name, payload):
        if self.down:
            raise DependencyUnavailable("The workflow could not be started", code="WORKFLOW_UNAVAILABLE")
        if name in self.executions:
            if self.statuses[name] == "RUNNING" and self.executions[name] == payload:
                return self._arn(name)
            raise DependencyUnavailable("The workflow could not be started", code="WORKFLOW_UNAVAILABLE")
        self.executions[name] = payload
        self.statuses[name] = "RUNNING"
        return self._arn(name)

    def status(self, execution_arn):
        return self.statuses.get(execution_arn.rsplit(":", 1)[-1])

    def finish(self, execution_arn, status):
        self.statuses[execution_arn.rsplit(":", 1)[-1]] = status

    def stop(self, execution_arn, *, cause):
        self.stopped.append(execution_arn)


@pytest.fixture
def world():
    clock = Clock()
    users = {ALICE.user_id: SimpleNamespace(plan="free"), BOB.user_id: SimpleNamespace(plan="pro")}
    store = FakeWorkspaces({REPO_A: (ALICE.user_id, None), REPO_B: (BOB.user_id, None)})
    compute = FakeCompute()
    service = WorkspaceService(
        workspaces=store, users=SimpleNamespace(get=users.get),
        usage=SimpleNamespace(used=lambda user_id, resource: store.slots.get(user_id, 0)),
        compute_for={"fly": compute}.__getitem__,  # a Fly-only deployment; two_computes adds Railway
        provisioning=FakeWorkflow("provision"), teardown=FakeWorkflow("teardown"),
        registry=SimpleNamespace(get=lambda p: p if p in ("anthropic", "openai", "github") else None),
        sizes=parse_sizes(None), region="iad", public_url="https://relay.test", audit=FakeAudit(), clock=clock,
    )
    return SimpleNamespace(service=service, store=store, compute=compute, clock=clock, users=users)


def running(world, principal=ALICE, **body) -> dict:
    """A workspace the (fake) provisioning workflow finished: machine started, status running."""
    created = world.service.create(principal, {"name": "dev", **body})
    workspace_id = created["id"]
    app = world.store.get(workspace_id).app_name
    world.store.set_resource(workspace_id, "machine_id", "m1")
    world.compute.machines[(app, "m1")] = "started"
    world.store.update(workspace_id, expected_status=PROVISIONING, now=int(world.clock()), status=RUNNING,
                       running_since=int(world.clock()))
    return world.store.get(workspace_id)


# -- create --------------------------------------------------------------------------------------

def test_create_answers_provisioning_and_starts_the_workflow_with_ids_only(world):
    created = world.service.create(ALICE, {"name": "  my box ", "repo_ids": [REPO_A], "providers": ["anthropic"]})
    assert created["status"] == PROVISIONING and created["name"] == "my box" and created["size"] == "small"
    assert created["compute"] == "fly" and created["region"] == "iad" and created["repo_ids"] == [REPO_A]
    assert created["id"].startswith("ws_") and created["host"] == f"{app_name_for(created['id'])}.fly.dev"
    assert set(created) == {"id", "name", "status", "compute", "region", "size", "repo_ids", "providers", "host",
                            "error", "created_at", "updated_at", "running_since", "compute_seconds", "domain"}
    assert world.service.provisioning.executions == {
        created["id"]: {"workspace_id": created["id"], "user_id": ALICE.user_id}}
    stored = world.store.get(created["id"])
    assert stored.execution_arn.endswith(created["id"]) and world.store.repos[REPO_A] == (ALICE.user_id, created["id"])


@pytest.mark.parametrize("body, code", [
    ({}, "INVALID_WORKSPACE_NAME"),
    ({"name": ""}, "INVALID_WORKSPACE_NAME"),
    ({"name": "x" * 65}, "INVALID_WORKSPACE_NAME"),
    ({"name": "bad\nname"}, "INVALID_WORKSPACE_NAME"),
    ({"name": 7}, "INVALID_WORKSPACE_NAME"),
    ({"name": "ok", "size": "huge"}, "INVALID_SIZE"),
    ({"name": "ok", "compute": "aws"}, "INVALID_COMPUTE"),
    ({"name": "ok", "providers": ["nope"]}, "PROVIDER_NOT_FOUND"),
    ({"name": "ok", "providers": "anthropic"}, "VALIDATION_FAILED"),
    ({"name": "ok", "repo_ids": ["not-a-repo"]}, "VALIDATION_FAILED"),
    ({"name": "ok", "repo_ids": [f"repo_{n:024x}" for n in range(26)]}, "VALIDATION_FAILED"),
])
def test_create_refuses_bad_input_with_a_code_and_stores_nothing(world, body, code):
    with pytest.raises(ValidationFailed) as refused:
        world.service.create(ALICE, body)
    assert refused.value.code == code
    assert world.store.items == {} and world.service.provisioning.executions == {}


def test_create_over_the_plan_limit_is_402_with_the_usage(world):
    world.service.create(ALICE, {"name": "first"})
    with pytest.raises(PaymentRequired) as limited:
        world.service.create(ALICE, {"name": "second"})
    assert limited.value.body() | {} == {
        "error": limited.value.message, "code": "PLAN_LIMIT_EXCEEDED", "resource": "workspaces", "limit": 1,
        "used": 1, "plan": "free", "upgrade_url": "https://relay.test/pricing"}
    assert len(world.store.items) == 1


def test_create_with_another_users_or_attached_repo_is_refused(world):
    with pytest.raises(NotFound) as foreign:
        world.service.create(ALICE, {"name": "x", "repo_ids": [REPO_B]})
    assert foreign.value.code == "REPO_NOT_FOUND"
    world.service.create(BOB, {"name": "b", "repo_ids": [REPO_B]})
    with pytest.raises(Conflict) as in_use:
        world.service.create(BOB, {"name": "b2", "repo_ids": [REPO_B]})
    assert in_use.value.code == "REPO_IN_USE"


def test_a_workflow_that_cannot_start_fails_the_workspace_and_frees_the_slot(world):
    world.service.provisioning.down = True
    with pytest.raises(DependencyUnavailable):
        world.service.create(ALICE, {"name": "x"})
    [workspace] = world.store.items.values()
    assert workspace.status == ERROR and workspace.error["step"] == "start"
    assert world.store.slots[ALICE.user_id] == 0


# -- reads and tenancy ---------------------------------------------------------------------------

def test_list_get_rename_and_usage(world):
    created = world.service.create(ALICE, {"name": "one"})
    listed = world.service.list(ALICE)
    assert [w["id"] for w in listed["workspaces"]] == [created["id"]]
    assert listed["usage"] == {"used": 1, "limit": 1, "plan": "free"}
    assert world.service.list(BOB) == {"workspaces": [], "usage": {"used": 0, "limit": 5, "plan": "pro"}}
    world.clock.advance(10)
    renamed = world.service.rename(ALICE, created["id"], {"name": "renamed"})
    assert renamed["name"] == "renamed" and renamed["updated_at"] == created["updated_at"] + 10
    assert world.service.get(ALICE, created["id"])["name"] == "renamed"


def test_another_user_gets_404_on_every_operation(world):
    workspace = running(world)
    workspace_id = workspace.workspace_id
    calls = [
        lambda: world.service.get(BOB, workspace_id),
        lambda: world.service.rename(BOB, workspace_id, {"name": "mine"}),
        lambda: world.service.delete(BOB, workspace_id),
        lambda: world.service.start(BOB, workspace_id),
        lambda: world.service.stop(BOB, workspace_id),
        lambda: world.service.restart(BOB, workspace_id),
        lambda: world.service.events(BOB, workspace_id, {}),
        lambda: world.service.attach_repos(BOB, workspace_id, {"repo_ids": [REPO_B]}),
        lambda: world.service.get(ALICE, "ws_not_an_id"),
        lambda: world.service.get(ALICE, "ws_" + "0" * 20),
    ]
    for call in calls:
        with pytest.raises(WorkspaceNotFound):
            call()
    assert world.store.get(workspace_id) == workspace  # nothing changed


def test_events_page_and_cursor_rules(world):
    created = world.service.create(ALICE, {"name": "x"})
    events = [WorkspaceEvent(f"EVENT#{1_800_000_000_000 + n:013d}#abcd", "app", "succeeded", "ok", n)
              for n in range(3)]
    world.store.events_of[created["id"]] = events
    page = world.service.events(ALICE, created["id"], {"limit": "2"})
    assert [e["id"] for e in page["events"]] == [events[0].cursor, events[1].cursor]
    assert EVENT_CURSOR.match(page["cursor"])
    rest = world.service.events(ALICE, created["id"], {"after": page["cursor"]})
    assert [e["id"] for e in rest["events"]] == [events[2].cursor]
    for params in ({"after": "WORKSPACE"}, {"limit": "0"}, {"limit": "x"}, {"limit": "501"}):
        with pytest.raises(ValidationFailed):
            world.service.events(ALICE, created["id"], params)


def test_attach_repos_validates_and_attaches(world):
    created = world.service.create(ALICE, {"name": "x"})
    with pytest.raises(ValidationFailed):
        world.service.attach_repos(ALICE, created["id"], {"repo_ids": []})
    attached = world.service.attach_repos(ALICE, created["id"], {"repo_ids": [REPO_A, REPO_A]})
    assert attached["repo_ids"] == [REPO_A]


# -- lifecycle -----------------------------------------------------------------------------------

def test_stop_start_restart_follow_the_state_machine(world):
    workspace = running(world)
    workspace_id, app = workspace.workspace_id, workspace.app_name
    with pytest.raises(WorkspaceStateConflict) as refused:
        world.service.start(ALICE, workspace_id)  # already running
    assert refused.value.body()["status"] == RUNNING and refused.value.status == 409

    assert world.service.stop(ALICE, workspace_id)["status"] == "stopping"
    with pytest.raises(WorkspaceStateConflict):
        world.service.restart(ALICE, workspace_id)
    world.clock.advance(120)
    world.compute.machines[(app, "m1")] = "stopped"
    # A read of a transitional workspace asks the provider once: the UI sees the stop finish at once.
    stopped = world.service.get(ALICE, workspace_id)
    assert stopped["status"] == STOPPED and stopped["running_since"] is None and stopped["compute_seconds"] == 120

    assert world.service.start(ALICE, workspace_id)["status"] == "starting"
    world.clock.advance(30)
    world.compute.machines[(app, "m1")] = "started"
    started = world.service.get(ALICE, workspace_id)
    assert started["status"] == RUNNING and started["running_since"] == int(world.clock())

    assert world.service.restart(ALICE, workspace_id)["status"] == "restarting"
    world.clock.advance(15)
    world.compute.machines[(app, "m1")] = "started"
    again = world.service.get(ALICE, workspace_id)
    # A restart keeps the running period open: the meter counts it as one.
    assert again["status"] == RUNNING and again["running_since"] == started["running_since"]


def test_an_unreachable_provider_puts_the_status_back(world):
    workspace = running(world)
    world.compute.unreachable = True
    with pytest.raises(UpstreamUnavailable):
        world.service.stop(ALICE, workspace.workspace_id)
    assert world.store.get(workspace.workspace_id).status == RUNNING


def test_a_workspace_without_a_machine_cannot_be_started(world):
    created = world.service.create(ALICE, {"name": "x"})
    world.store.update(created["id"], expected_status=PROVISIONING, now=0, status=STOPPED)
    with pytest.raises(WorkspaceStateConflict):
        world.service.start(ALICE, created["id"])


def test_delete_marks_deleting_stops_provisioning_and_starts_teardown_once_per_name(world):
    created = world.service.create(ALICE, {"name": "x"})
    provisioning_arn = world.store.get(created["id"]).execution_arn
    deleted = world.service.delete(ALICE, created["id"])
    assert deleted["status"] == DELETING
    assert world.service.provisioning.stopped == [provisioning_arn]
    teardown = world.service.teardown.executions
    first = f"{created['id']}-teardown-1"
    assert teardown == {first: {"workspace_id": created["id"], "user_id": ALICE.user_id}}
    assert world.store.get(created["id"]).execution_arn.endswith(f":{first}")
    # A repeated DELETE while it runs changes nothing: one teardown.
    assert world.service.delete(ALICE, created["id"])["status"] == DELETING
    assert list(teardown) == [first] and world.service.provisioning.stopped == [provisioning_arn]
    for action in ("start", "stop", "restart"):
        with pytest.raises(WorkspaceStateConflict):
            getattr(world.service, action)(ALICE, created["id"])
    with pytest.raises(WorkspaceStateConflict):
        world.service.rename(ALICE, created["id"], {"name": "late"})


@pytest.mark.parametrize("ended", ["FAILED", "ABORTED", "TIMED_OUT"])
def test_a_delete_after_a_teardown_ended_without_success_starts_the_next_attempt(world, ended):
    created = world.service.create(ALICE, {"name": "x"})
    world.service.delete(ALICE, created["id"])
    workflow = world.service.teardown
    workflow.finish(world.store.get(created["id"]).execution_arn, ended)
    world.store.update(created["id"], expected_status=DELETING, now=int(world.clock()),
                       error={"code": "COMPUTE_PROVIDER_REJECTED", "message": "no", "step": "teardown.volume"})

    again = world.service.delete(ALICE, created["id"])  # the name of attempt 1 cannot be used again
    assert again["status"] == DELETING and again["error"] is None
    assert list(workflow.executions) == [f"{created['id']}-teardown-1", f"{created['id']}-teardown-2"]
    assert world.store.get(created["id"]).execution_arn.endswith(f"{created['id']}-teardown-2")
    world.service.delete(ALICE, created["id"])  # attempt 2 runs: nothing new
    assert len(workflow.executions) == 2


def test_a_teardown_that_could_not_start_is_started_by_the_next_delete(world):
    created = world.service.create(ALICE, {"name": "x"})
    world.service.teardown.down = True
    with pytest.raises(DependencyUnavailable):
        world.service.delete(ALICE, created["id"])
    assert world.store.get(created["id"]).status == DELETING
    world.service.teardown.down = False
    world.service.delete(ALICE, created["id"])
    assert list(world.service.teardown.executions) == [f"{created['id']}-teardown-1"]


# -- reconcile -----------------------------------------------------------------------------------

def test_reconcile_follows_the_provider_and_meters_running_periods(world):
    workspace = running(world)
    other = running(world, BOB)
    workspace_id, app = workspace.workspace_id, workspace.app_name
    started_at = int(world.clock())

    world.clock.advance(600)
    report = world.service.reconcile()
    assert (report.checked, report.moved, report.errors) == (2, 0, 0)  # both still started

    world.compute.machines[(app, "m1")] = "stopped"  # Fly stopped it (idle, crash): no API call of ours
    world.clock.advance(300)
    report = world.service.reconcile()
    assert report.moves == [(workspace_id, RUNNING, STOPPED)]
    stopped = world.store.get(workspace_id)
    assert stopped.compute_seconds == 900 and stopped.running_since is None
    assert world.store.reconcilable() == [world.store.get(other.workspace_id)]  # at rest: no longer watched

    world.service.start(ALICE, workspace_id)
    world.compute.machines[(app, "m1")] = "started"
    world.clock.advance(60)
    world.service.reconcile()
    assert world.store.get(workspace_id).status == RUNNING
    assert world.store.get(workspace_id).running_since == int(world.clock())
    assert started_at < world.store.get(workspace_id).running_since

    del world.compute.machines[(app, "m1")]  # gone at the provider
    world.clock.advance(100)
    world.service.reconcile()
    gone = world.store.get(workspace_id)
    assert gone.status == ERROR and gone.error["code"] == "MACHINE_GONE" and gone.compute_seconds == 1000


def test_reconcile_waits_for_a_transition_then_believes_the_provider(world):
    workspace = running(world)
    world.service.stop(ALICE, workspace.workspace_id)
    world.compute.machines[(workspace.app_name, "m1")] = "started"  # Fly still reports started for a while
    world.clock.advance(TRANSITION_GRACE_SECONDS - 1)
    world.service.reconcile()
    assert world.store.get(workspace.workspace_id).status == "stopping"
    world.clock.advance(2)
    world.service.reconcile()  # the stop never happened: the machine runs, so does the meter
    back = world.store.get(workspace.workspace_id)
    assert back.status == RUNNING and back.running_since == workspace.running_since


def test_reconcile_skips_what_the_provider_cannot_say_and_never_overwrites_a_newer_status(world):
    workspace = running(world)
    world.compute.unreachable = True
    report = world.service.reconcile()
    assert (report.checked, report.moved, report.errors) == (1, 0, 1)
    world.compute.unreachable = False

    # The user deletes it between the reconcile's read and its write: the delete stands.
    world.compute.machines[(workspace.app_name, "m1")] = "stopped"
    original_update = world.store.update

    def racing_update(workspace_id, **kwargs):
        if world.store.items[workspace_id].status == RUNNING:
            world.store.items[workspace_id] = replace(world.store.items[workspace_id], status=DELETING)
        return original_update(workspace_id, **kwargs)

    world.store.update = racing_update
    assert world.service.reconcile().moved == 0
    assert world.store.get(workspace.workspace_id).status == DELETING


def test_sizes_default_to_the_catalog():
    assert set(parse_sizes(None)) == set(DEFAULT_SIZES)


# -- the workspace's own provider (Fly or Railway) ---------------------------------------------------

@pytest.fixture
def two_computes(world):
    """Both providers offered; each workspace's machine lives with the provider it was created on."""
    railway = FakeCompute()
    railway.provider = "railway"
    world.service.compute_for = {"fly": world.compute, "railway": railway}.__getitem__
    world.service.computes = ("fly", "railway")
    world.railway = railway
    return world


def test_railway_is_refused_unless_the_deployment_offers_it(world):
    with pytest.raises(ValidationFailed) as refused:
        world.service.create(BOB, {"name": "r", "compute": "railway"})
    assert refused.value.code == "INVALID_COMPUTE" and world.store.items == {}


def test_a_railway_workspace_starts_stops_restarts_and_reconciles_on_railway(two_computes):
    world = two_computes
    created = world.service.create(BOB, {"name": "r", "compute": "railway"})
    assert created["compute"] == "railway" and created["host"] is None  # the service domain comes later
    workspace_id = created["id"]
    app = world.store.get(workspace_id).app_name
    world.store.set_resource(workspace_id, "machine_id", "svc_1")
    world.railway.machines[(app, "svc_1")] = "started"
    world.store.update(workspace_id, expected_status=PROVISIONING, now=int(world.clock()), status=RUNNING,
                       running_since=int(world.clock()))
    fly_workspace = running(world, ALICE)  # a Fly one alongside: its machine stays Fly's

    assert world.service.stop(BOB, workspace_id)["status"] == "stopping"
    assert world.railway.machines[(app, "svc_1")] == "stopping"
    world.clock.advance(60)
    world.railway.machines[(app, "svc_1")] = "stopped"
    report = world.service.reconcile()
    assert (workspace_id, "stopping", STOPPED) in report.moves and report.errors == 0
    assert world.store.get(workspace_id).compute_seconds == 60

    assert world.service.start(BOB, workspace_id)["status"] == "starting"
    assert world.railway.machines[(app, "svc_1")] == "starting"
    world.railway.machines[(app, "svc_1")] = "started"
    assert world.service.get(BOB, workspace_id)["status"] == RUNNING  # the read asks Railway
    assert world.service.restart(BOB, workspace_id)["status"] == "restarting"
    assert world.railway.machines[(app, "svc_1")] == "starting"

    # Nothing of the Railway workspace ever reached Fly, and the Fly workspace's machine is untouched.
    assert set(world.compute.machines) == {(fly_workspace.app_name, "m1")}
    assert world.compute.machines[(fly_workspace.app_name, "m1")] == "started"
    assert set(world.railway.machines) == {(app, "svc_1")}


def test_the_workspace_answer_shows_its_domain_as_the_domain_routes_do(world):
    from relay_cloud.domain.domains import public_view

    workspace = running(world)
    stored_map = {"domain": "app.customer.dev", "status": "pending", "token": "relay-domain-verification=abc",
                  "claimed_at": 100, "expires_at": 200, "checks": {"txt": True, "cname": False},
                  "reasons": ["CNAME_MISSING"]}
    world.store.items[workspace.workspace_id] = replace(workspace, domain=stored_map)
    answered = world.service.get(ALICE, workspace.workspace_id)["domain"]
    assert answered == public_view(stored_map, workspace.host)
    assert answered["records"] == [
        {"type": "TXT", "name": "_relay-challenge.app.customer.dev", "value": "relay-domain-verification=abc"},
        {"type": "CNAME", "name": "app.customer.dev", "value": workspace.host}]
    assert "claimed_at" not in answered and "token" not in answered  # the bookkeeping stays inside
    assert world.service.list(ALICE)["workspaces"][0]["domain"] == answered
