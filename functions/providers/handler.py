"""Provider connections (SPEC C2): the registry with health, API keys, device flows, logins on the user's
machine (prompts relayed, never tokens), disconnect."""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from relay_cloud.composition import container
from relay_cloud.http.app import build_app, entrypoint
from relay_cloud.http.errors import SECURITY_HEADERS, json_response
from relay_cloud.http.requests import json_body, principal

router = Router()


@router.get("/api/providers", summary="Providers with the caller's connection health", tags=["providers"])
def list_providers():
    return container().providers.list(principal(router))


@router.post("/api/providers/<provider>/connect", summary="Connect with an API key or start a device flow",
             tags=["providers"])
def connect(provider: str):
    status, body = container().providers.connect(principal(router), provider, json_body(router.current_event))
    return json_response(status, body)


@router.get("/api/providers/flows/<flow_id>", summary="A device flow's status", tags=["providers"])
def flow_status(flow_id: str):
    return container().providers.flow_status(principal(router), flow_id)


@router.delete("/api/providers/flows/<flow_id>", summary="Cancel a device flow", tags=["providers"])
def cancel_flow(flow_id: str):
    container().providers.cancel_flow(principal(router), flow_id)
    return Response(204, headers=dict(SECURITY_HEADERS))


@router.post("/api/providers/logins/<login_id>/code", summary="Relay the code the user pasted to a login on their machine",
             tags=["providers"])
def relay_login_code(login_id: str):
    return json_response(202, container().machine_logins.relay_code(principal(router), login_id,
                                                                    json_body(router.current_event)))


@router.delete("/api/providers/<provider>", summary="Disconnect (revoke upstream, then delete)", tags=["providers"])
def disconnect(provider: str):
    container().providers.disconnect(principal(router), provider)
    return Response(204, headers=dict(SECURITY_HEADERS))


app = build_app(router)
lambda_handler = entrypoint(app)
