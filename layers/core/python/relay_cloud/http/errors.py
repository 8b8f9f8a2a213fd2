"""Map typed errors to ``{"error", "code", ...}`` responses, once for every function."""

from __future__ import annotations

import json
import traceback

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from relay_cloud.domain.errors import RelayError
from relay_cloud.observability import logger

JSON = "application/json"
# Sent on every API response, including errors raised before or outside a route.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}


def json_response(status: int, body, headers: dict | None = None, cookies=None) -> Response:
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body, separators=(",", ":")),
        headers={**SECURITY_HEADERS, **(headers or {})},
        cookies=cookies or [],
    )


def error_response(status: int, code: str, message: str, **details) -> Response:
    return json_response(status, {"error": message, "code": code, **details})


def register_error_handlers(app) -> None:
    @app.exception_handler(RelayError)
    def _typed(exc: RelayError):
        if exc.status >= 500:
            logger.error("request failed", extra={"code": exc.code})
        else:
            logger.info("request refused", extra={"code": exc.code, "status": exc.status})
        return json_response(exc.status, exc.body(), exc.headers)

    @app.exception_handler(NotFoundError)
    def _no_route(_exc):
        return error_response(404, "NOT_FOUND", "No such route")

    @app.not_found
    def _not_found(_exc):
        return error_response(404, "NOT_FOUND", "No such route")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception):
        # The message of an unexpected exception may carry anything (a URL with a code, a token):
        # log its type and where it was raised, never its text.
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f"{frame.filename}:{frame.lineno}" if frame else "unknown"
        logger.error("unhandled error", extra={"error_type": type(exc).__name__, "where": where})
        return error_response(500, "INTERNAL_ERROR", "Something went wrong on our side")
