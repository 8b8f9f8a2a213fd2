"""Sign-in with GitHub, sessions and the account (SPEC C1). Thin: each route calls one service method."""

from html import escape

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from relay_cloud.composition import container
from relay_cloud.domain.auth import OAUTH_LOGIN_TTL_SECONDS
from relay_cloud.domain.errors import RelayError
from relay_cloud.http.app import build_app, entrypoint
from relay_cloud.http.cookies import PRELOGIN_COOKIE, SESSION_COOKIE, clear_cookie, make_cookie, read_cookie
from relay_cloud.http.errors import SECURITY_HEADERS, json_response
from relay_cloud.http.requests import json_body, principal
from relay_cloud.http.session import session_id_from

router = Router()


def _secure() -> bool:
    return container().settings.secure_cookies


@router.get("/api/auth/github/login", summary="Start signing in with GitHub", tags=["auth"])
def github_login():
    start = container().auth.begin_sign_in(router.current_event.get_query_string_value("next"))
    prelogin = make_cookie(PRELOGIN_COOKIE, start.browser_secret, secure=_secure(), max_age=OAUTH_LOGIN_TTL_SECONDS)
    return Response(302, headers={"Location": start.authorize_url, **SECURITY_HEADERS}, cookies=[prelogin])


@router.get("/api/auth/github/callback", summary="Finish signing in with GitHub", tags=["auth"])
def github_callback():
    event = router.current_event
    auth, secure = container().auth, _secure()
    try:
        done = auth.finish_sign_in(
            state=event.get_query_string_value("state"),
            code=event.get_query_string_value("code"),
            error=event.get_query_string_value("error"),
            browser_secret=read_cookie(event, PRELOGIN_COOKIE, secure),
            previous_session_id=session_id_from(event),
        )
    except RelayError as exc:
        return _sign_in_failed(exc, secure)
    session = make_cookie(SESSION_COOKIE, done.session.session_id, secure=secure, max_age=auth.session_ttl)
    return Response(
        302,
        headers={"Location": done.next_path, **SECURITY_HEADERS},
        cookies=[session, clear_cookie(PRELOGIN_COOKIE, secure=secure)],
    )


def _sign_in_failed(exc: RelayError, secure: bool) -> Response:
    """A page the browser can show (and that hands the code to the dashboard), or JSON for API clients."""
    cookies = [clear_cookie(PRELOGIN_COOKIE, secure=secure)]
    if "application/json" in (router.current_event.headers.get("accept") or ""):
        return json_response(exc.status, exc.body(), cookies=cookies)
    code = escape(exc.code)
    target = f"/dashboard?auth_error={code}"
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta http-equiv=refresh content=\"0;url={target}\"><title>Sign-in failed</title>"
        "<link rel=stylesheet href=/assets/app.css></head>"
        f"<body><main class=auth-error data-code=\"{code}\"><h1>Sign-in failed</h1>"
        f"<p>{escape(exc.message)}</p><p><code>{code}</code></p>"
        f"<p><a href=\"{target}\">Back to Agent Relay</a></p></main></body></html>"
    )
    return Response(
        exc.status,
        content_type="text/html; charset=utf-8",
        body=page,
        headers=dict(SECURITY_HEADERS),
        cookies=cookies,
    )


@router.get("/api/auth/session", summary="Whether the caller is signed in (and the CSRF token)", tags=["auth"])
def session_status():
    event = router.current_event
    session_id = session_id_from(event)
    status = container().auth.session_status(session_id)
    cookies = [clear_cookie(SESSION_COOKIE, secure=_secure())] if session_id and not status["authenticated"] else []
    return json_response(200, status, cookies=cookies)


@router.get("/api/auth/me", summary="Profile, plan, connected providers and pending invites", tags=["auth"])
def me():
    return container().auth.me(principal(router))


@router.post("/api/auth/logout", summary="End the session", tags=["auth"])
def logout():
    container().auth.sign_out(principal(router))
    return Response(204, headers=dict(SECURITY_HEADERS), cookies=[clear_cookie(SESSION_COOKIE, secure=_secure())])


@router.delete("/api/account", summary="Delete the account and crypto-shred its vault keys", tags=["auth"])
def delete_account():
    body = json_body(router.current_event, required=False)
    container().auth.delete_account(principal(router), body.get("confirm"))
    return Response(204, headers=dict(SECURITY_HEADERS), cookies=[clear_cookie(SESSION_COOKIE, secure=_secure())])


app = build_app(router)
lambda_handler = entrypoint(app)
