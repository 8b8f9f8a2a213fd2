"""Repositories through the local stack with the sandbox GitHub (SPEC C5, C8; docs/design/repositories.md):
listing the user's GitHub repositories page by page, adding one and many with per-item results, the Free
plan's 402, removing, another tenant's 404, GitHub failures, the device-flow connection's repo scope, and
no token in any log line (the module's log capture)."""

from __future__ import annotations

import httpx

from tests.e2e.test_providers import signed_in, wait_for_flow, write

REPOS, GITHUB, BULK = "/api/repos", "/api/repos/github", "/api/repos/bulk"


def login_of(client: httpx.Client) -> str:
    return client.get("/api/auth/me").json()["github_login"]


def all_github_repos(client: httpx.Client, per_page: int = 20) -> list[dict]:
    seen, page = [], 1
    while True:
        answer = client.get(GITHUB, params={"page": page, "per_page": per_page})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["page"] == page and body["per_page"] == per_page
        seen += body["repositories"]
        if not body["has_next"]:
            return seen
        assert len(body["repositories"]) == per_page
        page += 1


def fault(stack, **fault) -> None:
    assert httpx.post(f"{stack.url}/_sandbox/github/_faults", json=fault).status_code == 201


def test_list_add_bulk_limit_remove_and_another_tenant(local_stack):
    alice, bob = signed_in(local_stack, "repo-a"), signed_in(local_stack, "repo-b")
    me = login_of(alice)
    assert alice.get(REPOS).json() == {"repositories": [], "usage": {"used": 0, "limit": 3, "plan": "free"}}

    # GitHub's repositories, paged through the Link header: the sign-in token sees the public ones only.
    first = alice.get(GITHUB, params={"per_page": 20}).json()
    assert first["token_source"] == "sign_in" and first["has_next"] is True and len(first["repositories"]) == 20
    listed = all_github_repos(alice)
    assert len(listed) == 36 and len({r["github_id"] for r in listed}) == 36
    assert all(r["owner"] == me and r["private"] is False and r["added"] is False for r in listed)
    names = [r["full_name"] for r in listed]

    # Add one: checked on GitHub, 201 with GitHub's facts; again is 200 with the same repository.
    added = write(alice, "POST", REPOS, json={"full_name": names[0].upper()})
    assert added.status_code == 201, added.text
    repo = added.json()
    github = next(r for r in listed if r["full_name"] == names[0])
    assert (repo["full_name"], repo["github_id"], repo["default_branch"], repo["private"]) == (
        names[0], github["github_id"], "main", False)
    assert repo["id"].startswith("repo_") and repo["attached_workspace_id"] is None
    again = write(alice, "POST", REPOS, json={"full_name": names[0]})
    assert again.status_code == 200 and again.json()["id"] == repo["id"]
    marked = {r["full_name"]: r for r in all_github_repos(alice, per_page=100)}
    assert marked[names[0]]["added"] is True and marked[names[0]]["repo_id"] == repo["id"]

    # Many at once, one result per name, in order: the Free plan's third repository is the last one.
    bulk = write(alice, "POST", BULK, json={"full_names": [
        names[0], names[1], f"{me}/no-such-repo", "not a repo", names[2], names[3]]})
    assert bulk.status_code == 200, bulk.text
    results = bulk.json()["results"]
    assert [r["status"] for r in results] == ["exists", "added", "not_found", "invalid", "added", "limit_exceeded"]
    assert results[0]["repo"]["id"] == repo["id"] and results[1]["repo"]["full_name"] == names[1]
    assert bulk.json()["added"] == 2
    assert bulk.json()["plan_limit"] == {
        "error": bulk.json()["plan_limit"]["error"], "code": "PLAN_LIMIT_EXCEEDED", "resource": "repositories",
        "limit": 3, "used": 3, "plan": "free", "upgrade_url": f"{local_stack.url}/pricing"}

    # One more on Free is a 402 with the SPEC C8 body.
    refused = write(alice, "POST", REPOS, json={"full_name": names[3]})
    assert refused.status_code == 402
    body = refused.json()
    assert {k: body[k] for k in ("code", "resource", "limit", "used", "plan", "upgrade_url")} == {
        "code": "PLAN_LIMIT_EXCEEDED", "resource": "repositories", "limit": 3, "used": 3, "plan": "free",
        "upgrade_url": f"{local_stack.url}/pricing"}
    mine = alice.get(REPOS).json()
    assert sorted(r["full_name"] for r in mine["repositories"]) == sorted(names[:3])
    assert mine["usage"]["used"] == 3

    # Another tenant never sees them and cannot remove them.
    assert bob.get(REPOS).json()["repositories"] == []
    stolen = write(bob, "DELETE", f"{REPOS}/{repo['id']}")
    assert stolen.status_code == 404 and stolen.json()["code"] == "REPO_NOT_FOUND"
    assert all(r["added"] is False for r in bob.get(GITHUB, params={"per_page": 100}).json()["repositories"])
    assert len(alice.get(REPOS).json()["repositories"]) == 3

    # Remove frees the slot.
    assert write(alice, "DELETE", f"{REPOS}/{repo['id']}").status_code == 204
    assert write(alice, "DELETE", f"{REPOS}/{repo['id']}").status_code == 404
    assert alice.get(REPOS).json()["usage"]["used"] == 2
    assert write(alice, "POST", REPOS, json={"full_name": names[3]}).status_code == 201


def test_input_csrf_and_github_failures(local_stack):
    client = signed_in(local_stack, "repo-c")
    me = login_of(client)
    bad = write(client, "POST", REPOS, json={"full_name": "no-slash"})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_REPO_NAME"
    assert write(client, "POST", REPOS, content=b"[]").status_code == 400
    assert write(client, "POST", BULK, json={"full_names": ["a/b"] * 51}).status_code == 400
    assert client.get(GITHUB, params={"per_page": 500}).json()["code"] == "VALIDATION_FAILED"
    no_csrf = client.post(REPOS, json={"full_name": f"{me}/relay-api"})
    assert no_csrf.status_code == 403 and no_csrf.json()["code"] == "CSRF_TOKEN_INVALID"
    assert httpx.get(f"{local_stack.url}{REPOS}").status_code == 401

    # Another login's private repository is as invisible as a missing one; their public ones can be added.
    other = f"repo-owner-{me[-6:]}"
    for name, private in (("hidden", True), ("shared", False)):
        made = httpx.post(f"{local_stack.url}/_sandbox/github/_repos",
                          json={"login": other, "name": name, "private": private})
        assert made.status_code == 201, made.text
    hidden = write(client, "POST", REPOS, json={"full_name": f"{other}/hidden"})
    assert hidden.status_code == 404 and hidden.json()["code"] == "REPO_NOT_FOUND"
    shared = write(client, "POST", REPOS, json={"full_name": f"{other}/shared"})
    assert shared.status_code == 201 and shared.json()["owner"] == other

    # GitHub down (retried, then 503) and GitHub refusing the token (409), nothing stored either way.
    fault(local_stack, path_contains="/user/repos", status=502, count=3)
    down = client.get(GITHUB)
    assert down.status_code == 503 and down.json()["code"] == "UPSTREAM_UNAVAILABLE"
    fault(local_stack, path_contains="/repos/", status=401, count=1)
    rejected = write(client, "POST", REPOS, json={"full_name": f"{me}/relay-api"})
    assert rejected.status_code == 409, rejected.text
    assert rejected.json()["code"] == "GITHUB_TOKEN_INVALID" and rejected.json()["token_source"] == "sign_in"
    assert [r["full_name"] for r in client.get(REPOS).json()["repositories"]] == [f"{other}/shared"]


def test_the_github_connection_adds_private_repositories(local_stack):
    httpx.post(f"{local_stack.url}/_sandbox/github/_config", json={"device_interval": 1})
    client = signed_in(local_stack, "repo-d")
    me = login_of(client)
    assert httpx.post(f"{local_stack.url}/_sandbox/github/_repos",
                      json={"login": me, "name": "private-one", "private": True}).status_code == 201
    assert write(client, "POST", REPOS, json={"full_name": f"{me}/private-one"}).status_code == 404

    flow = write(client, "POST", "/api/providers/github/connect", json={"method": "device_flow"}).json()
    assert httpx.post(f"{local_stack.url}/_sandbox/github/device/approve",
                      json={"user_code": flow["user_code"], "login": me}).status_code < 300
    assert wait_for_flow(client, flow["flow_id"], {"connected", "error", "expired", "denied"})["status"] == "connected"

    first = client.get(GITHUB, params={"per_page": 100}).json()
    assert first["token_source"] == "connection"
    assert len(first["repositories"]) == 46  # 45 generated + the one made above, private ones included
    assert first["repositories"][0]["full_name"] == f"{me}/private-one"  # sorted by update, newest first
    added = write(client, "POST", REPOS, json={"full_name": f"{me}/private-one"})
    assert added.status_code == 201 and added.json()["private"] is True
