"""A tiny framework for sandbox upstreams: requests, responses, a router per sandbox, fault injection.

Every sandbox is mounted at ``/_sandbox/<name>/`` and shares a control surface:

    POST   /_sandbox/<name>/_faults   {"path_contains", "status", "count", "delay_ms", "oauth_error"}
    DELETE /_sandbox/<name>/_faults

A queued fault applies to the next ``count`` requests whose path contains ``path_contains``: it sleeps
``delay_ms`` first and, when ``status`` is given, answers that status with a JSON error instead of
running the route. ``oauth_error`` (e.g. ``"slow_down"``) answers an OAuth error the way the sandbox's
provider does instead (``Sandbox.oauth_error_response``: by default HTTP 400 ``{"error": ...}`` as in
RFC 6749 §5.2; ``status``, when also given, overrides the HTTP status). Control paths (starting with
``/_``, and routes registered with ``control=True`` such as ``/device/approve``) are never faulted.

``settings_route`` gives a sandbox a ``POST /_config`` that changes numeric settings at runtime.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


@dataclass
class Request:
    method: str
    path: str  # relative to the sandbox's mount point, always starting with "/"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes = b""
    base_path: str = ""  # the mount point, e.g. "/_sandbox/github"
    base_url: str = ""  # absolute URL of the mount point, e.g. "http://127.0.0.1:8787/_sandbox/github"
    params: dict[str, str] = field(default_factory=dict)  # route parameters

    @classmethod
    def build(cls, method: str, target: str, headers, body: bytes = b"", *, base_path: str = "", base_url: str = ""):
        path, _, query = target.partition("?")
        return cls(
            method=method.upper(),
            path=path or "/",
            query=parse_qs(query, keep_blank_values=True),
            headers={name.lower(): value for name, value in dict(headers).items()},
            body=body,
            base_path=base_path,
            base_url=base_url,
        )

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def json(self):
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def form(self) -> dict[str, str]:
        """Parameters of a form-encoded or JSON body, falling back to the query string (OAuth servers
        accept all three)."""
        values = {name: items[0] for name, items in self.query.items() if items}
        if self.content_type == "application/json":
            data = self.json()
            if isinstance(data, dict):
                values.update({k: str(v) for k, v in data.items() if v is not None})
        elif self.body:
            parsed = parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
            values.update({name: items[0] for name, items in parsed.items() if items})
        return values

    def wants_json(self) -> bool:
        return "application/json" in self.headers.get("accept", "")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def json_response(data, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(status, body, [("Content-Type", "application/json; charset=utf-8"), *(headers or [])])


def html_response(markup: str, status: int = 200) -> Response:
    return Response(status, markup.encode(), [("Content-Type", "text/html; charset=utf-8")])


def redirect(location: str, status: int = 302) -> Response:
    return Response(status, b"", [("Location", location)])


def with_query(url: str, params: dict[str, str | None]) -> str:
    """``url`` with ``params`` (None values dropped) appended to its query string."""
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query and extra else parts.query or extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;color:#1f2328}"
        "input{font:inherit;padding:.4rem;width:100%;box-sizing:border-box;margin:.5rem 0}"
        "button{font:inherit;padding:.5rem 1rem;background:#1f883d;color:#fff;border:0;border-radius:6px}"
        ".note{color:#59636e;font-size:.9rem}</style></head>"
        f"<body>{body}</body></html>"
    )


Handler = Callable[[Request], Response]


@dataclass
class Fault:
    path_contains: str
    status: int | None
    count: int
    delay_ms: int
    oauth_error: str | None = None


_OAUTH_ERROR = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


class Sandbox:
    """A router for one sandbox; subclasses register routes in ``__init__`` with ``self.route``."""

    name = "sandbox"

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._control_paths: set[str] = set()
        self._faults: list[Fault] = []
        self._fault_lock = threading.Lock()
        self.route("POST", "/_faults", self._add_fault)
        self.route("DELETE", "/_faults", self._clear_faults)

    def route(self, method: str, pattern: str, handler: Handler, *, control: bool = False) -> None:
        """Register ``handler`` for ``method`` and a path pattern with ``{name}`` parameters.

        ``control=True`` marks a sandbox control path (SPEC §5) that fault injection never touches."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method.upper(), re.compile(f"^{regex}$"), handler))
        if control:
            self._control_paths.add(pattern)

    def is_control(self, path: str) -> bool:
        return path.startswith("/_") or path in self._control_paths

    def oauth_error_response(self, request: Request, error: str, status: int | None) -> Response:
        """How this sandbox's provider answers an OAuth error (used by ``oauth_error`` faults)."""
        return json_response({"error": error}, status or 400, [("Cache-Control", "no-store"), ("Pragma", "no-cache")])

    def handle(self, request: Request) -> Response:
        if not self.is_control(request.path):
            fault = self._take_fault(request.path)
            if fault is not None:
                if fault.delay_ms:
                    time.sleep(fault.delay_ms / 1000)
                if fault.oauth_error:
                    return self.oauth_error_response(request, fault.oauth_error, fault.status)
                if fault.status:
                    return json_response(
                        {"message": f"Sandbox fault injected ({fault.status})", "sandbox_fault": True},
                        fault.status,
                    )
        allowed = []
        for method, regex, handler in self._routes:
            match = regex.match(request.path)
            if match is None:
                continue
            if method != request.method and not (method == "GET" and request.method == "HEAD"):
                allowed.append(method)
                continue
            request.params = match.groupdict()
            return handler(request)
        if allowed:
            return json_response({"message": "Method Not Allowed"}, 405, [("Allow", ", ".join(sorted(set(allowed))))])
        return json_response({"message": "Not Found"}, 404)

    # -- fault injection ---------------------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._fault_lock:
            for fault in self._faults:
                if fault.path_contains in path:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _add_fault(self, request: Request) -> Response:
        data = request.json()
        if not isinstance(data, dict):
            return json_response({"message": "Expected a JSON object"}, 400)
        try:
            status = int(data["status"]) if data.get("status") is not None else None
            fault = Fault(
                path_contains=str(data.get("path_contains") or ""),
                status=status,
                count=max(1, int(data.get("count", 1))),
                delay_ms=max(0, int(data.get("delay_ms", 0))),
                oauth_error=data.get("oauth_error") or None,
            )
        except (TypeError, ValueError):
            return json_response({"message": "status, count and delay_ms must be integers"}, 400)
        if status is not None and not 100 <= status <= 599:
            return json_response({"message": "status must be an HTTP status"}, 400)
        if fault.oauth_error is not None and not (isinstance(fault.oauth_error, str) and _OAUTH_ERROR.match(fault.oauth_error)):
            return json_response({"message": "oauth_error must be an OAuth error code such as slow_down"}, 400)
        with self._fault_lock:
            self._faults.append(fault)
            queued = len(self._faults)
        return json_response({"queued": queued}, 201)

    def _clear_faults(self, _request: Request) -> Response:
        with self._fault_lock:
            self._faults.clear()
        return Response(204)


def update_settings(request: Request, settings: dict[str, int], lock, *, minimum: dict[str, int] | None = None) -> Response:
    """Apply a ``POST /_config`` body to ``settings`` (positive integers only) under ``lock``; answers the
    settings now in force. Unknown names are refused so a typo in a test fails loudly."""
    data = request.json()
    if not isinstance(data, dict):
        return json_response({"message": "Expected a JSON object"}, 400)
    unknown = sorted(set(data) - set(settings))
    if unknown:
        return json_response({"message": f"Unknown settings: {', '.join(unknown)}", "settings": sorted(settings)}, 400)
    changes = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            return json_response({"message": f"{name} must be an integer"}, 400)
        if int(value) < (minimum or {}).get(name, 1):
            return json_response({"message": f"{name} must be at least {(minimum or {}).get(name, 1)}"}, 400)
        changes[name] = int(value)
    with lock:
        settings.update(changes)
        current = dict(settings)
    return json_response(current)
