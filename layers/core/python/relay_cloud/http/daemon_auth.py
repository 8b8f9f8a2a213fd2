"""Daemon-key authentication for ``Access.DAEMON`` routes (and the format-only claim of
``Access.DAEMON_HEARTBEAT``) (used by the authorization middleware), and the
request bodies of the linking endpoints (RFC 8628: form-encoded, JSON accepted too).

Daemon routes ignore cookies and need no CSRF token: the key travels in the Authorization header,
which a browser never attaches on its own.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from relay_cloud.domain.daemons import DaemonKeyClaim, DaemonPrincipal, DeviceGrantError, daemon_key_claim
from relay_cloud.domain.errors import Unauthenticated

MAX_FORM_BYTES = 16 * 1024


def authenticate(event) -> DaemonPrincipal:
    from relay_cloud.composition import container

    return container().daemons.authenticate(event.headers.get("authorization"))


def claim(event) -> DaemonKeyClaim:
    """For ``Access.DAEMON_HEARTBEAT``: the daemon id and key hash the header claims, without any I/O;
    401 DAEMON_KEY_INVALID when the header is not ``Bearer rly_<daemon_id>_<secret>``."""
    claimed = daemon_key_claim(event.headers.get("authorization"))
    if claimed is None:
        raise Unauthenticated("A valid daemon key is required", code="DAEMON_KEY_INVALID")
    return claimed


def requesting_ip(event) -> str | None:
    try:
        return event.request_context.http.source_ip
    except (AttributeError, KeyError):
        return None


def oauth_params(event) -> dict[str, str]:
    """The parameters of an OAuth request body: ``application/x-www-form-urlencoded`` (RFC 6749 §4.1.3,
    RFC 8628 §3.1) or a JSON object of strings. Repeated or malformed parameters are ``invalid_request``
    (RFC 6749 §3.2)."""
    try:
        raw = event.decoded_body if event.body else ""
    except (ValueError, UnicodeDecodeError):
        raise DeviceGrantError("invalid_request", "The body is not readable") from None
    if len(raw) > MAX_FORM_BYTES:
        raise DeviceGrantError("invalid_request", "The body is too large")
    content_type = (event.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            raise DeviceGrantError("invalid_request", "The body is not valid JSON") from None
        if not isinstance(body, dict):
            raise DeviceGrantError("invalid_request", "The body must be a JSON object")
        if any(not isinstance(value, str) for value in body.values()):
            raise DeviceGrantError("invalid_request", "Every parameter must be a string")
        return body
    try:
        parsed = parse_qs(raw, keep_blank_values=False, strict_parsing=False, max_num_fields=32)
    except ValueError:
        raise DeviceGrantError("invalid_request", "The form body is malformed") from None
    repeated = sorted(name for name, values in parsed.items() if len(values) > 1)
    if repeated:
        raise DeviceGrantError("invalid_request", "A parameter was given more than once")
    return {name: values[0] for name, values in parsed.items()}
