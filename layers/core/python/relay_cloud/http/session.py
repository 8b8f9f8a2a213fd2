"""Session-cookie authentication with CSRF (SPEC C1), used by the authorization middleware."""

from __future__ import annotations

from relay_cloud.domain.auth import Principal, same_secret
from relay_cloud.domain.errors import Forbidden
from relay_cloud.http.cookies import SESSION_COOKIE, read_cookie

CSRF_HEADER = "x-csrf-token"


def session_id_from(event) -> str | None:
    from relay_cloud.composition import container

    return read_cookie(event, SESSION_COOKIE, container().settings.secure_cookies)


def authenticate(event, *, require_csrf: bool) -> Principal:
    from relay_cloud.composition import container

    principal = container().auth.authenticate(session_id_from(event))
    if require_csrf and not same_secret(event.headers.get(CSRF_HEADER), principal.csrf_token):
        raise Forbidden("Missing or wrong X-CSRF-Token header", code="CSRF_TOKEN_INVALID")
    return principal
