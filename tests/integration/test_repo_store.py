"""The repositories store on moto and on DynamoDB Local (docs/design/repositories.md): the add
transaction (repo + GitHub-id guard + usage counter) under 20 concurrent writers, uniqueness per user,
removal releasing the slot, the attached-repo refusal, and an unlimited plan still counting."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.models import Item, RepoGuardItem, RepoItem, UsageItem
from relay_cloud.adapters.dynamo.repos import RepoRepository
from relay_cloud.adapters.dynamo.usage import UsageRepository
from relay_cloud.domain.errors import Conflict, DependencyUnavailable, NotFound
from relay_cloud.domain.plans import LimitReached
from relay_cloud.domain.repos import GithubRepo, Repo, RepoExists, new_repo_id

NOW = 1_800_000_000
FREE_LIMIT = 3


def repo(user_id: str, github_id: int, name: str | None = None) -> Repo:
    full_name = f"octo/{name or f'r{github_id}'}"
    github = GithubRepo(github_id, full_name, full_name.split("/")[1], "octo", github_id % 2 == 0, "main",
                        f"https://github.test/{full_name}")
    return Repo.from_github(new_repo_id(), user_id, github, added_at=NOW + github_id)


def items_of(user_id: str) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for item in Item.query(keys.user_pk(user_id), consistent_read=True):
        kinds.setdefault(item.type, []).append(item.sk)
    return kinds


def counter(user_id: str) -> int:
    return int(UsageItem.get(keys.user_pk(user_id), keys.usage_sk("repositories"), consistent_read=True).count)


def attempt(store: RepoRepository, candidate: Repo, limit: int | None) -> str:
    try:
        store.add(candidate, limit=limit)
        return "added"
    except LimitReached:
        return "limit"
    except RepoExists:
        return "exists"
    except DependencyUnavailable:  # retries exhausted under contention: the caller gets a 503, nothing stored
        return "busy"


def test_add_list_get_and_the_stored_items(backend):
    store = RepoRepository()
    first, second = repo("usr_a", 1), repo("usr_a", 2)
    store.add(first, limit=FREE_LIMIT)
    store.add(second, limit=FREE_LIMIT)
    assert store.list("usr_a") == [first, second]
    assert store.get("usr_a", first.repo_id) == first and store.get("usr_b", first.repo_id) is None
    assert store.repo_id_for_github("usr_a", 1) == first.repo_id and store.repo_id_for_github("usr_b", 1) is None
    assert items_of("usr_a") == {
        "REPO": sorted([keys.repo_sk(first.repo_id), keys.repo_sk(second.repo_id)]),
        "REPO_GUARD": ["REPOGH#1", "REPOGH#2"],
        "USAGE": ["USAGE#repositories"],
    }
    stored = RepoItem.get(keys.user_pk("usr_a"), keys.repo_sk(second.repo_id))
    assert stored.private is True and stored.attached_workspace_id is None
    assert "attached_workspace_id" not in stored.serialize()  # absent, so a workspace attach can condition on it
    assert UsageRepository().used("usr_a", "repositories") == 2 and UsageRepository().used("usr_b", "repositories") == 0


def test_the_same_github_repository_once_per_user(backend):
    store = RepoRepository()
    kept = repo("usr_a", 7)
    store.add(kept, limit=FREE_LIMIT)
    with pytest.raises(RepoExists) as again:
        store.add(repo("usr_a", 7, name="renamed"), limit=FREE_LIMIT)
    assert again.value.repo_id == kept.repo_id
    store.add(repo("usr_b", 7), limit=FREE_LIMIT)  # another user may add the same repository
    assert counter("usr_a") == 1 and len(store.list("usr_a")) == 1 and counter("usr_b") == 1


def test_twenty_concurrent_adds_on_free_store_exactly_three(backend):
    store = RepoRepository()
    candidates = [repo("usr_race", n) for n in range(1, 21)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda c: attempt(store, c, FREE_LIMIT), candidates))
    assert outcomes.count("added") == 3, outcomes
    assert set(outcomes) <= {"added", "limit", "busy"}
    stored = store.list("usr_race")
    assert len(stored) == 3 and counter("usr_race") == 3
    assert len(items_of("usr_race")["REPO_GUARD"]) == 3
    assert {r.repo_id for r in stored} == {c.repo_id for c, o in zip(candidates, outcomes) if o == "added"}


def test_twenty_concurrent_adds_of_one_repository_store_it_once(backend):
    store = RepoRepository()
    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(lambda _: attempt(store, repo("usr_same", 42), 100), range(20)))
    assert outcomes.count("added") == 1, outcomes
    assert set(outcomes) <= {"added", "exists", "busy"}
    assert len(store.list("usr_same")) == 1 and counter("usr_same") == 1


def test_remove_releases_the_slot_and_refuses_what_it_must(backend):
    store = RepoRepository()
    kept = [repo("usr_a", n) for n in (1, 2, 3)]
    for candidate in kept:
        store.add(candidate, limit=FREE_LIMIT)
    with pytest.raises(LimitReached):
        store.add(repo("usr_a", 4), limit=FREE_LIMIT)

    with pytest.raises(NotFound):
        store.remove("usr_b", kept[0].repo_id)  # another user's id is simply not in their partition
    with pytest.raises(NotFound):
        store.remove("usr_a", new_repo_id())

    store.remove("usr_a", kept[0].repo_id)
    assert counter("usr_a") == 2 and store.repo_id_for_github("usr_a", 1) is None
    with pytest.raises(NotFound):
        store.remove("usr_a", kept[0].repo_id)  # twice: nothing released twice
    assert counter("usr_a") == 2
    store.add(repo("usr_a", 4), limit=FREE_LIMIT)  # the slot is free again
    assert counter("usr_a") == 3

    RepoItem(keys.user_pk("usr_a"), keys.repo_sk(kept[1].repo_id)).update(
        actions=[RepoItem.attached_workspace_id.set("ws_123")])
    with pytest.raises(Conflict) as in_use:
        store.remove("usr_a", kept[1].repo_id)
    assert in_use.value.code == "REPO_IN_USE" and in_use.value.details["workspace_id"] == "ws_123"
    assert counter("usr_a") == 3 and store.get("usr_a", kept[1].repo_id) is not None
    assert RepoGuardItem.count(keys.user_pk("usr_a"), RepoGuardItem.sk.startswith("REPOGH#"), consistent_read=True) == 3


def test_concurrent_removes_release_once(backend):
    store = RepoRepository()
    target = repo("usr_a", 1)
    store.add(target, limit=FREE_LIMIT)
    store.add(repo("usr_a", 2), limit=FREE_LIMIT)

    def remove(_):
        try:
            store.remove("usr_a", target.repo_id)
            return "removed"
        except NotFound:
            return "gone"
        except DependencyUnavailable:
            return "busy"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(remove, range(8)))
    assert outcomes.count("removed") == 1, outcomes
    assert counter("usr_a") == 1


def test_an_unlimited_plan_still_counts(backend):
    store = RepoRepository()
    for n in range(1, 6):
        store.add(repo("usr_ent", n), limit=None)
    assert counter("usr_ent") == 5
