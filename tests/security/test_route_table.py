"""Every registered route is in the authorization table, served by the function the manifest names,
and described in the OpenAPI document; the table names no route that does not exist."""

import importlib
import re

from functions.manifest import HTTP_FUNCTIONS, function_for
from relay_cloud.http.access import ROUTE_ACCESS, route_key


def registered_routes():
    for spec in HTTP_FUNCTIONS:
        app = importlib.import_module(spec.module).app
        for route in app._static_routes + app._dynamic_routes:
            yield spec, route_key(route.method, route.path)


def test_every_registered_route_is_in_the_table():
    missing = [key for _, key in registered_routes() if key not in ROUTE_ACCESS]
    assert missing == []


def test_the_table_names_only_registered_routes():
    registered = {key for _, key in registered_routes()}
    assert set(ROUTE_ACCESS) - registered == set()


def test_each_route_is_dispatched_to_the_function_that_registers_it():
    for spec, key in registered_routes():
        method, template = key.split(" ", 1)
        concrete = re.sub(r"\{[^}]+\}", "sample", template)
        assert function_for(method, concrete) is spec, key


def test_openapi_document_describes_every_route_with_its_access():
    from relay_cloud.http.openapi import build_document

    document = build_document()
    described = {f"{m.upper()} {p}": op["x-access"] for p, ops in document["paths"].items() for m, op in ops.items()}
    assert described == {key: access.value for key, access in ROUTE_ACCESS.items()}


def test_a_route_missing_from_the_table_is_refused_at_runtime():
    from aws_lambda_powertools.event_handler.api_gateway import Router

    from relay_cloud.http.app import build_app

    router = Router()

    @router.get("/api/unlisted")
    def unlisted():
        return {"leak": True}

    event = {"version": "2.0", "routeKey": "$default", "rawPath": "/api/unlisted", "rawQueryString": "",
             "headers": {}, "requestContext": {"http": {"method": "GET", "path": "/api/unlisted", "sourceIp": "127.0.0.1"},
                                               "requestId": "r", "stage": "$default"}, "isBase64Encoded": False}
    response = build_app(router).resolve(event, None)
    assert response["statusCode"] == 403 and "leak" not in response["body"]
