"""The one local HTTP server: sandboxes, the API gateway and the static web app on 127.0.0.1.

    /_sandbox/<name>/...   the mounted sandbox upstreams (only when the stack mounts them)
    /health, /api/...      the API Gateway adapter (relay_cloud.local.gateway)
    anything else          static files from web/: "/" → index.html, "/x" → x.html, "/dashboard[/...]"
                           → dashboard.html, other files by path; no listings, nothing outside web/
"""

from __future__ import annotations

import json
import logging
import mimetypes
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from relay_cloud.http.web_policy import CONTENT_SECURITY_POLICY
from relay_cloud.local.gateway import Gateway, split_target
from relay_cloud.local.repo import WEB_DIR
from relay_cloud.sandbox.base import Request as SandboxRequest

access_log = logging.getLogger("relay_cloud.local.access")

DEFAULT_WEB_DIR = WEB_DIR
MAX_BODY = 10 * 1024 * 1024
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".webmanifest": "application/manifest+json",
}
_STATIC_HEADERS = [
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),  # as CloudFront sends it
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Cache-Control", "no-cache"),
]
_NOT_FOUND_PAGE = (
    b"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found - Agent Relay Cloud"
    b"</title></head><body><h1>Not found</h1><p>There is nothing at this address. "
    b"<a href=\"/\">Back to the start page</a>.</p></body></html>"
)


def content_type(path: Path) -> str:
    return _CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class StaticSite:
    """Serves files under one directory, refusing anything that resolves outside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _file(self, relative: str) -> Path | None:
        if not relative or "\x00" in relative:
            return None
        parts = [p for p in relative.split("/") if p]
        if any(p in (".", "..") or p.startswith(".") or "\\" in p for p in parts):
            return None  # no traversal, no dotfiles
        candidate = (self.root / "/".join(parts)).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def resolve(self, url_path: str) -> Path | None:
        path = unquote(url_path)
        if path in ("", "/"):
            return self._file("index.html")
        if path == "/dashboard" or path.startswith("/dashboard/"):
            return self._file("dashboard.html")
        relative = path.lstrip("/")
        found = self._file(relative)
        if found is None and not relative.endswith("/") and "." not in relative.rsplit("/", 1)[-1]:
            found = self._file(relative + ".html")
        return found

    def not_found(self) -> tuple[int, list[tuple[str, str]], bytes]:
        page = self._file("404.html")
        body = page.read_bytes() if page else _NOT_FOUND_PAGE
        return 404, [("Content-Type", "text/html; charset=utf-8"), *_STATIC_HEADERS], body

    def serve(self, method: str, url_path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        if method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")], b"Method Not Allowed"
        found = self.resolve(url_path)
        if found is None:
            return self.not_found()
        return 200, [("Content-Type", content_type(found)), *_STATIC_HEADERS], found.read_bytes()


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, *, host: str = "127.0.0.1", gateway: Gateway | None = None,
                 sandboxes: dict | None = None, web_dir: Path | None = None) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the local server binds to the loopback interface only")
        super().__init__((host, port), _Handler)
        self.gateway = gateway or Gateway()
        self.sandboxes = dict(sandboxes or {})
        self.site = StaticSite(web_dir or DEFAULT_WEB_DIR)

    def handle_error(self, request, client_address) -> None:
        """A browser or client that hangs up mid-response is normal; anything else is logged by type
        only (socketserver's default prints a traceback, whose values could carry request data)."""
        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)):
            return
        access_log.error(json.dumps({"msg": "request handling failed", "error_type": type(error).__name__}))

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms.
    disable_nagle_algorithm = True
    server_version = "relay-cloud-dev"
    sys_version = ""
    timeout = 60  # idle keep-alive connections are closed after this
    server: LocalServer

    def log_message(self, format, *args):  # noqa: A002 - the gateway and this class log themselves
        pass

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _dispatch(self) -> None:
        started = time.perf_counter()
        try:
            body = self._body()
        except ValueError:
            self.close_connection = True
            self._send(400, [("Content-Type", "text/plain")], b"Bad Request")
            return
        if body is None:
            self.close_connection = True
            self._send(413, [("Content-Type", "text/plain")], b"Payload Too Large")
            return
        path, query = split_target(self.path)
        if not path.startswith("/"):  # absolute-form targets are for proxies
            self._send(400, [("Content-Type", "text/plain")], b"Bad Request")
            return
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            status, headers, payload = self._sandbox(path, query, body)
            self._log(path, status, started, "sandbox")
        elif path == "/health" or path == "/api" or path.startswith("/api/"):
            response = self.server.gateway.handle(
                self.command, self.path, list(self.headers.items()), body, source_ip=self.client_address[0]
            )
            status, headers, payload = response.status, response.headers, response.body
        else:
            status, headers, payload = self.server.site.serve(self.command, path)
            self._log(path, status, started, "static")
        self._send(status, headers, payload)

    def _sandbox(self, path: str, query: str, body: bytes):
        name, _, rest = path[len("/_sandbox/"):].partition("/")
        sandbox = self.server.sandboxes.get(name)
        if sandbox is None:
            payload = json.dumps({"message": "Not Found"}).encode()
            return 404, [("Content-Type", "application/json")], payload
        base_path = f"/_sandbox/{name}"
        request = SandboxRequest.build(
            self.command, "/" + rest + (f"?{query}" if query else ""), list(self.headers.items()), body,
            base_path=base_path, base_url=self.server.url + base_path,
        )
        try:
            response = sandbox.handle(request)
        except Exception as exc:  # a sandbox bug must not kill the connection thread silently
            access_log.error(json.dumps({"msg": "sandbox failed", "sandbox": name, "error": type(exc).__name__}))
            return 500, [("Content-Type", "application/json")], b'{"message":"Sandbox error"}'
        return response.status, response.headers, response.body

    def _log(self, path: str, status: int, started: float, kind: str) -> None:
        # The path only: never the query string (OAuth codes and states), headers, cookies or bodies.
        access_log.info(json.dumps({
            "msg": "request", "kind": kind, "method": self.command, "path": path, "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }, separators=(",", ":")))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch
