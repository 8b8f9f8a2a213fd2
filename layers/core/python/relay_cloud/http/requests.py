"""Reading request input safely: bad input is a 400 with a code, never a 500."""

from __future__ import annotations

import json

from relay_cloud.domain.errors import ValidationFailed

MAX_BODY_BYTES = 256 * 1024


def json_body(event, *, required: bool = True) -> dict:
    raw = event.decoded_body if event.body else ""
    if not raw:
        if required:
            raise ValidationFailed("A JSON body is required", code="INVALID_JSON")
        return {}
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationFailed("The request body is too large", code="BODY_TOO_LARGE")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("The body is not valid JSON", code="INVALID_JSON") from None
    if not isinstance(body, dict):
        raise ValidationFailed("The body must be a JSON object", code="INVALID_JSON")
    return body


def principal(router):
    """The authenticated caller, put in the context by the authorization middleware."""
    return router.context["principal"]
