"""Daemons (SPEC C4): linking through our RFC 8628 authorization server, the dashboard's decision,
listing and unlinking machines, and the daemon-key routes: the heartbeat (one conditional write),
cross-machine messages, command results and credential leases."""

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from relay_cloud.composition import container
from relay_cloud.http.app import build_app, entrypoint
from relay_cloud.http.daemon_auth import oauth_params, requesting_ip
from relay_cloud.http.errors import SECURITY_HEADERS, json_response
from relay_cloud.http.requests import json_body, principal

router = Router()
NO_STORE = {"Pragma": "no-cache"}  # with the shared Cache-Control: no-store (RFC 6749 §5.1)


@router.post("/api/daemons/link/device", summary="RFC 8628 device authorization for relay-cloud link",
             tags=["daemons"])
def device_authorization():
    event = router.current_event
    return json_response(200, container().daemons.device_authorization(oauth_params(event),
                                                                       requesting_ip=requesting_ip(event)), NO_STORE)


@router.post("/api/daemons/link/token", summary="RFC 8628 token endpoint (device_code grant)", tags=["daemons"])
def token():
    return json_response(200, container().daemons.token(oauth_params(router.current_event)), NO_STORE)


@router.get("/api/daemons/link/requests/<user_code>", summary="What is asking to be linked", tags=["daemons"])
def link_request(user_code: str):
    return container().daemons.lookup(principal(router), user_code)


@router.post("/api/daemons/link/requests/<user_code>/approve", summary="Approve a link request", tags=["daemons"])
def approve(user_code: str):
    body = json_body(router.current_event, required=False)
    return container().daemons.approve(principal(router), user_code, body)


@router.post("/api/daemons/link/requests/<user_code>/deny", summary="Deny a link request", tags=["daemons"])
def deny(user_code: str):
    container().daemons.deny(principal(router), user_code)
    return Response(204, headers=dict(SECURITY_HEADERS))


@router.get("/api/daemons", summary="The caller's machines with presence", tags=["daemons"])
def list_daemons():
    return container().daemons.list(principal(router))


@router.delete("/api/daemons/self", summary="Unlink the calling machine (relay-cloud unlink)", tags=["daemons"])
def unlink_self():
    container().daemons.unlink_self(principal(router))
    return Response(204, headers=dict(SECURITY_HEADERS))


@router.get("/api/daemons/agents", summary="Agents on every machine of the key's owner", tags=["daemons"])
def agents():
    return container().daemons.agents(principal(router))


@router.post("/api/daemons/heartbeat", summary="Heartbeat: report agents and metrics, receive commands",
             tags=["daemons"])
def heartbeat():
    # One conditional UpdateItem in all (SPEC §6): the middleware only parsed the key's format.
    return container().daemons.heartbeat(router.context["daemon_claim"], json_body(router.current_event))


@router.post("/api/daemons/messages", summary="Send a message to an agent on one of the owner's machines",
             tags=["daemons"])
def send_message():
    return json_response(201, container().messages.send(principal(router), json_body(router.current_event)))


@router.get("/api/daemons/messages", summary="Receive pending messages (leased until acked)", tags=["daemons"])
def receive_messages():
    params = router.current_event.query_string_parameters or {}
    return container().messages.receive(principal(router), params)


@router.post("/api/daemons/messages/ack", summary="Acknowledge received messages by id", tags=["daemons"])
def ack_messages():
    return container().messages.ack(principal(router), json_body(router.current_event))


@router.post("/api/daemons/commands/<command_id>/result", summary="Report a command's progress or result",
             tags=["daemons"])
def command_result(command_id: str):
    return container().commands.report(principal(router), command_id, json_body(router.current_event))


@router.get("/api/daemons/credentials", summary="Access-only credential leases sealed to this machine",
            tags=["daemons"])
def credentials():
    return json_response(200, container().leases.leases(principal(router)), NO_STORE)


@router.delete("/api/daemons/<daemon_id>", summary="Unlink a machine (revokes its key)", tags=["daemons"])
def unlink(daemon_id: str):
    container().daemons.unlink(principal(router), daemon_id)
    return Response(204, headers=dict(SECURITY_HEADERS))


app = build_app(router)
lambda_handler = entrypoint(app)
