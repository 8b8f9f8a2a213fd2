"""The workspace store on moto and on DynamoDB Local (docs/design/workspaces.md): the create transaction
(workspace + plan slot + attached repos) under 20 concurrent creates, conditional attach, status writes
conditional on the expected status with the sparse reconcile index following them, events paging,
``fail`` releasing the slot once, and ``delete_all`` leaving nothing behind."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.models import Item, RepoItem, WorkspaceItem
from relay_cloud.adapters.dynamo.repos import RepoRepository
from relay_cloud.adapters.dynamo.workspaces import WorkspaceRepository
from relay_cloud.domain.compute import app_name_for
from relay_cloud.domain.errors import Conflict, DependencyUnavailable, NotFound, ValidationFailed
from relay_cloud.domain.plans import LimitReached
from relay_cloud.domain.repos import GithubRepo, Repo, new_repo_id
from relay_cloud.domain.workspaces import (
    DELETING,
    ERROR,
    PROVISIONING,
    RUNNING,
    STOPPED,
    STOPPING,
    Workspace,
    WorkspaceNotFound,
    WorkspaceStateConflict,
    new_workspace_id,
)

NOW = 1_800_000_000
FREE = 1


def workspace(user_id: str, *, repo_ids=(), name="dev box", created_at=NOW) -> Workspace:
    workspace_id = new_workspace_id()
    return Workspace(workspace_id=workspace_id, user_id=user_id, name=name, status=PROVISIONING, compute="fly",
                     region="iad", size="small", app_name=app_name_for(workspace_id), created_at=created_at,
                     updated_at=created_at, repo_ids=tuple(repo_ids), providers=("anthropic",))


def added_repo(user_id: str, github_id: int) -> Repo:
    github = GithubRepo(github_id, f"octo/r{github_id}", f"r{github_id}", "octo", False, "main")
    repo = Repo.from_github(new_repo_id(), user_id, github, added_at=NOW)
    RepoRepository().add(repo, limit=None)
    return repo


def slots(user_id: str) -> int:
    """The plan slots the user's workspaces hold (the usage counter, read consistently)."""
    return WorkspaceRepository().reserved_slots(user_id)


def attached(user_id: str, repo_id: str) -> str | None:
    return RepoItem.get(keys.user_pk(user_id), keys.repo_sk(repo_id), consistent_read=True).attached_workspace_id


def reconcile_ids(store: WorkspaceRepository) -> set[str]:
    return {w.workspace_id for w in store.reconcilable()}


def test_create_get_list_and_the_stored_item(backend):
    store = WorkspaceRepository()
    first, second = workspace("usr_a"), workspace("usr_a", created_at=NOW + 5, name="second")
    store.create(first, limit=5)
    store.create(second, limit=5)
    assert store.get(first.workspace_id) == first
    assert store.get("ws_00000000000000000000") is None
    assert [w.workspace_id for w in store.owned_by("usr_a")] == [first.workspace_id, second.workspace_id]
    assert store.owned_by("usr_b") == []
    assert slots("usr_a") == 2
    item = WorkspaceItem.get(keys.workspace_pk(first.workspace_id), keys.WORKSPACE_SK).serialize()
    assert "gsi2pk" not in item  # provisioning belongs to the workflow, not to the reconcile schedule
    assert item["gsi1pk"] == {"S": "OWNER#usr_a"}


def test_twenty_concurrent_creates_on_free_store_exactly_one(backend):
    store = WorkspaceRepository()

    def attempt(n: int) -> str:
        try:
            store.create(workspace("usr_race", name=f"w{n}"), limit=FREE)
            return "created"
        except LimitReached:
            return "limit"
        except DependencyUnavailable:  # retries exhausted under contention: a 503, nothing stored
            return "busy"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("created") == 1, outcomes
    assert set(outcomes) <= {"created", "limit", "busy"}
    assert len(store.owned_by("usr_race")) == 1 and slots("usr_race") == 1


def test_create_attaches_repos_conditionally_in_the_same_transaction(backend):
    store = WorkspaceRepository()
    mine, other = added_repo("usr_a", 1), added_repo("usr_b", 2)
    first = workspace("usr_a", repo_ids=[mine.repo_id])
    store.create(first, limit=5)
    assert attached("usr_a", mine.repo_id) == first.workspace_id

    with pytest.raises(Conflict) as in_use:  # already attached to the first workspace
        store.create(workspace("usr_a", repo_ids=[mine.repo_id]), limit=5)
    assert in_use.value.code == "REPO_IN_USE"
    with pytest.raises(NotFound) as foreign:  # another user's repo is not in this user's partition
        store.create(workspace("usr_a", repo_ids=[other.repo_id]), limit=5)
    assert foreign.value.code == "REPO_NOT_FOUND"
    assert attached("usr_b", other.repo_id) is None
    # Nothing of the refused creates was written: one workspace, one slot.
    assert len(store.owned_by("usr_a")) == 1 and slots("usr_a") == 1


def test_attach_appends_and_refuses_foreign_attached_or_too_many(backend):
    store = WorkspaceRepository()
    one, two, three = (added_repo("usr_a", n) for n in (1, 2, 3))
    ws, other_ws = workspace("usr_a", repo_ids=[one.repo_id]), workspace("usr_a", repo_ids=[three.repo_id])
    store.create(ws, limit=5)
    store.create(other_ws, limit=5)

    updated = store.attach(ws.workspace_id, "usr_a", [one.repo_id, two.repo_id], max_repos=5, now=NOW + 1)
    assert updated.repo_ids == (one.repo_id, two.repo_id) and updated.updated_at == NOW + 1
    assert attached("usr_a", two.repo_id) == ws.workspace_id

    with pytest.raises(Conflict) as in_use:
        store.attach(ws.workspace_id, "usr_a", [three.repo_id], max_repos=5, now=NOW + 2)
    assert in_use.value.code == "REPO_IN_USE"
    with pytest.raises(WorkspaceNotFound):  # another user's workspace
        store.attach(ws.workspace_id, "usr_b", [two.repo_id], max_repos=5, now=NOW + 2)
    with pytest.raises(NotFound) as unknown:
        store.attach(ws.workspace_id, "usr_a", [new_repo_id()], max_repos=5, now=NOW + 2)
    assert unknown.value.code == "REPO_NOT_FOUND"
    four = added_repo("usr_a", 4)
    with pytest.raises(ValidationFailed) as too_many:
        store.attach(ws.workspace_id, "usr_a", [four.repo_id], max_repos=2, now=NOW + 2)
    assert too_many.value.code == "TOO_MANY_REPOS"
    assert store.get(ws.workspace_id).repo_ids == (one.repo_id, two.repo_id)
    assert attached("usr_a", four.repo_id) is None


def test_status_writes_are_conditional_and_move_the_reconcile_index(backend):
    store = WorkspaceRepository()
    ws = workspace("usr_a")
    store.create(ws, limit=5)
    store.set_resource(ws.workspace_id, "machine_id", "m-1")
    store.set_resource(ws.workspace_id, "ips", [{"address": "fdaa::1", "type": "v6"}])

    running = store.update(ws.workspace_id, expected_status=PROVISIONING, now=NOW + 10, status=RUNNING,
                           running_since=NOW + 10, host="ws.fly.dev")
    assert running.status == RUNNING and running.running_since == NOW + 10 and running.host == "ws.fly.dev"
    assert running.resources == {"machine_id": "m-1", "ips": [{"address": "fdaa::1", "type": "v6"}]}
    assert reconcile_ids(store) == {ws.workspace_id}

    with pytest.raises(WorkspaceStateConflict) as stale:  # a second writer that still expects provisioning
        store.update(ws.workspace_id, expected_status=PROVISIONING, now=NOW + 11, status=ERROR)
    assert stale.value.current_status == RUNNING

    stopped = store.update(ws.workspace_id, expected_status=(RUNNING, STOPPING), now=NOW + 70, status=STOPPED,
                           running_since=None, add_compute_seconds=60)
    assert stopped.running_since is None and stopped.compute_seconds == 60
    assert reconcile_ids(store) == set()  # at rest: out of the sparse index
    store.set_resource(ws.workspace_id, "machine_id", None)  # deleted: the key goes
    store.set_resource(ws.workspace_id, "volume_id", None)  # never recorded: still fine
    assert store.get(ws.workspace_id).resources == {"ips": [{"address": "fdaa::1", "type": "v6"}]}
    with pytest.raises(WorkspaceNotFound):
        store.update("ws_00000000000000000000", expected_status=RUNNING, now=NOW, name="x")
    with pytest.raises(WorkspaceNotFound):
        store.set_resource("ws_00000000000000000000", "app", "ws-x")


def test_events_page_oldest_first_with_a_cursor(backend):
    store = WorkspaceRepository()
    ws = workspace("usr_a")
    store.create(ws, limit=5)
    for n, step in enumerate(["app", "ips", "volume"]):
        store.add_event(ws.workspace_id, step, "succeeded", f"{step} ready", NOW + n)
    page, cursor = store.events(ws.workspace_id, None, limit=2)
    assert [e.step for e in page] == ["app", "ips"] and cursor == page[-1].cursor
    rest, cursor2 = store.events(ws.workspace_id, cursor, limit=2)
    assert [e.step for e in rest] == ["volume"]
    assert store.events(ws.workspace_id, cursor2, limit=2) == ([], cursor2)  # the workspace item never shows


def test_fail_releases_the_slot_once(backend):
    store = WorkspaceRepository()
    ws = workspace("usr_a")
    store.create(ws, limit=FREE)
    with pytest.raises(LimitReached):
        store.create(workspace("usr_a"), limit=FREE)

    error = {"code": "START_TIMEOUT", "message": "The machine did not start", "step": "wait"}
    failed = store.fail(ws.workspace_id, error, NOW + 5)
    assert failed.status == ERROR and failed.error == error and failed.slot_held is False
    assert slots("usr_a") == 0
    assert store.fail(ws.workspace_id, error, NOW + 6).status == ERROR  # idempotent: released once
    assert slots("usr_a") == 0
    store.create(workspace("usr_a"), limit=FREE)  # the slot is free again
    assert slots("usr_a") == 1


def test_delete_all_leaves_nothing_and_releases_what_is_held(backend):
    store = WorkspaceRepository()
    repo = added_repo("usr_a", 1)
    ws = workspace("usr_a", repo_ids=[repo.repo_id])
    store.create(ws, limit=FREE)
    store.add_event(ws.workspace_id, "app", "succeeded", "ok", NOW)
    with pytest.raises(WorkspaceStateConflict):  # only after the API moved it to deleting
        store.delete_all(ws.workspace_id, "usr_a")
    store.update(ws.workspace_id, expected_status=PROVISIONING, now=NOW + 1, status=DELETING)
    with pytest.raises(WorkspaceStateConflict):  # never another user's
        store.delete_all(ws.workspace_id, "usr_b")

    store.delete_all(ws.workspace_id, "usr_a")
    assert list(Item.query(keys.workspace_pk(ws.workspace_id), consistent_read=True)) == []
    assert attached("usr_a", repo.repo_id) is None and slots("usr_a") == 0
    assert store.owned_by("usr_a") == []
    store.delete_all(ws.workspace_id, "usr_a")  # a re-run of teardown's last step is a no-op
    assert slots("usr_a") == 0


def test_delete_all_of_a_failed_workspace_does_not_release_twice(backend):
    store = WorkspaceRepository()
    store.create(workspace("usr_other"), limit=5)  # the counter must not go below what is held
    ws = workspace("usr_a")
    store.create(ws, limit=5)
    store.create(workspace("usr_a"), limit=5)
    store.fail(ws.workspace_id, {"code": "X", "message": "x", "step": "app"}, NOW)
    assert slots("usr_a") == 1
    store.update(ws.workspace_id, expected_status=ERROR, now=NOW + 1, status=DELETING)
    store.delete_all(ws.workspace_id, "usr_a")
    assert slots("usr_a") == 1 and len(store.owned_by("usr_a")) == 1
