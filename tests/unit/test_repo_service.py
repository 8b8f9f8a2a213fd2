"""The repositories service (docs/design/repositories.md) with in-memory fakes that keep the real
adapters' conditions: which GitHub token is used, adding one and many with every per-item outcome, the
plan limit's 402, removing, tenancy, and GitHub's answers (through httpx's MockTransport) in the client."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from types import SimpleNamespace

import httpx
import pytest

from relay_cloud.adapters.github_repos import GithubRepos
from relay_cloud.domain.auth import Principal, User
from relay_cloud.domain.errors import Conflict, DependencyUnavailable, NotFound, PaymentRequired, ValidationFailed
from relay_cloud.domain.plans import LimitReached
from relay_cloud.domain.repos import GithubRepo, GithubRepoPage, RepoExists, parse_full_name
from relay_cloud.services.repos import RepoService
from tests.fakes import Clock, FakeAudit, FakeVault

NOW = 1_800_000_000
ALICE, BOB = Principal("usr_alice", "s1", "c1"), Principal("usr_bob", "s2", "c2")


# -- fakes with the real repositories' conditions ----------------------------------------------------

class FakeRepos:
    """Repos, the per-user GitHub-id guard and the usage counter, changed together like the transaction."""

    def __init__(self):
        self.items, self.guards, self.counts = {}, {}, {}

    def list(self, user_id):
        return sorted((r for (uid, _), r in self.items.items() if uid == user_id), key=lambda r: r.added_at)

    def get(self, user_id, repo_id):
        return self.items.get((user_id, repo_id))

    def repo_id_for_github(self, user_id, github_id):
        return self.guards.get((user_id, github_id))

    def add(self, repo, *, limit):
        if (repo.user_id, repo.github_id) in self.guards:
            raise RepoExists(self.guards[(repo.user_id, repo.github_id)])
        if limit is not None and self.counts.get(repo.user_id, 0) >= limit:
            raise LimitReached("repositories", limit)
        self.items[(repo.user_id, repo.repo_id)] = repo
        self.guards[(repo.user_id, repo.github_id)] = repo.repo_id
        self.counts[repo.user_id] = self.counts.get(repo.user_id, 0) + 1

    def remove(self, user_id, repo_id):
        repo = self.items.get((user_id, repo_id))
        if repo is None:
            raise NotFound("No such repository", code="REPO_NOT_FOUND")
        if repo.attached_workspace_id:
            raise Conflict("attached", code="REPO_IN_USE")
        del self.items[(user_id, repo_id)]
        del self.guards[(user_id, repo.github_id)]
        self.counts[user_id] -= 1


class FakeUsage:
    def __init__(self, repos: FakeRepos):
        self.repos = repos

    def used(self, user_id, resource):
        return self.repos.counts.get(user_id, 0)


class FakeUsers:
    def __init__(self, vault: FakeVault):
        self.vault, self.users, self.sign_in = vault, {}, {}

    def add(self, principal: Principal, *, plan="free", sign_in_token: str | None = "gho_signin"):
        self.users[principal.user_id] = User(principal.user_id, 1, principal.user_id, None, None, None, plan, NOW)
        self.sign_in.pop(principal.user_id, None)
        if sign_in_token:
            self.sign_in[principal.user_id] = self.vault.seal(SimpleNamespace(user_id=principal.user_id),
                                                              sign_in_token.encode()).ciphertext

    def get(self, user_id):
        return self.users.get(user_id)

    def sign_in_ciphertext(self, user_id, provider, credential_id):
        assert (provider, credential_id) == ("github", "sign-in")
        return self.sign_in.get(user_id)


class FakeConnections:
    def __init__(self, vault: FakeVault):
        self.vault, self.items = vault, {}

    def connect_github(self, principal: Principal, token: str, *, status="valid", expires_at=None):
        sealed = self.vault.seal(SimpleNamespace(user_id=principal.user_id),
                                 json.dumps({"access_token": token, "refresh_token": "ghr_x"}).encode())
        self.items[(principal.user_id, "github")] = SimpleNamespace(
            ciphertext=sealed.ciphertext, status=status, token_expires_at=expires_at, purpose="oauth_tokens",
            method="device_flow")

    def get(self, user_id, provider):
        return self.items.get((user_id, provider))


@dataclass
class FakeGithubRepos:
    """GitHub as seen by each token: {token: {lower full name: GithubRepo}}; ``rejected`` tokens are 401."""

    visible: dict
    rejected: frozenset = frozenset()

    def _check(self, token):
        if token in self.rejected:
            raise Conflict("GitHub rejected your token; reconnect GitHub", code="GITHUB_TOKEN_INVALID")
        self.last_token = token

    def list_repos(self, token, *, page, per_page):
        self._check(token)
        repos = sorted(self.visible.get(token, {}).values(), key=lambda r: r.full_name)
        chunk = repos[(page - 1) * per_page: page * per_page]
        return GithubRepoPage(tuple(chunk), has_next=page * per_page < len(repos))

    def get_repo(self, token, owner, name):
        self._check(token)
        return self.visible.get(token, {}).get(f"{owner}/{name}".lower())


def gh(full_name: str, github_id: int, *, private=False) -> GithubRepo:
    owner, name = full_name.split("/")
    return GithubRepo(github_id, full_name, name, owner, private, "main", f"https://github.test/{full_name}")


ALICE_REPOS = {r.full_name.lower(): r for r in (gh("alice/one", 1), gh("alice/two", 2), gh("alice/three", 3),
                                                gh("alice/four", 4), gh("Org/Shared", 5))}
PRIVATE = gh("alice/secret", 6, private=True)


@pytest.fixture
def world():
    vault = FakeVault()
    repos, users, connections = FakeRepos(), FakeUsers(vault), FakeConnections(vault)
    users.add(ALICE)
    users.add(BOB, plan="pro")
    github = FakeGithubRepos({
        "gho_signin": ALICE_REPOS,
        "gho_device": {**ALICE_REPOS, PRIVATE.full_name: PRIVATE},
    })
    audit = FakeAudit()
    service = RepoService(repos=repos, usage=FakeUsage(repos), users=users, connections=connections, vault=vault,
                          github=github, public_url="https://relay.test", audit=audit, clock=Clock(NOW))
    return SimpleNamespace(service=service, repos=repos, users=users, connections=connections, github=github,
                           audit=audit)


# -- the GitHub token ----------------------------------------------------------------------------------

def test_the_github_connection_is_preferred_and_the_sign_in_token_is_the_fallback(world):
    assert world.service.github_repos(ALICE, {})["token_source"] == "sign_in"
    world.connections.connect_github(ALICE, "gho_device")
    listed = world.service.github_repos(ALICE, {"per_page": "100"})
    assert listed["token_source"] == "connection" and world.github.last_token == "gho_device"
    assert "alice/secret" in {r["full_name"] for r in listed["repositories"]}  # the repo scope sees private ones

    for unusable in ({"status": "refresh_failed"}, {"status": "revoked"}, {"expires_at": NOW - 1}):
        world.connections.connect_github(ALICE, "gho_device", **unusable)
        assert world.service.github_repos(ALICE, {})["token_source"] == "sign_in"


def test_no_usable_token_is_409_and_a_rejected_token_says_which(world):
    world.users.add(ALICE, sign_in_token=None)
    with pytest.raises(Conflict) as refused:
        world.service.github_repos(ALICE, {})
    assert refused.value.code == "GITHUB_NOT_CONNECTED"
    with pytest.raises(Conflict):
        world.service.add(ALICE, {"full_name": "alice/one"})

    world.connections.connect_github(ALICE, "gho_device")
    world.github.rejected = frozenset({"gho_device"})
    with pytest.raises(Conflict) as rejected:
        world.service.github_repos(ALICE, {})
    assert rejected.value.code == "GITHUB_TOKEN_INVALID" and rejected.value.body()["token_source"] == "connection"
    assert "gho_device" not in json.dumps(rejected.value.body())


def test_github_listing_pages_and_marks_added_repositories(world):
    status, added = world.service.add(ALICE, {"full_name": "alice/two"})
    first = world.service.github_repos(ALICE, {"page": "1", "per_page": "2"})
    assert (first["page"], first["per_page"], first["has_next"]) == (1, 2, True)
    assert [r["full_name"] for r in first["repositories"]] == ["Org/Shared", "alice/four"]
    last = world.service.github_repos(ALICE, {"page": "3", "per_page": "2"})
    assert last["has_next"] is False and [r["full_name"] for r in last["repositories"]] == ["alice/two"]
    assert last["repositories"][0]["added"] is True and last["repositories"][0]["repo_id"] == added["id"]
    assert first["repositories"][0]["added"] is False and first["repositories"][0]["repo_id"] is None
    for bad in ({"page": "0"}, {"page": "x"}, {"per_page": "101"}, {"per_page": "-1"}, {"page": "1001"}):
        with pytest.raises(ValidationFailed):
            world.service.github_repos(ALICE, bad)


# -- adding ----------------------------------------------------------------------------------------------

def test_add_checks_github_and_is_idempotent(world):
    status, repo = world.service.add(ALICE, {"full_name": " ALICE/One.git "})
    assert status == 201
    assert repo["full_name"] == "alice/one" and repo["github_id"] == 1 and repo["default_branch"] == "main"
    assert repo["private"] is False and repo["id"].startswith("repo_") and repo["attached_workspace_id"] is None
    assert repo["added_at"] == NOW
    again_status, again = world.service.add(ALICE, {"full_name": "alice/one"})
    assert (again_status, again["id"]) == (200, repo["id"])
    assert world.repos.counts["usr_alice"] == 1
    assert [e["action"] for e in world.audit.events] == ["repo.add"]

    with pytest.raises(NotFound) as missing:
        world.service.add(ALICE, {"full_name": "alice/secret"})  # private: the sign-in token cannot see it
    assert missing.value.code == "REPO_NOT_FOUND"
    world.connections.connect_github(ALICE, "gho_device")
    assert world.service.add(ALICE, {"full_name": "alice/secret"})[1]["private"] is True


@pytest.mark.parametrize("full_name", [None, 5, "", "alice", "alice/", "/one", "-alice/one", "a" * 40 + "/x",
                                       "alice/" + "x" * 101, "alice/one/two", "alice/.", "alice/..", "alice/x.wiki",
                                       "alice/sp ace", "ali ce/one", "alice/émoji"])
def test_invalid_names_are_400(world, full_name):
    with pytest.raises(ValidationFailed) as refused:
        world.service.add(ALICE, {"full_name": full_name})
    assert refused.value.code == "INVALID_REPO_NAME"


def test_name_rules():
    assert parse_full_name("octo-cat/hello.world_-1") == ("octo-cat", "hello.world_-1")
    assert parse_full_name("a/b.git") == ("a", "b")
    assert parse_full_name("a" * 39 + "/" + "b" * 100) == ("a" * 39, "b" * 100)
    assert parse_full_name("a/.git") is None


def test_the_plan_limit_is_a_402_with_the_catalog_numbers(world):
    for name in ("alice/one", "alice/two", "alice/three"):
        assert world.service.add(ALICE, {"full_name": name})[0] == 201
    with pytest.raises(PaymentRequired) as refused:
        world.service.add(ALICE, {"full_name": "alice/four"})
    assert refused.value.status == 402
    body = refused.value.body()
    assert {k: v for k, v in body.items() if k != "error"} == {
        "code": "PLAN_LIMIT_EXCEEDED", "resource": "repositories", "limit": 3, "used": 3, "plan": "free",
        "upgrade_url": "https://relay.test/pricing"}
    assert world.service.list(ALICE)["usage"] == {"used": 3, "limit": 3, "plan": "free"}
    # An existing one is still answered as existing at the limit.
    assert world.service.add(ALICE, {"full_name": "alice/one"})[0] == 200


def test_bulk_gives_one_result_per_name_in_order(world):
    world.service.add(ALICE, {"full_name": "alice/one"})
    answer = world.service.add_many(ALICE, {"full_names": [
        "alice/one", "alice/two", "nobody/nothing", "not a name", "ALICE/TWO", "org/shared", "alice/three",
        "alice/four"]})
    statuses = [(r["full_name"], r["status"]) for r in answer["results"]]
    assert statuses == [("alice/one", "exists"), ("alice/two", "added"), ("nobody/nothing", "not_found"),
                        ("not a name", "invalid"), ("ALICE/TWO", "exists"), ("org/shared", "added"),
                        ("alice/three", "limit_exceeded"), ("alice/four", "limit_exceeded")]
    assert answer["added"] == 2
    assert answer["results"][1]["repo"]["id"] == answer["results"][4]["repo"]["id"]
    assert answer["results"][5]["repo"]["full_name"] == "Org/Shared"
    assert "repo" not in answer["results"][6]
    assert answer["plan_limit"]["code"] == "PLAN_LIMIT_EXCEEDED" and answer["plan_limit"]["used"] == 3
    assert sorted(r.full_name for r in world.repos.list("usr_alice")) == ["Org/Shared", "alice/one", "alice/two"]


def test_bulk_input_is_validated(world):
    for body in ({}, {"full_names": []}, {"full_names": "alice/one"}, {"full_names": ["a/b"] * 51},
                 {"full_names": ["alice/one", 3]}):
        with pytest.raises(ValidationFailed):
            world.service.add_many(ALICE, body)
    only_invalid = world.service.add_many(ALICE, {"full_names": ["bad"]})
    assert only_invalid == {"results": [{"full_name": "bad", "status": "invalid"}], "added": 0}


def test_a_pro_plan_has_room_for_more(world):
    world.github.visible["gho_signin"] = {f"bob/r{i}": gh(f"bob/r{i}", 100 + i) for i in range(25)}
    answer = world.service.add_many(BOB, {"full_names": [f"bob/r{i}" for i in range(25)]})
    assert [r["status"] for r in answer["results"]].count("added") == 20
    assert answer["plan_limit"]["limit"] == 20 and answer["plan_limit"]["plan"] == "pro"


# -- removing and tenancy -----------------------------------------------------------------------------------

def test_remove_releases_the_slot_and_other_users_get_404(world):
    _, repo = world.service.add(ALICE, {"full_name": "alice/one"})
    for caller, repo_id in ((BOB, repo["id"]), (ALICE, "repo_" + "0" * 24), (ALICE, "../etc"), (ALICE, "")):
        with pytest.raises(NotFound) as refused:
            world.service.remove(caller, repo_id)
        assert refused.value.code == "REPO_NOT_FOUND"
    assert world.service.list(BOB)["repositories"] == []
    world.service.remove(ALICE, repo["id"])
    assert world.service.list(ALICE) == {"repositories": [], "usage": {"used": 0, "limit": 3, "plan": "free"}}
    assert world.service.add(ALICE, {"full_name": "alice/one"})[0] == 201


def test_an_attached_repository_cannot_be_removed(world):
    _, repo = world.service.add(ALICE, {"full_name": "alice/one"})
    key = ("usr_alice", repo["id"])
    world.repos.items[key] = replace(world.repos.items[key], attached_workspace_id="ws_1")
    with pytest.raises(Conflict) as refused:
        world.service.remove(ALICE, repo["id"])
    assert refused.value.code == "REPO_IN_USE"


# -- the GitHub client over a mock transport -------------------------------------------------------------------

def client(handler) -> GithubRepos:
    return GithubRepos(api_url="https://api.github.test", transport=httpx.MockTransport(handler), backoff_s=0)


REPO_JSON = {"id": 9, "full_name": "Octo/Repo", "name": "Repo", "owner": {"login": "Octo"}, "private": True,
             "default_branch": "trunk", "html_url": "https://github.test/Octo/Repo", "description": "d"}


def test_client_reads_pages_and_retries_transient_failures():
    calls = []

    def handler(request: httpx.Request):
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(502)
        link = '<https://api.github.test/user/repos?page=2&per_page=1>; rel="next"'
        return httpx.Response(200, json=[REPO_JSON, {"broken": True}], headers={"Link": link})

    page = client(handler).list_repos("gho_t", page=1, per_page=1)
    assert page.has_next is True and [r.full_name for r in page.repos] == ["Octo/Repo"]
    assert page.repos[0].default_branch == "trunk" and page.repos[0].private is True
    assert calls[-1].headers["authorization"] == "Bearer gho_t"
    assert dict(calls[-1].url.params) == {"sort": "updated", "page": "1", "per_page": "1"}


def test_client_maps_github_answers():
    def answering(status, headers=None, body=None):
        return client(lambda request: httpx.Response(status, json=body if body is not None else {"message": "x"},
                                                     headers=headers or {}))

    assert answering(200, body=REPO_JSON).get_repo("t", "octo", "repo").github_id == 9
    assert answering(404).get_repo("t", "octo", "repo") is None
    assert answering(403).get_repo("t", "octo", "repo") is None  # e.g. SSO enforcement: not visible
    with pytest.raises(Conflict) as rejected:
        answering(401).get_repo("t", "octo", "repo")
    assert rejected.value.code == "GITHUB_TOKEN_INVALID"
    for transient in (answering(503), answering(429), answering(403, {"x-ratelimit-remaining": "0"})):
        with pytest.raises(DependencyUnavailable):
            transient.get_repo("t", "octo", "repo")

    def unreachable(request):
        raise httpx.ConnectError("down")

    with pytest.raises(DependencyUnavailable):
        client(unreachable).list_repos("t", page=1, per_page=30)


def test_client_follows_a_renamed_repository():
    def handler(request: httpx.Request):
        if request.url.path == "/repos/octo/old":
            return httpx.Response(301, headers={"Location": "https://api.github.test/repositories/9"})
        return httpx.Response(200, json=REPO_JSON)

    assert client(handler).get_repo("t", "octo", "old").full_name == "Octo/Repo"
