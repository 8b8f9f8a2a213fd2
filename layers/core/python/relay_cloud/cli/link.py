"""``relay-cloud link``: link this machine through the cloud's RFC 8628 device authorization server.

Generate an X25519 key pair, ask ``/api/daemons/link/device`` for a code, show it (and a QR code of the
verification URL), poll ``/api/daemons/link/token`` as RFC 8628 §3.4–3.5 asks, save the daemon key.
"""

from __future__ import annotations

import base64
import io
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

import httpx

from relay_cloud.cli import config as cfg
from relay_cloud.cli._http import (
    CLIENT_ID,
    CloudURLError,
    client,
    default_cloud_url,
    describe_network_error,
    error_code,
    normalize_cloud_url,
)

DEVICE_PATH = "/api/daemons/link/device"
TOKEN_PATH = "/api/daemons/link/token"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5  # RFC 8628 §3.2: when the server sends no interval
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5
MAX_BACKOFF = 60.0  # cap of the exponential backoff after network errors
TRANSIENT_STATUSES = {429, 502, 503, 504}  # retried like network errors
EXIT_INTERRUPTED = 130


class LinkError(Exception):
    """Linking failed; the message is what the user reads."""


@dataclass(frozen=True)
class DeviceAuthorization:
    device_code: str = ""
    user_code: str = ""
    verification_uri: str = ""
    verification_uri_complete: str = ""
    expires_in: int = 600
    interval: int = DEFAULT_INTERVAL

    def __repr__(self) -> str:  # the device code is a credential until it is consumed
        return f"DeviceAuthorization(user_code={self.user_code!r}, expires_in={self.expires_in})"


@dataclass(frozen=True)
class LinkedKey:
    daemon_id: str
    api_key: str

    def __repr__(self) -> str:
        return f"LinkedKey(daemon_id={self.daemon_id!r})"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_key_pair() -> tuple[str, str]:
    """``(private, public)``: base64url without padding of the raw 32-byte X25519 keys."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.generate()
    return b64url(private.private_bytes_raw()), b64url(private.public_key().public_bytes_raw())


def request_device_code(http: httpx.Client, *, machine_id: str, name: str, public_key: str) -> DeviceAuthorization:
    """RFC 8628 §3.1–3.2."""
    try:
        response = http.post(
            DEVICE_PATH,
            data={"client_id": CLIENT_ID, "machine_id": machine_id, "name": name, "public_key": public_key},
        )
    except httpx.TransportError as exc:
        raise LinkError(f"cannot reach the cloud at {http.base_url}: {describe_network_error(exc)}") from None
    if response.status_code != 200:
        code, description = error_code(response)
        detail = f"{code}: {description}" if code and description else code or description or response.reason_phrase
        raise LinkError(f"the cloud refused the link request (HTTP {response.status_code}, {detail})")
    try:
        body = response.json()
        auth = DeviceAuthorization(
            device_code=_required(body, "device_code"),
            user_code=_required(body, "user_code"),
            verification_uri=_required(body, "verification_uri"),
            verification_uri_complete=body.get("verification_uri_complete") or "",
            expires_in=int(body.get("expires_in", 600)),
            interval=int(body.get("interval", DEFAULT_INTERVAL)),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise LinkError(f"the cloud sent an unexpected answer to the link request ({exc})") from None
    if auth.expires_in <= 0:
        raise LinkError("the cloud sent a link code that has already expired")
    return auth


def _required(body: dict, name: str) -> str:
    value = body[name] if name in body else None
    if not isinstance(value, str) or not value:
        raise ValueError(f"missing {name}")
    return value


def poll_for_key(
    http: httpx.Client,
    auth: DeviceAuthorization,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[str, float], None] | None = None,
) -> LinkedKey:
    """RFC 8628 §3.4–3.5: wait ``interval`` between polls; ``slow_down`` adds 5 s to this and every later
    wait; network errors (and 429/502/503/504) back off exponentially, capped, until the code expires;
    ``access_denied``, ``expired_token`` and any other error stop with a :class:`LinkError`."""
    deadline = clock() + auth.expires_in
    interval = float(max(auth.interval, 1))
    wait = interval
    failures = 0
    while True:
        sleep(max(0.0, min(wait, deadline - clock())))
        if clock() >= deadline:
            raise LinkError("the code expired before it was approved — run relay-cloud link again")
        try:
            response = http.post(
                TOKEN_PATH, data={"grant_type": GRANT_TYPE, "device_code": auth.device_code, "client_id": CLIENT_ID}
            )
        except httpx.TransportError as exc:
            failures += 1
            wait = min(interval * 2**failures, max(MAX_BACKOFF, interval))
            if on_retry:
                on_retry(describe_network_error(exc), wait)
            continue
        if response.status_code in TRANSIENT_STATUSES:
            failures += 1
            wait = min(interval * 2**failures, max(MAX_BACKOFF, interval))
            if on_retry:
                on_retry(f"HTTP {response.status_code}", wait)
            continue
        failures = 0
        if response.status_code == 200:
            return _linked_key(response)
        code, description = error_code(response)
        if code == "authorization_pending":
            wait = interval
            continue
        if code == "slow_down":
            interval += SLOW_DOWN_STEP
            wait = interval
            continue
        if code == "access_denied":
            raise LinkError("the link request was denied in the dashboard")
        if code == "expired_token":
            raise LinkError("the code expired before it was approved — run relay-cloud link again")
        detail = f"{code}: {description}" if code and description else code or description or response.reason_phrase
        raise LinkError(f"the cloud refused to issue the key (HTTP {response.status_code}, {detail})")


def _linked_key(response: httpx.Response) -> LinkedKey:
    try:
        body = response.json()
        daemon_id, api_key = _required(body, "daemon_id"), _required(body, "access_token")
    except (ValueError, TypeError, AttributeError):
        raise LinkError("the cloud sent an unexpected answer instead of the daemon key") from None
    if not api_key.startswith(f"rly_{daemon_id}_") or len(api_key) <= len(f"rly_{daemon_id}_"):
        raise LinkError("the cloud sent a daemon key in an unexpected format")
    return LinkedKey(daemon_id=daemon_id, api_key=api_key)


def default_name() -> str:
    name = socket.gethostname().split(".")[0].strip() or "machine"
    return name[:64]


def validate_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64 or not name.isprintable():
        raise LinkError("--name must be 1 to 64 printable characters")
    return name


def format_code(user_code: str) -> str:
    """``BCDFGHJK`` or ``bcdf-ghjk`` → ``BCDF-GHJK``."""
    letters = "".join(c for c in user_code if c.isalnum()).upper()
    return f"{letters[:4]}-{letters[4:]}" if len(letters) == 8 else user_code


def code_banner(user_code: str, *, bold: bool = False) -> str:
    code = format_code(user_code)
    inner = f"   {code}   "
    shown = f"\033[1m{code}\033[0m" if bold else code
    return "\n".join(
        (f"  ┌{'─' * len(inner)}┐", f"  │   {shown}   │", f"  └{'─' * len(inner)}┘")
    )


def qr_text(data: str) -> str | None:
    """The QR code as compact Unicode blocks, or ``None`` when segno (the ``cli`` extra) is missing."""
    try:
        import segno
    except ImportError:
        return None
    out = io.StringIO()
    segno.make(data, error="l", micro=False).terminal(out=out, compact=True, border=2)
    return out.getvalue().rstrip("\n")


def run(
    *,
    cloud: str | None = None,
    name: str | None = None,
    force: bool = False,
    qr: bool = True,
    home: Path | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr

    def say(text: str = "") -> None:
        print(text, file=out, flush=True)

    def fail(text: str) -> int:
        print(f"relay-cloud link: {text}", file=err, flush=True)
        return 1

    try:
        directory = cfg.data_dir() if home is None else Path(home)
        try:
            cloud_url = normalize_cloud_url(cloud or default_cloud_url())
            machine_name = validate_name(name) if name is not None else default_name()
        except (CloudURLError, LinkError) as exc:
            return fail(str(exc))
        try:
            existing = cfg.load(directory)
        except cfg.ConfigError as exc:
            if not force:
                return fail(f"{exc}; run relay-cloud link --force to replace it")
            existing = None
        if existing is not None and not force:
            return fail(
                f"this machine is already linked as {existing.name} ({existing.daemon_id}) to {existing.cloud_url}. "
                "Run relay-cloud unlink first, or relay-cloud link --force to replace the local link."
            )
        if existing is not None:
            say(
                f"Replacing the local link {existing.name} ({existing.daemon_id}) at {existing.cloud_url}. "
                "It stays linked on the server: unlink it from the dashboard's Machines page."
            )
        try:
            machine_id = cfg.machine_id(directory)
        except OSError as exc:
            return fail(f"cannot store a machine id in {directory}: {exc.strerror or exc}")
        private_key, public_key = generate_key_pair()

        with client(cloud_url) as http:
            try:
                auth = request_device_code(http, machine_id=machine_id, name=machine_name, public_key=public_key)
            except LinkError as exc:
                return fail(str(exc))
            tty = _isatty(out)
            say(f"To link {machine_name} to Agent Relay Cloud, open")
            say(f"  {auth.verification_uri}")
            say("and enter the code")
            say(code_banner(auth.user_code, bold=tty))
            if auth.verification_uri_complete:
                say(f"or open {auth.verification_uri_complete}")
                if qr and tty:
                    text = qr_text(auth.verification_uri_complete)
                    if text:
                        say("or scan:")
                        say(text)
            minutes = max(1, round(auth.expires_in / 60))
            say(f"Waiting for approval (the code expires in {minutes} minute{'s' if minutes != 1 else ''}; "
                "Ctrl-C to cancel)…")

            def retrying(reason: str, wait: float) -> None:
                print(f"relay-cloud link: the cloud is unreachable ({reason}); retrying in {wait:.0f} s",
                      file=err, flush=True)

            try:
                key = poll_for_key(http, auth, sleep=sleep, clock=clock, on_retry=retrying)
            except LinkError as exc:
                return fail(str(exc))

        linked = cfg.Config(
            cloud_url=cloud_url, daemon_id=key.daemon_id, api_key=key.api_key, machine_id=machine_id,
            name=machine_name, private_key=private_key,
        )
        try:
            path = cfg.save(linked, directory)
        except OSError as exc:
            return fail(
                f"linked as {key.daemon_id} but cannot save {cfg.config_path(directory)}: {exc.strerror or exc}. "
                "Unlink the machine from the dashboard and try again."
            )
        say(f"Linked {machine_name} as {key.daemon_id}")
        say(f"  config: {path}")
        return 0
    except KeyboardInterrupt:
        print("\nrelay-cloud link: cancelled; nothing was saved", file=err, flush=True)
        return EXIT_INTERRUPTED


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
