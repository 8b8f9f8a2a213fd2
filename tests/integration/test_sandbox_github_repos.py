"""The sandbox GitHub's repository endpoints over HTTP on the local stack: ``GET /repos/{owner}/{repo}``
with GitHub's visibility rules, ``/user/repos`` ordering, and the ``/_repos`` control route."""

from __future__ import annotations

import uuid

from tests.integration.test_sandbox_github import GH, challenge_of, code_from, exchange


def token_for(http, local_stack, login: str, scope: str) -> str:
    env = local_stack.env
    client = {"id": env["RELAY_GITHUB_CLIENT_ID"], "secret": env["RELAY_GITHUB_CLIENT_SECRET"],
              "redirect_uri": f"{local_stack.url}/api/auth/github/callback"}
    verifier = "w" * 50
    params = {"client_id": client["id"], "redirect_uri": client["redirect_uri"], "scope": scope, "state": "s",
              "code_challenge": challenge_of(verifier), "code_challenge_method": "S256", "login": login}
    code = code_from(http.get(f"{GH}/login/oauth/authorize", params=params))
    return exchange(http, client, code, verifier=verifier).json()["access_token"]


def test_get_a_repository_follows_githubs_visibility_rules(http, local_stack):
    owner, stranger = f"own-{uuid.uuid4().hex[:6]}", f"str-{uuid.uuid4().hex[:6]}"
    made = http.post(f"{GH}/_repos", json={"login": owner, "name": "Secret.Repo", "private": True,
                                            "default_branch": "trunk"})
    assert made.status_code == 201 and made.json()["full_name"] == f"{owner}/Secret.Repo"
    assert http.post(f"{GH}/_repos", json={"login": owner, "name": "secret.repo"}).status_code == 422
    assert http.post(f"{GH}/_repos", json={"login": owner, "name": "bad name"}).status_code == 422

    full = {"Authorization": f"Bearer {token_for(http, local_stack, owner, 'repo')}"}
    narrow = {"Authorization": f"Bearer {token_for(http, local_stack, owner, 'read:user')}"}
    other = {"Authorization": f"Bearer {token_for(http, local_stack, stranger, 'repo')}"}
    url = f"{GH}/repos/{owner.upper()}/SECRET.repo"
    seen = http.get(url, headers=full)
    assert seen.status_code == 200
    assert (seen.json()["full_name"], seen.json()["private"], seen.json()["default_branch"]) == (
        f"{owner}/Secret.Repo", True, "trunk")
    for headers in (narrow, other, {}):
        hidden = http.get(url, headers=headers)
        assert hidden.status_code == 404 and hidden.json()["message"] == "Not Found"
    assert http.get(url, headers={"Authorization": "Bearer gho_wrong"}).status_code == 401

    public = http.get(f"{GH}/repos/{owner}/relay-api", headers=other)
    assert public.status_code == 200 and public.json()["private"] is False
    assert http.get(f"{GH}/repos/{owner}/nothing-here", headers=full).status_code == 404
    assert http.get(f"{GH}/repos/nobody-{uuid.uuid4().hex[:6]}/relay-api", headers=full).status_code == 404


def test_user_repos_are_ordered_like_githubs(http, local_stack):
    login = f"ord-{uuid.uuid4().hex[:6]}"
    http.post(f"{GH}/_repos", json={"login": login, "name": "aaa-newest"})
    auth = {"Authorization": f"Bearer {token_for(http, local_stack, login, 'repo')}"}

    def names(**params):
        return [r["name"] for r in http.get(f"{GH}/user/repos", params={"per_page": 100, **params}, headers=auth).json()]

    by_name = names()
    assert len(by_name) == 46 and by_name == sorted(by_name, key=str.lower)
    assert names(direction="desc") == by_name[::-1]
    updated = names(sort="updated")
    assert updated[0] == "aaa-newest" and names(sort="updated", direction="asc") == updated[::-1]
