"""Repositories (SPEC C5; docs/design/repositories.md): the user's GitHub repositories, adding one or many
(checked on GitHub with the user's own token, limited by the plan), and removing them."""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from relay_cloud.composition import container
from relay_cloud.http.app import build_app, entrypoint
from relay_cloud.http.errors import SECURITY_HEADERS, json_response
from relay_cloud.http.requests import json_body, principal

router = Router()


@router.get("/api/repos", summary="The repositories the user added, with the plan's usage", tags=["repos"])
def list_repos():
    return container().repos.list(principal(router))


@router.get("/api/repos/github", summary="The user's GitHub repositories, paged", tags=["repos"])
def github_repos():
    params = router.current_event.query_string_parameters or {}
    return container().repos.github_repos(principal(router), params)


@router.post("/api/repos", summary="Add a repository (owner/name), checked on GitHub", tags=["repos"])
def add_repo():
    status, repo = container().repos.add(principal(router), json_body(router.current_event))
    return json_response(status, repo)


@router.post("/api/repos/bulk", summary="Add up to 50 repositories, with a result per repository", tags=["repos"])
def add_repos():
    return container().repos.add_many(principal(router), json_body(router.current_event))


@router.delete("/api/repos/<repo_id>", summary="Remove a repository", tags=["repos"])
def remove_repo(repo_id: str):
    container().repos.remove(principal(router), repo_id)
    return Response(204, headers=dict(SECURITY_HEADERS))


app = build_app(router)
lambda_handler = entrypoint(app)
