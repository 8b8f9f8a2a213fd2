"""Workspaces (SPEC C6; docs/design/workspaces.md): create (202, the provisioning workflow runs), list, read,
rename, start/stop/restart, the workflow's events, attach repos, delete (202, the teardown workflow runs)
and the workspace's custom domain. Only the owner sees a workspace: anything else is 404."""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from relay_cloud.composition import container
from relay_cloud.http.app import build_app, entrypoint
from relay_cloud.http.errors import SECURITY_HEADERS, json_response
from relay_cloud.http.requests import json_body, principal

router = Router()


@router.get("/api/workspaces", summary="The user's workspaces, with the plan's usage", tags=["workspaces"])
def list_workspaces():
    return container().workspaces.list(principal(router))


@router.post("/api/workspaces", summary="Create a workspace: provisioning starts", tags=["workspaces"])
def create_workspace():
    return json_response(202, container().workspaces.create(principal(router), json_body(router.current_event)))


@router.get("/api/workspaces/<workspace_id>", summary="A workspace", tags=["workspaces"])
def get_workspace(workspace_id: str):
    return container().workspaces.get(principal(router), workspace_id)


@router.patch("/api/workspaces/<workspace_id>", summary="Rename a workspace", tags=["workspaces"])
def rename_workspace(workspace_id: str):
    return container().workspaces.rename(principal(router), workspace_id, json_body(router.current_event))


@router.delete("/api/workspaces/<workspace_id>", summary="Delete a workspace: teardown starts", tags=["workspaces"])
def delete_workspace(workspace_id: str):
    return json_response(202, container().workspaces.delete(principal(router), workspace_id))


@router.post("/api/workspaces/<workspace_id>/start", summary="Start the workspace's machine", tags=["workspaces"])
def start_workspace(workspace_id: str):
    return json_response(202, container().workspaces.start(principal(router), workspace_id))


@router.post("/api/workspaces/<workspace_id>/stop", summary="Stop the workspace's machine", tags=["workspaces"])
def stop_workspace(workspace_id: str):
    return json_response(202, container().workspaces.stop(principal(router), workspace_id))


@router.post("/api/workspaces/<workspace_id>/restart", summary="Restart the workspace's machine", tags=["workspaces"])
def restart_workspace(workspace_id: str):
    return json_response(202, container().workspaces.restart(principal(router), workspace_id))


@router.get("/api/workspaces/<workspace_id>/events", summary="Provisioning and teardown events, oldest first",
            tags=["workspaces"])
def workspace_events(workspace_id: str):
    params = router.current_event.query_string_parameters or {}
    return container().workspaces.events(principal(router), workspace_id, params)


@router.post("/api/workspaces/<workspace_id>/repos", summary="Attach repositories to a workspace", tags=["workspaces"])
def attach_repos(workspace_id: str):
    return container().workspaces.attach_repos(principal(router), workspace_id, json_body(router.current_event))


@router.post("/api/workspaces/<workspace_id>/domain", summary="Claim a custom domain for a workspace",
             tags=["workspaces"])
def claim_domain(workspace_id: str):
    return json_response(201, container().domains.claim(principal(router), workspace_id,
                                                         json_body(router.current_event)))


@router.delete("/api/workspaces/<workspace_id>/domain", summary="Remove the workspace's custom domain",
               tags=["workspaces"])
def remove_domain(workspace_id: str):
    container().domains.remove(principal(router), workspace_id)
    return Response(204, headers=dict(SECURITY_HEADERS))


@router.post("/api/workspaces/<workspace_id>/domain/verify", summary="Check the custom domain's DNS records",
             tags=["workspaces"])
def verify_domain(workspace_id: str):
    return container().domains.verify(principal(router), workspace_id)


app = build_app(router)
lambda_handler = entrypoint(app)
