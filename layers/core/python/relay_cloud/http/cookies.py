"""Cookie names and attributes: HttpOnly, SameSite=Lax, Secure except on plain-http localhost."""

from __future__ import annotations

from aws_lambda_powertools.shared.cookies import Cookie, SameSite

SESSION_COOKIE = "relay_session"
PRELOGIN_COOKIE = "relay_prelogin"


def cookie_name(base: str, secure: bool) -> str:
    # The __Host- prefix pins the cookie to this exact host, path / and Secure (browsers enforce it).
    return f"__Host-{base}" if secure else base


def make_cookie(base: str, value: str, *, secure: bool, max_age: int) -> Cookie:
    return Cookie(
        name=cookie_name(base, secure),
        value=value,
        path="/",
        secure=secure,
        http_only=True,
        same_site=SameSite.LAX_MODE,
        max_age=max_age,
    )


def clear_cookie(base: str, *, secure: bool) -> Cookie:
    return make_cookie(base, "", secure=secure, max_age=0)


def read_cookie(event, base: str, secure: bool) -> str | None:
    """The cookie's value from an HTTP API v2.0 event (``cookies`` is a list of "name=value")."""
    wanted = cookie_name(base, secure)
    for raw in event.cookies or []:
        name, _, value = raw.partition("=")
        if name.strip() == wanted:
            return value.strip() or None
    return None
