"""The OpenAPI 3 document of every route of every function, merged from each function's resolver.

Each function's own resolver describes its routes (Powertools builds the schema); the document adds
who may call each route (``x-access``, from the authorization table) and the session/daemon schemes.
"""

from __future__ import annotations

import importlib
from functools import cache

from relay_cloud.http.access import ROUTE_ACCESS, Access


def all_apps():
    from functions.manifest import HTTP_FUNCTIONS

    return {spec.name: importlib.import_module(spec.module).app for spec in HTTP_FUNCTIONS}


@cache
def build_document() -> dict:
    paths: dict = {}
    schemas: dict = {}
    for app in all_apps().values():
        schema = app.get_openapi_schema(title="Agent Relay Cloud API", version="1").model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        for path, operations in schema.get("paths", {}).items():
            paths.setdefault(path, {}).update(operations)
        schemas.update(schema.get("components", {}).get("schemas", {}))
    for path, operations in paths.items():
        for method, operation in operations.items():
            access = ROUTE_ACCESS.get(f"{method.upper()} {path}")
            operation["x-access"] = access.value if access else "none"
            if access is Access.SESSION:
                operation["security"] = [{"session": []}]
            elif access in (Access.DAEMON, Access.DAEMON_HEARTBEAT):
                operation["security"] = [{"daemonKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Agent Relay Cloud API", "version": "1"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "relay_session"},
                "daemonKey": {"type": "http", "scheme": "bearer"},
            },
        },
    }
