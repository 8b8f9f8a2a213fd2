"""Sign in through the sandbox GitHub without a browser, as scripts, e2e tests and the benchmark do."""

from __future__ import annotations

import httpx


def sign_in(base_url: str, login: str, *, next_path: str = "/dashboard") -> httpx.Client:
    """A client holding a signed-in session cookie; ``client.csrf_token`` is the session's CSRF token."""
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=15)
    start = client.get("/api/auth/github/login", params={"next": next_path})
    assert start.status_code == 302, start.text
    approved = client.get(httpx.URL(start.headers["location"]).copy_merge_params({"login": login}))
    assert approved.status_code == 302, approved.text
    finished = client.get(approved.headers["location"])
    assert finished.status_code == 302 and finished.headers["location"] == next_path, finished.text
    client.csrf_token = client.get("/api/auth/session").json()["csrf_token"]
    return client
