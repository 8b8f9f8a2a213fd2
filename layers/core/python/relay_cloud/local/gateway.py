"""A local stand-in for an API Gateway HTTP API: request → payload v2.0 event → handler → response.

Small and isolated on purpose (no socket code here): ``build_event`` makes the event API Gateway would
send, ``map_result`` applies API Gateway's rules to what the function returned, and ``Gateway`` routes with
``functions.manifest`` — the same table the CDK API construct deploys — importing each function's handler
module on first use. Access logs are one JSON line per request with the path only: query strings carry
OAuth codes and states, so they are never logged, nor are headers, cookies or bodies.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qsl, unquote

from relay_cloud.local.repo import ensure_functions_importable

ACCOUNT_ID = "123456789012"
API_ID = "relaylocal"
REGION = "us-east-1"
access_log = logging.getLogger("relay_cloud.local.access")

_TEXT_TYPES = (
    "application/json",
    "application/x-www-form-urlencoded",
    "application/xml",
    "application/javascript",
    "application/graphql",
    "application/x-ndjson",
)


@dataclass(frozen=True)
class Route:
    """A matched API Gateway route: the function, its route key and the path parameters it binds."""

    function: object  # functions.manifest.FunctionSpec
    route_key: str
    path_parameters: dict[str, str]


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target; unlike urlsplit, "//x" stays a path, never a host."""
    path, _, query = target.partition("?")
    return path.partition("#")[0] or "/", query.partition("#")[0]


def is_text(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+json", "+xml"))


def match_route(method: str, path: str) -> Route | None:
    """The route API Gateway would pick: ``function_for`` chooses the function, then the best-scoring
    of that function's route keys (same scoring, most literal segments first) binds the parameters."""
    ensure_functions_importable()
    from functions import manifest

    spec = manifest.function_for(method, path)
    if spec is None:
        return None
    best: tuple[int, str, dict[str, str]] | None = None
    for key in spec.routes:
        route_method, template = key.split(" ", 1)
        if route_method not in ("ANY", method):
            continue
        score = manifest._match(template, path)
        if score is not None and (best is None or score > best[0]):
            best = (score, key, _bind(template, path))
    if best is None:  # function_for and the route scan disagree: treat as no route
        return None
    return Route(spec, best[1], best[2])


def _bind(template: str, path: str) -> dict[str, str]:
    params: dict[str, str] = {}
    t_parts, p_parts = template.strip("/").split("/"), path.strip("/").split("/")
    for i, part in enumerate(t_parts):
        if part.startswith("{") and part.endswith("+}"):
            params[part[1:-2]] = unquote("/".join(p_parts[i:]))
            break
        if part.startswith("{") and part.endswith("}"):
            params[part[1:-1]] = unquote(p_parts[i])
    return params


def build_event(
    method: str,
    target: str,
    headers,
    body: bytes = b"",
    *,
    route_key: str = "$default",
    path_parameters: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    stage: str = "$default",
) -> dict:
    """An API Gateway HTTP API payload format 2.0 event for one request.

    ``target`` is the request target as sent ("/path?query"); ``headers`` an iterable of (name, value)
    pairs or a mapping. Header names are lower-cased and repeated headers joined with ","; the Cookie
    header moves to ``cookies`` as API Gateway does.
    """
    method = method.upper()
    raw_path, raw_query = split_target(target)
    pairs = headers.items() if hasattr(headers, "items") else headers

    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in pairs:
        lname = name.lower()
        if lname == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        merged[lname] = f"{merged[lname]},{value}" if lname in merged else value

    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value

    now = datetime.now(timezone.utc)
    host = merged.get("host", "localhost")
    domain = host.split(":", 1)[0] if host else "localhost"
    event: dict = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = merged
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": host,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": merged.get("user-agent", ""),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "stage": stage,
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body:
        if is_text(merged.get("content-type")):
            try:
                event["body"] = body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


def map_result(result) -> HttpResponse:
    """API Gateway's payload 2.0 response rules: a dict with ``statusCode`` is a response; anything else
    is a JSON body with status 200."""
    if not (isinstance(result, dict) and "statusCode" in result):
        body = json.dumps(result).encode()
        return HttpResponse(200, [("Content-Type", "application/json")], body)
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), str(value)))
    for cookie in result.get("cookies") or []:
        headers.append(("Set-Cookie", str(cookie)))
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = raw.encode("utf-8") if isinstance(raw, str) else json.dumps(raw).encode()
    if body and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return HttpResponse(int(result["statusCode"]), headers, body)


class LambdaContext:
    """What the Lambda runtime passes as ``context`` (the attributes Powertools reads)."""

    def __init__(self, spec, request_id: str) -> None:
        self.function_name = f"relay-cloud-{spec.name}"
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = spec.memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + spec.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _error(status: int, code: str, message: str) -> HttpResponse:
    body = json.dumps({"error": message, "code": code}, separators=(",", ":")).encode()
    return HttpResponse(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body)


def loggable_path(path: str) -> str:
    """The path for the access log; a segment following ``token`` (invite links) is redacted."""
    segments = path.split("/")
    for i in range(1, len(segments)):
        if segments[i - 1].lower() == "token" and segments[i]:
            segments[i] = "REDACTED"
    return "/".join(segments)


class Gateway:
    """Routes requests to the project's handlers as API Gateway + Lambda would."""

    def __init__(self) -> None:
        self._handlers: dict[str, object] = {}
        self._lock = threading.Lock()
        # The Powertools resolver keeps the current event on the BaseRouter *class* (one request per
        # process on Lambda): all functions share it here, so they take turns, one request at a time.
        # With a lock per function, a daemon's POST once read the body of a concurrent providers GET.
        self._invoking = threading.Lock()

    def _handler(self, spec):
        handler = self._handlers.get(spec.module)
        if handler is None:
            with self._lock:  # one import per module even under concurrent first requests
                handler = self._handlers.get(spec.module)
                if handler is None:
                    handler = importlib.import_module(spec.module).lambda_handler
                    self._handlers[spec.module] = handler
        return handler

    def handle(self, method: str, target: str, headers, body: bytes = b"", *, source_ip: str = "127.0.0.1") -> HttpResponse:
        started = time.perf_counter()
        path = split_target(target)[0]
        route = match_route(method.upper(), path)
        function = route.function.name if route else None
        request_id = None
        if route is None:
            response = _error(404, "NOT_FOUND", "No such route")
        else:
            event = build_event(
                method, target, headers, body,
                route_key=route.route_key, path_parameters=route.path_parameters, source_ip=source_ip,
            )
            request_id = event["requestContext"]["requestId"]
            try:
                handler = self._handler(route.function)
                with self._invoking:
                    result = handler(event, LambdaContext(route.function, request_id))
                response = map_result(result)
            except Exception as exc:  # what API Gateway answers when the function fails
                if isinstance(exc, ModuleNotFoundError) and exc.name and route.function.module.startswith(exc.name):
                    # In the manifest but not written yet: say so instead of failing like a crash.
                    response = _error(503, "FUNCTION_UNAVAILABLE", f"The {function} function is not available")
                else:
                    # The type only: an exception's text may carry anything (a URL with a code, a token).
                    access_log.error(json.dumps({
                        "msg": "function failed", "function": function, "error": type(exc).__name__,
                        "request_id": request_id,
                    }))
                    response = _error(500, "INTERNAL_ERROR", "Internal Server Error")
        access_log.info(json.dumps({
            "msg": "request",
            "method": method.upper(),
            "path": loggable_path(path),
            "route_key": route.route_key if route else None,
            "function": function,
            "status": response.status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "request_id": request_id,
        }, separators=(",", ":")))
        return response
