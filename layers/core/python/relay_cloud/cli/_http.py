"""What link, unlink and status share: the cloud URL, the HTTP client, error text."""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

import httpx

DEFAULT_CLOUD_URL = "http://127.0.0.1:8787"
CLIENT_ID = "relay-cloud-cli"
USER_AGENT = "relay-cloud-cli/0.1"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class CloudURLError(ValueError):
    pass


def default_cloud_url() -> str:
    return os.environ.get("RELAY_CLOUD_URL", "").strip() or DEFAULT_CLOUD_URL


def normalize_cloud_url(url: str) -> str:
    """``https://host[:port][/prefix]`` without a trailing slash. Plain http only to a loopback host: the
    daemon key is a bearer credential and must not cross a network in clear text."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CloudURLError(f"{url!r} is not an http(s) URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise CloudURLError(f"{url!r}: the cloud URL takes no credentials, query or fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise CloudURLError(f"{url!r}: use https (plain http is only allowed to localhost)")
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client(base_url: str, *, api_key: str | None = None) -> httpx.Client:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.Client(base_url=base_url, headers=headers, timeout=TIMEOUT, follow_redirects=False)


def describe_network_error(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def error_code(response: httpx.Response) -> tuple[str, str]:
    """``(code, description)`` from an RFC 6749 ``{"error": ...}`` or our ``{"code": ...}`` body."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    if "code" in body:  # the API's own errors: {"error": <message>, "code": <CODE>}
        code, description = body.get("code"), body.get("error")
    else:  # RFC 6749 §5.2: {"error": <code>, "error_description": <text>}
        code, description = body.get("error"), body.get("error_description")
    return (code if isinstance(code, str) else ""), (description if isinstance(description, str) else "")
