"""Resolver wiring shared by every HTTP function.

``build_app(*routers)`` gives an APIGatewayHttpResolver with the routers included, typed errors mapped
once, security headers on every response, and a global middleware that enforces the route
authorization table (relay_cloud.http.access) before any route runs.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import Router

from relay_cloud.http.access import ROUTE_ACCESS, SAFE_METHODS, Access, route_key
from relay_cloud.http.errors import SECURITY_HEADERS, error_response, register_error_handlers
from relay_cloud.observability import logger



def build_app(*routers: Router) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()
    for router in routers:
        app.include_router(router)
    register_error_handlers(app)
    app.use(middlewares=[_security_headers, _enforce_access])
    return app


def _security_headers(app, next_middleware):
    response = next_middleware(app)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _enforce_access(app, next_middleware):
    route = app.context.get("_route")
    key = route_key(route.method, route.path)
    access = ROUTE_ACCESS.get(key)
    if access is None:
        logger.error("route missing from the authorization table", extra={"route": key})
        return error_response(403, "ROUTE_NOT_AUTHORIZED", "This route is not open to anyone")
    if access is Access.SESSION:
        from relay_cloud.http.session import authenticate  # only session routes pay for this import

        principal = authenticate(app.current_event, require_csrf=route.method not in SAFE_METHODS)
        app.append_context(principal=principal)
    elif access is Access.DAEMON:
        from relay_cloud.http.daemon_auth import authenticate as authenticate_daemon

        # A daemon key (Authorization: Bearer rly_...): no cookie, no CSRF token.
        app.append_context(principal=authenticate_daemon(app.current_event))
    elif access is Access.DAEMON_HEARTBEAT:
        from relay_cloud.http.daemon_auth import claim as daemon_claim

        # Format only, no DynamoDB request: the route's conditional write verifies the key (SPEC §6).
        app.append_context(daemon_claim=daemon_claim(app.current_event))
    elif access is not Access.PUBLIC:
        # WEBHOOK routes arrive with their capability; until then nothing may pass.
        return error_response(403, "ROUTE_NOT_AUTHORIZED", "This route is not open yet")
    return next_middleware(app)


def entrypoint(app: APIGatewayHttpResolver):
    """The Lambda handler of a function: JSON logs with the request's correlation id, EMF metrics."""
    from aws_lambda_powertools.logging import correlation_paths

    from relay_cloud.observability import metrics

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @metrics.log_metrics
    def lambda_handler(event, context):
        return app.resolve(event, context)

    return lambda_handler
