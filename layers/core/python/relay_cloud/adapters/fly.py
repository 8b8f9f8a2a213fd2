"""The Fly.io provisioner: the Machines REST API (``<api_url>/v1``) over httpx, one idempotent method per
provisioning step (docs/design/compute-provisioning.md).

Idempotency comes from looking first: every ``ensure_*`` lists what exists and creates only what is
missing, so a retried step (Step Functions Retry, a redriven execution) never creates a second app,
volume or machine. Deletes treat 404 as done. GETs and DELETEs are retried here on 429/5xx/network
errors; POSTs are not (a POST whose answer was lost may have worked: the step's next attempt looks
first instead).

Errors: a 4xx is ``ProviderRejected`` (or ``AppNameTaken``) carrying Fly's own ``error`` text; 429,
5xx and network failures are ``UpstreamUnavailable`` (retryable). The token lives only in the client's
default headers: it is never in a log line, an exception or a message. Secret values are sent in one
request body and nowhere else.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote

import httpx

from relay_cloud.adapters.providers import RETRYABLE_STATUS, USER_AGENT, UpstreamUnavailable
from relay_cloud.domain.compute import (
    AppNameTaken,
    AppRef,
    IpRef,
    MachineRef,
    MachineSpec,
    ProviderRejected,
    VolumeRef,
)
from relay_cloud.domain.errors import ValidationFailed

logger = logging.getLogger(__name__)

PROVIDER = "fly"
WANTED_IP_TYPES = ("v6", "shared_v4")  # what `fly launch` allocates: a dedicated IPv6 and the free shared IPv4
GONE_STATES = frozenset({"destroying", "destroyed", "replacing_destroyed"})
GONE_VOLUME_STATES = frozenset({"destroying", "destroyed", "pending_destroy", "scheduling_destroy"})
MAX_WAIT_S = 60  # Fly answers a wait within 60 s at most


class FlyProvisioner:
    provider = PROVIDER

    def __init__(self, *, api_url: str, token: str, org: str, timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None, retries: int = 2, backoff_s: float = 0.2):
        if not token:
            raise ValidationFailed("Fly is not configured: no API token", code="COMPUTE_NOT_CONFIGURED")
        self.org = org
        self._token = token
        self._retries, self._backoff_s = retries, backoff_s
        self._http = httpx.Client(
            base_url=api_url.rstrip("/") + "/v1", timeout=timeout, transport=transport, follow_redirects=False,
            headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, "Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    # -- app -------------------------------------------------------------------------------------

    def ensure_app(self, app_name: str, org: str | None = None) -> AppRef:
        org = org or self.org
        existing = self._get_app(app_name)
        if existing is not None:
            return self._adopt(existing, app_name, org)
        response = self._call("POST", "/apps", json={"app_name": app_name, "org_slug": org})
        if response.status_code in (200, 201):
            return AppRef(name=app_name, org=org, created=True)
        if _name_taken(response):
            # Taken between our GET and POST: by a racing attempt of this very step (then it is ours),
            # or by someone else.
            existing = self._get_app(app_name)
            if existing is not None:
                return self._adopt(existing, app_name, org)
        self._reject(response, "create the app")

    def _get_app(self, app_name: str) -> dict | None:
        response = self._call("GET", f"/apps/{_seg(app_name)}", retry=True)
        if response.status_code == 404:
            return None
        if response.status_code == 403:  # the name exists in an organization our token cannot see
            raise AppNameTaken(f"The app name {app_name} is taken on Fly.io", provider=PROVIDER,
                               upstream_status=403, upstream_error=self._upstream_error(response))
        self._ok(response, "read the app")
        return _json(response)

    def _adopt(self, app: dict, app_name: str, org: str) -> AppRef:
        owner = (app.get("organization") or {}).get("slug")
        if owner != org:
            raise AppNameTaken(f"The app name {app_name} belongs to another Fly.io organization",
                               provider=PROVIDER, upstream_status=200, upstream_error="")
        return AppRef(name=app_name, org=org, created=False)

    def delete_app(self, app_name: str) -> None:
        response = self._call("DELETE", f"/apps/{_seg(app_name)}", params={"force": "true"}, retry=True)
        if response.status_code != 404:
            self._ok(response, "delete the app")

    # -- IP addresses ----------------------------------------------------------------------------

    def list_ips(self, app_name: str) -> list[IpRef]:
        response = self._call("GET", f"/apps/{_seg(app_name)}/ip_assignments", retry=True)
        self._ok(response, "list IP addresses")
        return [IpRef(address=str(ip.get("ip", "")), type=_ip_type(ip))
                for ip in _json(response).get("ips") or [] if isinstance(ip, dict)]

    def ensure_ips(self, app_name: str) -> list[IpRef]:
        ips = self.list_ips(app_name)
        for kind in WANTED_IP_TYPES:
            if any(ip.type == kind for ip in ips):
                continue
            response = self._call("POST", f"/apps/{_seg(app_name)}/ip_assignments", json={"type": kind})
            if response.status_code >= 400 and response.status_code < 500:
                ips = self.list_ips(app_name)  # an earlier attempt may have allocated it after all
                if any(ip.type == kind for ip in ips):
                    continue
            self._ok(response, f"allocate a {kind} address")
            body = _json(response)
            ips.append(IpRef(address=str(body.get("ip", "")), type=kind))
        return ips

    def release_ips(self, app_name: str) -> None:
        response = self._call("GET", f"/apps/{_seg(app_name)}/ip_assignments", retry=True)
        if response.status_code == 404:
            return
        self._ok(response, "list IP addresses")
        for ip in _json(response).get("ips") or []:
            address = str(ip.get("ip", "")) if isinstance(ip, dict) else ""
            if not address:
                continue
            deleted = self._call("DELETE", f"/apps/{_seg(app_name)}/ip_assignments/{_seg(address)}", retry=True)
            if deleted.status_code != 404:
                self._ok(deleted, "release an IP address")

    # -- volume ----------------------------------------------------------------------------------

    def ensure_volume(self, app_name: str, name: str, region: str, size_gb: int) -> VolumeRef:
        response = self._call("GET", f"/apps/{_seg(app_name)}/volumes", retry=True)
        self._ok(response, "list volumes")
        live = [v for v in _json_list(response) if v.get("name") == name and v.get("state") not in GONE_VOLUME_STATES]
        if live:
            # Fly allows several volumes of one name; ours is the oldest (a later one would be a duplicate).
            return _volume(sorted(live, key=lambda v: str(v.get("created_at", "")))[0])
        response = self._call("POST", f"/apps/{_seg(app_name)}/volumes",
                              json={"name": name, "region": region, "size_gb": size_gb, "encrypted": True,
                                    "require_unique_zone": False})
        self._ok(response, "create the volume")
        return _volume(_json(response))

    def delete_volume(self, app_name: str, volume_id: str) -> None:
        response = self._call("DELETE", f"/apps/{_seg(app_name)}/volumes/{_seg(volume_id)}", retry=True)
        if response.status_code != 404:
            self._ok(response, "delete the volume")

    # -- secrets ---------------------------------------------------------------------------------

    def set_secrets(self, app_name: str, values: dict[str, str]) -> int:
        """One bulk upsert; returns the app's secrets version. Safe to repeat (same values, same result),
        so it is retried like a read."""
        if not values:
            return 0
        response = self._call("POST", f"/apps/{_seg(app_name)}/secrets", json={"values": dict(values)}, retry=True)
        self._ok(response, "set the secrets")
        body = _json(response)
        version = body.get("version", body.get("Version", 0))
        return int(version) if isinstance(version, int) else 0

    def secret_names(self, app_name: str) -> list[str]:
        response = self._call("GET", f"/apps/{_seg(app_name)}/secrets", retry=True)
        self._ok(response, "list the secrets")
        return [str(s.get("name")) for s in _json(response).get("secrets") or [] if isinstance(s, dict)]

    # -- machine ---------------------------------------------------------------------------------

    def ensure_machine(self, app_name: str, name: str, spec: MachineSpec) -> MachineRef:
        if not spec.image:
            raise ValidationFailed("No workspace image is configured (RELAY_WORKSPACE_IMAGE)",
                                   code="COMPUTE_NOT_CONFIGURED")
        response = self._call("GET", f"/apps/{_seg(app_name)}/machines", retry=True)
        self._ok(response, "list machines")
        for machine in _json_list(response):
            if machine.get("name") == name and machine.get("state") not in GONE_STATES:
                return _machine(machine)
        response = self._call("POST", f"/apps/{_seg(app_name)}/machines",
                              json={"name": name, "region": spec.region, "config": _machine_config(spec)})
        self._ok(response, "create the machine")
        return _machine(_json(response))

    def get_machine(self, app_name: str, machine_id: str) -> MachineRef | None:
        response = self._call("GET", f"/apps/{_seg(app_name)}/machines/{_seg(machine_id)}", retry=True)
        if response.status_code == 404:
            return None
        self._ok(response, "read the machine")
        return _machine(_json(response))

    def machine_state(self, app_name: str, machine_id: str) -> str | None:
        machine = self.get_machine(app_name, machine_id)
        return machine.state if machine else None

    def wait_started(self, app_name: str, machine_id: str, timeout_s: int = MAX_WAIT_S) -> bool:
        """Block (≤ 60 s, Fly's cap) until the machine is started: True, or False at the deadline (the
        workflow's Wait-state loop decides whether to ask again)."""
        timeout_s = max(1, min(MAX_WAIT_S, int(timeout_s)))
        response = self._call("GET", f"/apps/{_seg(app_name)}/machines/{_seg(machine_id)}/wait",
                              params={"state": "started", "timeout": str(timeout_s)}, retry=True,
                              timeout=timeout_s + 10)
        if response.status_code == 408:
            return False
        self._ok(response, "wait for the machine")
        return True

    def start(self, app_name: str, machine_id: str) -> str:
        state = self._state_or_reject(app_name, machine_id)
        if state in ("started", "starting"):
            return state
        if state == "stopping":  # Fly refuses to start a stopping machine: let it settle first
            self._call("GET", f"/apps/{_seg(app_name)}/machines/{_seg(machine_id)}/wait",
                       params={"state": "stopped", "timeout": "30"}, retry=True, timeout=40)
        return self._transition(app_name, machine_id, "start", done=("started", "starting"))

    def stop(self, app_name: str, machine_id: str) -> str:
        state = self._state_or_reject(app_name, machine_id)
        if state in ("stopped", "stopping", "created", "suspended"):
            return state
        return self._transition(app_name, machine_id, "stop", done=("stopped", "stopping"))

    def restart(self, app_name: str, machine_id: str) -> str:
        state = self._state_or_reject(app_name, machine_id)
        if state in ("stopped", "created", "suspended", "stopping"):
            return self.start(app_name, machine_id)
        if state == "starting":
            return state
        return self._transition(app_name, machine_id, "restart", done=("stopping", "starting", "started"))

    def delete_machine(self, app_name: str, machine_id: str) -> None:
        response = self._call("DELETE", f"/apps/{_seg(app_name)}/machines/{_seg(machine_id)}",
                              params={"force": "true"}, retry=True)
        if response.status_code != 404:
            self._ok(response, "delete the machine")

    def _state_or_reject(self, app_name: str, machine_id: str) -> str:
        state = self.machine_state(app_name, machine_id)
        if state is None:
            raise ProviderRejected("The workspace machine no longer exists on Fly.io", provider=PROVIDER,
                                   upstream_status=404, upstream_error="machine not found")
        return state

    def _transition(self, app_name: str, machine_id: str, action: str, *, done: tuple[str, ...]) -> str:
        response = self._call("POST", f"/apps/{_seg(app_name)}/machines/{_seg(machine_id)}/{action}")
        if response.status_code == 412:  # already moved (a concurrent or earlier attempt): fine if it is where we want
            state = self._state_or_reject(app_name, machine_id)
            if state in done:
                return state
        self._ok(response, f"{action} the machine")
        return self._state_or_reject(app_name, machine_id)

    # -- certificates (custom domains) ----------------------------------------------------------

    def add_certificate(self, app_name: str, hostname: str) -> str:
        """Ask Fly for a Let's Encrypt certificate of ``hostname`` on the app; answers its status. Looks
        first, so a repeated verify never requests a second one. A hostname held by another Fly app is
        Fly's 422 (``ProviderRejected``)."""
        status = self.certificate_status(app_name, hostname)
        if status is not None:
            return status
        response = self._call("POST", f"/apps/{_seg(app_name)}/certificates/acme", json={"hostname": hostname})
        if 400 <= response.status_code < 500:
            status = self.certificate_status(app_name, hostname)  # an earlier attempt may have created it
            if status is not None:
                return status
        self._ok(response, "request the certificate")
        return _certificate_status(_json(response))

    def certificate_status(self, app_name: str, hostname: str) -> str | None:
        """``pending`` | ``active`` | ``failed``, or None when the app has no certificate for ``hostname``."""
        response = self._call("GET", f"/apps/{_seg(app_name)}/certificates/{_seg(hostname)}", retry=True)
        if response.status_code == 404:
            return None
        self._ok(response, "read the certificate")
        return _certificate_status(_json(response))

    def delete_certificate(self, app_name: str, hostname: str) -> None:
        """Remove the hostname and its certificates from the app; 404 (already gone, or the app is) = done."""
        response = self._call("DELETE", f"/apps/{_seg(app_name)}/certificates/{_seg(hostname)}", retry=True)
        if response.status_code != 404:
            self._ok(response, "delete the certificate")

    # -- transport -------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, json=None, params=None, retry: bool = False,
              timeout: float | None = None) -> httpx.Response:
        attempts = self._retries + 1 if retry else 1
        extra = {"timeout": timeout} if timeout is not None else {}
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                response = self._http.request(method, path, json=json, params=params, **extra)
            except httpx.HTTPError as exc:
                response = None
                logger.warning(json_line(msg="fly call failed", method=method, path=path, error=type(exc).__name__))
            else:
                logger.info(json_line(msg="fly call", method=method, path=path, status=response.status_code,
                                      ms=round((time.monotonic() - started) * 1000)))
                if response.status_code not in RETRYABLE_STATUS:
                    return response
            if attempt + 1 < attempts:
                time.sleep(self._backoff_s * (2**attempt))
        raise UpstreamUnavailable(PROVIDER)

    def _ok(self, response: httpx.Response, action: str) -> None:
        if response.status_code < 400:
            return
        self._reject(response, action)

    def _reject(self, response: httpx.Response, action: str):
        if response.status_code in RETRYABLE_STATUS or response.status_code >= 500:
            raise UpstreamUnavailable(PROVIDER)
        upstream = self._upstream_error(response)
        error = AppNameTaken if _name_taken(response) else ProviderRejected
        raise error(f"Fly.io refused to {action}: {upstream or f'HTTP {response.status_code}'}",
                    provider=PROVIDER, upstream_status=response.status_code, upstream_error=upstream)

    def _upstream_error(self, response: httpx.Response) -> str:
        body = _json(response)
        text = str(body.get("error") or body.get("message") or "")
        return text.replace(self._token, "[redacted]")[:200]


def json_line(**fields) -> str:
    return json.dumps(fields, separators=(",", ":"))


def _seg(value: str) -> str:
    return quote(str(value), safe="")


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _json_list(response: httpx.Response) -> list[dict]:
    try:
        body = response.json()
    except ValueError:
        return []
    return [item for item in body if isinstance(item, dict)] if isinstance(body, list) else []


def _name_taken(response: httpx.Response) -> bool:
    if response.status_code not in (409, 422):
        return False
    body = _json(response)
    if body.get("status"):  # Fly's classification, when present, is authoritative
        return body["status"] == "name_taken"
    return "already been taken" in str(body.get("error", ""))


# Fly's certificate answers: ``configured`` once a certificate is issued and the hostname routes to the
# app; ``status`` (and each issued certificate's) says how far the ACME order got.
_CERT_ACTIVE = frozenset({"active", "ready", "issued", "valid"})
_CERT_FAILED = frozenset({"failed", "error", "errored", "invalid", "revoked", "expired", "validation_failed"})


def _certificate_status(body: dict) -> str:
    statuses = {str(body.get("status") or "").lower()}
    statuses |= {str(c.get("status") or "").lower() for c in body.get("certificates") or [] if isinstance(c, dict)}
    if body.get("configured") is True or statuses & _CERT_ACTIVE:
        return "active"
    if statuses & _CERT_FAILED:
        return "failed"
    return "pending"


def _ip_type(ip: dict) -> str:
    """Fly's own reading of an assignment (fly-go ``IPAssignment.Type``)."""
    address = str(ip.get("ip", ""))
    if ip.get("egress"):
        return "egress_v6" if ":" in address else "egress_v4"
    if address.startswith("fdaa:"):
        return "private_v6"
    if ip.get("shared"):
        return "shared_v4"
    return "v6" if ":" in address else "v4"


def _volume(body: dict) -> VolumeRef:
    return VolumeRef(id=str(body.get("id", "")), name=str(body.get("name", "")), region=str(body.get("region", "")),
                     size_gb=int(body.get("size_gb") or 0), attached_machine_id=body.get("attached_machine_id"))


def _machine(body: dict) -> MachineRef:
    mounts = (body.get("config") or {}).get("mounts") or []
    return MachineRef(id=str(body.get("id", "")), name=str(body.get("name", "")), state=str(body.get("state", "")),
                      region=str(body.get("region", "")), instance_id=str(body.get("instance_id", "")),
                      volume_id=(mounts[0].get("volume") if mounts and isinstance(mounts[0], dict) else None))


def _machine_config(spec: MachineSpec) -> dict:
    config = {
        "image": spec.image,
        "guest": spec.size.guest(),
        "env": dict(spec.env),
        "metadata": dict(spec.metadata),
        "restart": {"policy": "on-failure", "max_retries": 5},
        # Start and stop are ours (the dashboard's lifecycle and usage metering): Fly's proxy must not
        # stop an idle workspace or wake a stopped one behind our back.
        "services": [{
            "protocol": "tcp",
            "internal_port": spec.internal_port,
            "autostop": "off",
            "autostart": False,
            "ports": [{"port": 443, "handlers": ["tls", "http"]}, {"port": 80, "handlers": ["http"], "force_https": True}],
        }],
        "checks": {"health": {"type": "http", "port": spec.internal_port, "method": "GET", "path": "/health",
                              "interval": "15s", "timeout": "5s", "grace_period": "30s"}},
    }
    if spec.volume_id:
        config["mounts"] = [{"volume": spec.volume_id, "path": spec.mount_path}]
    return config
