"""A Fly.io fake: the Machines REST API (``/v1``) and the GraphQL operations we use (``/graphql``).

Paths, fields, status codes and error bodies follow Fly's documentation (fly.io/docs/machines/api:
apps, machines, volumes, certificates resources) and its Go client (superfly/fly-go ``flaps``: secrets,
ip_assignments, the ``{"error", "status"}`` error body with ``name_taken``). The contract, including
what the sandbox decides where Fly's documentation is silent, is docs/design/compute-provisioning.md.

    Apps          POST /v1/apps, GET /v1/apps?org_slug=, GET|DELETE /v1/apps/{app}
    Machines      GET|POST /v1/apps/{app}/machines, GET|DELETE .../machines/{id} (?force=true),
                  POST .../{id}/start|stop|restart, GET .../{id}/wait?state=&timeout=
    Volumes       GET|POST /v1/apps/{app}/volumes, GET|DELETE .../volumes/{id}
    Secrets       GET|POST /v1/apps/{app}/secrets, POST|DELETE .../secrets/{name}
    IPs           GET|POST /v1/apps/{app}/ip_assignments, DELETE .../ip_assignments/{ip}
    Certificates  GET /v1/apps/{app}/certificates[/{hostname}], POST .../certificates/acme,
                  POST .../{hostname}/check, DELETE .../{hostname}
    GraphQL       allocateIpAddress, releaseIpAddress(V2), addCertificate, deleteCertificate,
                  app(name) { ipAddresses { nodes } certificate(hostname) certificates { nodes } }

Every API path needs a bearer token registered for one organization (``register_token``). Machine
states move with the (injectable) clock: created → starting → started, stopping → stopped. Secret
values are reduced to digests on arrival: nothing can leak them, not even the inventory.

Sandbox control surface (SPEC §5; never faulted):
    GET  /_inventory      apps, machines (with state), volumes, IPs, certificates, secret names, counts
    POST /_faults         the shared fault injection ({"path_contains", "status", "count", "delay_ms"})
    GET|POST /_config     {"launch_ms", "boot_ms", "stop_ms", "certificate_ms"}
    POST /_reset          forget every app
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

from relay_cloud.sandbox.base import Request, Response, Sandbox, json_response, update_settings

REGIONS = frozenset(
    "ams arn atl bog bom bos cdg den dfw ewr eze fra gdl gig gru hkg iad jnb lax lhr mad mia nrt ord otp "
    "phx qro scl sea sin sjc syd waw yul yyz".split()
)
APP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
VOLUME_NAME = re.compile(r"^[a-z0-9_]{1,30}$")
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
WAITABLE_STATES = ("started", "stopped", "suspended", "destroyed")
MAX_WAIT_SECONDS = 60  # Fly caps a wait request at 60 s (flaps proxyTimeoutThreshold)
LIVE_STATES = ("created", "starting", "started", "stopping", "stopped", "suspended")
IP_TYPES = ("v4", "v6", "shared_v4", "private_v6")
SHARED_V4 = "66.241.124.1"  # one shared anycast address, like Fly's shared IPv4 pool
_WORDS = ("aged", "bold", "calm", "dark", "fancy", "green", "late", "misty", "proud", "quiet", "rough", "wild")
_NOUNS = ("wind", "sun", "moon", "field", "river", "snow", "leaf", "bird", "star", "wave", "stone", "cloud")


def _error(message: str, http_status: int, **extra) -> Response:
    return json_response({"error": message, **extra}, http_status)


def _hex_id(length: int = 14) -> str:
    return secrets.token_hex(length // 2 + 1)[:length]


def _ulid() -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(26))


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@dataclass
class Machine:
    id: str
    name: str
    region: str
    config: dict
    instance_id: str
    private_ip: str
    created_at: float
    updated_at: float
    state: str = "created"
    pending: list[tuple[float, str]] = field(default_factory=list)  # (when, next state), in order
    events: list[dict] = field(default_factory=list)

    @property
    def volume_ids(self) -> list[str]:
        return [m.get("volume") for m in self.config.get("mounts") or [] if m.get("volume")]


@dataclass
class Volume:
    id: str
    name: str
    region: str
    size_gb: int
    zone: str
    created_at: float
    attached_machine_id: str | None = None
    state: str = "created"


@dataclass
class IpAssignment:
    id: str
    ip: str
    type: str
    region: str
    created_at: float


@dataclass
class Certificate:
    id: str
    hostname: str
    created_at: float


@dataclass
class App:
    id: str
    name: str
    org_slug: str
    network: str
    created_at: float
    machines: dict[str, Machine] = field(default_factory=dict)
    destroyed_machines: set[str] = field(default_factory=set)
    volumes: dict[str, Volume] = field(default_factory=dict)
    secrets: dict[str, dict] = field(default_factory=dict)  # name -> {digest, created_at, updated_at}
    secrets_version: int = 0
    ips: list[IpAssignment] = field(default_factory=list)
    certificates: dict[str, Certificate] = field(default_factory=dict)


class FlySandbox(Sandbox):
    name = "fly"

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 dns_configured: Callable[[str, str], bool] | None = None) -> None:
        super().__init__()
        self.clock = clock
        # Whether ``hostname`` points at ``app`` (the local stack can ask the DNS sandbox); default yes.
        self.dns_configured = dns_configured or (lambda _hostname, _app: True)
        self._lock = threading.RLock()
        self._tokens: dict[str, str] = {}  # token -> org slug
        self._apps: dict[str, App] = {}
        self._ip_counter = 0
        self.settings = {"launch_ms": 150, "boot_ms": 600, "stop_ms": 300, "certificate_ms": 1000}
        self.requests = 0  # API calls seen (the benchmark counts upstream calls per provision)

        self.route("GET", "/_inventory", self.inventory, control=True)
        self.route("GET", "/_config", self.get_config, control=True)
        self.route("POST", "/_config", self.set_config, control=True)
        self.route("POST", "/_reset", self.reset, control=True)

        self.route("POST", "/v1/apps", self._api(self.create_app))
        self.route("GET", "/v1/apps", self._api(self.list_apps))
        self.route("GET", "/v1/apps/{app}", self._app_api(self.get_app))
        self.route("DELETE", "/v1/apps/{app}", self._app_api(self.delete_app))

        self.route("GET", "/v1/apps/{app}/machines", self._app_api(self.list_machines))
        self.route("POST", "/v1/apps/{app}/machines", self._app_api(self.create_machine))
        self.route("GET", "/v1/apps/{app}/machines/{machine_id}", self._app_api(self.get_machine))
        self.route("DELETE", "/v1/apps/{app}/machines/{machine_id}", self._app_api(self.delete_machine))
        self.route("POST", "/v1/apps/{app}/machines/{machine_id}/start", self._app_api(self.start_machine))
        self.route("POST", "/v1/apps/{app}/machines/{machine_id}/stop", self._app_api(self.stop_machine))
        self.route("POST", "/v1/apps/{app}/machines/{machine_id}/restart", self._app_api(self.restart_machine))
        self.route("GET", "/v1/apps/{app}/machines/{machine_id}/wait", self._api(self.wait_machine))

        self.route("GET", "/v1/apps/{app}/volumes", self._app_api(self.list_volumes))
        self.route("POST", "/v1/apps/{app}/volumes", self._app_api(self.create_volume))
        self.route("GET", "/v1/apps/{app}/volumes/{volume_id}", self._app_api(self.get_volume))
        self.route("DELETE", "/v1/apps/{app}/volumes/{volume_id}", self._app_api(self.delete_volume))

        self.route("GET", "/v1/apps/{app}/secrets", self._app_api(self.list_secrets))
        self.route("POST", "/v1/apps/{app}/secrets", self._app_api(self.update_secrets))
        self.route("POST", "/v1/apps/{app}/secrets/{secret_name}", self._app_api(self.set_secret))
        self.route("DELETE", "/v1/apps/{app}/secrets/{secret_name}", self._app_api(self.delete_secret))

        self.route("GET", "/v1/apps/{app}/ip_assignments", self._app_api(self.list_ips))
        self.route("POST", "/v1/apps/{app}/ip_assignments", self._app_api(self.assign_ip))
        self.route("DELETE", "/v1/apps/{app}/ip_assignments/{ip}", self._app_api(self.delete_ip))

        self.route("GET", "/v1/apps/{app}/certificates", self._app_api(self.list_certificates))
        self.route("POST", "/v1/apps/{app}/certificates/acme", self._app_api(self.request_certificate))
        self.route("GET", "/v1/apps/{app}/certificates/{hostname}", self._app_api(self.get_certificate))
        self.route("POST", "/v1/apps/{app}/certificates/{hostname}/check", self._app_api(self.get_certificate))
        self.route("DELETE", "/v1/apps/{app}/certificates/{hostname}", self._app_api(self.delete_certificate))

        self.route("POST", "/graphql", self._api(self.graphql))

    # -- tokens, auth and app lookup -------------------------------------------------------------

    def register_token(self, token: str, org_slug: str) -> None:
        """An organization token (``fly tokens create org``): it sees and manages that org's apps."""
        with self._lock:
            self._tokens[token] = org_slug

    def _org_of(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "flyv1"):
            return None
        with self._lock:
            return self._tokens.get(value.strip())

    def _api(self, handler):
        def authenticated(request: Request) -> Response:
            org = self._org_of(request)
            with self._lock:
                self.requests += 1
            if org is None:
                return _error("Authenticate: token validation error", 401)
            return handler(request, org)
        return authenticated

    def _app_api(self, handler):
        """Authenticated, and the app exists in the token's org (404 / 403 as Fly answers)."""
        def scoped(request: Request, org: str) -> Response:
            with self._lock:
                app = self._apps.get(request.params["app"])
                if app is None:
                    return _error("app not found", 404)
                if app.org_slug != org:
                    return _error("unauthorized", 403)
                self._advance_all(app)
                return handler(request, app)
        return self._api(scoped)

    # -- apps ------------------------------------------------------------------------------------

    def create_app(self, request: Request, org: str) -> Response:
        data = request.json()
        if not isinstance(data, dict) or not isinstance(data.get("app_name"), str) or not data.get("org_slug"):
            return _error("app_name and org_slug are required", 400)
        name = data["app_name"]
        if data["org_slug"] != org:
            return _error("unauthorized", 403)
        if not APP_NAME.match(name):
            return _error("Validation failed: Name may only contain lowercase letters, numbers, and dashes, "
                          "and must be 1-63 characters", 422)
        with self._lock:
            if name in self._apps:  # app names are one namespace across all of Fly
                return _error("Validation failed: Name has already been taken", 422, status="name_taken")
            app = App(id=secrets.token_hex(8), name=name, org_slug=org,
                      network=str(data.get("network") or "default"), created_at=self.clock())
            self._apps[name] = app
        return json_response({"id": app.id, "created_at": int(app.created_at * 1000)}, 201)

    def list_apps(self, request: Request, org: str) -> Response:
        slug = request.arg("org_slug")
        if not slug:
            return _error("org_slug is required", 400)
        if slug != org:
            return _error("unauthorized", 403)
        with self._lock:
            apps = [self._app_summary(app) for app in self._apps.values() if app.org_slug == org]
        return json_response({"total_apps": len(apps), "apps": apps})

    def get_app(self, request: Request, app: App) -> Response:
        body = self._app_summary(app)
        body["status"] = "deployed" if any(m.state == "started" for m in app.machines.values()) else "pending"
        body["organization"] = {"name": app.org_slug, "slug": app.org_slug}
        return json_response(body)

    def delete_app(self, request: Request, app: App) -> Response:
        del self._apps[app.name]  # machines, volumes, IPs, certificates and secrets go with it
        return Response(202)

    @staticmethod
    def _app_summary(app: App) -> dict:
        return {"id": app.id, "name": app.name, "machine_count": len(app.machines),
                "volume_count": len(app.volumes), "network": app.network}

    # -- machines --------------------------------------------------------------------------------

    def _advance(self, machine: Machine) -> None:
        now = self.clock()
        while machine.pending and machine.pending[0][0] <= now:
            at, state = machine.pending.pop(0)
            machine.state = state
            machine.updated_at = at
            machine.events.insert(0, {"type": state, "status": state, "source": "flyd",
                                      "timestamp": int(at * 1000)})

    def _advance_all(self, app: App) -> None:
        for machine in app.machines.values():
            self._advance(machine)

    def _schedule(self, machine: Machine, now: float, *steps: tuple[str, int]) -> None:
        """Move to the first state now and to each next one after the previous one's delay (ms)."""
        machine.pending.clear()
        at = now
        first, delay = steps[0]
        machine.state = first
        machine.updated_at = now
        machine.events.insert(0, {"type": first, "status": first, "source": "user", "timestamp": int(now * 1000)})
        for state, next_delay in steps[1:]:
            at += delay / 1000
            machine.pending.append((at, state))
            delay = next_delay

    def _machine_json(self, machine: Machine) -> dict:
        return {
            "id": machine.id,
            "name": machine.name,
            "state": machine.state,
            "region": machine.region,
            "instance_id": machine.instance_id,
            "private_ip": machine.private_ip,
            "config": machine.config,
            "image_ref": _image_ref(machine.config.get("image", "")),
            "created_at": _iso(machine.created_at),
            "updated_at": _iso(machine.updated_at),
            "events": machine.events[:10],
        }

    def list_machines(self, request: Request, app: App) -> Response:
        region = request.arg("region")
        wanted = {k[len("metadata."):]: v[0] for k, v in request.query.items() if k.startswith("metadata.") and v}
        machines = [
            self._machine_json(m) for m in app.machines.values()
            if (region is None or m.region == region)
            and all((m.config.get("metadata") or {}).get(k) == v for k, v in wanted.items())
        ]
        return json_response(machines)

    def create_machine(self, request: Request, app: App) -> Response:
        data = request.json()
        if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
            return _error("invalid request body: config is required", 400)
        config = data["config"]
        if not isinstance(config.get("image"), str) or not config["image"]:
            return _error("invalid config.image: an image is required", 422)
        problem = _guest_problem(config.get("guest"))
        if problem:
            return _error(problem, 422)
        region = data.get("region") or "iad"
        if region not in REGIONS:
            return _error(f"invalid region {region!r}", 422)
        for key in ("env", "metadata"):
            if config.get(key) is not None and not (
                isinstance(config[key], dict) and all(isinstance(v, str) for v in config[key].values())
            ):
                return _error(f"invalid config.{key}: a map of strings", 422)
        mounts = config.get("mounts") or []
        if not isinstance(mounts, list) or len(mounts) > 1:
            return _error("invalid config.mounts: at most one volume per machine", 422)
        volume = None
        if mounts:
            mount = mounts[0]
            volume = app.volumes.get(mount.get("volume", "")) if isinstance(mount, dict) else None
            if volume is None:
                return _error("volume not found", 404)
            if not str(mount.get("path", "")).startswith("/"):
                return _error("invalid config.mounts[0].path: an absolute path", 422)
            if volume.region != region:
                return _error(f"volume {volume.id} is in region {volume.region}, not {region}", 422)
            if volume.attached_machine_id:
                return _error(f"volume {volume.id} is already attached to machine {volume.attached_machine_id}", 409)
        name = data.get("name") or f"{secrets.choice(_WORDS)}-{secrets.choice(_NOUNS)}-{secrets.randbelow(9000) + 1000}"
        if not isinstance(name, str) or not re.match(r"^[a-z0-9][a-z0-9-]{0,62}$", name):
            return _error("invalid machine name", 422)
        now = self.clock()
        machine = Machine(
            id=_hex_id(), name=name, region=region, config=json.loads(json.dumps(config)), instance_id=_ulid(),
            private_ip=f"fdaa:0:{secrets.randbelow(0xffff):x}:a7b:{secrets.randbelow(0xffff):x}::2",
            created_at=now, updated_at=now,
        )
        if data.get("skip_launch"):
            self._schedule(machine, now, ("created", 0))
        else:
            self._schedule(machine, now, ("created", self.settings["launch_ms"]),
                           ("starting", self.settings["boot_ms"]), ("started", 0))
        app.machines[machine.id] = machine
        if volume is not None:
            volume.attached_machine_id = machine.id
        return json_response(self._machine_json(machine))

    def _machine(self, request: Request, app: App) -> Machine | Response:
        machine = app.machines.get(request.params["machine_id"])
        return machine if machine is not None else _error("machine not found", 404)

    def get_machine(self, request: Request, app: App) -> Response:
        machine = self._machine(request, app)
        return machine if isinstance(machine, Response) else json_response(self._machine_json(machine))

    def start_machine(self, request: Request, app: App) -> Response:
        machine = self._machine(request, app)
        if isinstance(machine, Response):
            return machine
        previous = machine.state
        if previous not in ("created", "stopped", "suspended"):
            return _error(f"unable to start machine from current state: '{previous}'", 412)
        self._schedule(machine, self.clock(), ("starting", self.settings["boot_ms"]), ("started", 0))
        return json_response({"previous_state": previous, "migrated": False, "new_host": ""})

    def stop_machine(self, request: Request, app: App) -> Response:
        machine = self._machine(request, app)
        if isinstance(machine, Response):
            return machine
        if machine.state not in ("started", "starting"):
            return _error(f"unable to stop machine, not currently started (state '{machine.state}')", 412)
        self._schedule(machine, self.clock(), ("stopping", self.settings["stop_ms"]), ("stopped", 0))
        return json_response({"ok": True})

    def restart_machine(self, request: Request, app: App) -> Response:
        machine = self._machine(request, app)
        if isinstance(machine, Response):
            return machine
        if machine.state != "started":
            return _error(f"unable to restart machine, not currently started (state '{machine.state}')", 412)
        self._schedule(machine, self.clock(), ("stopping", self.settings["stop_ms"]),
                       ("starting", self.settings["boot_ms"]), ("started", 0))
        return json_response({"ok": True})

    def delete_machine(self, request: Request, app: App) -> Response:
        machine = self._machine(request, app)
        if isinstance(machine, Response):
            return machine
        force = (request.arg("force") or "").lower() == "true"
        if machine.state in ("starting", "started", "stopping") and not force:
            return _error("failed to destroy VM: unable to destroy machine, not currently stopped "
                          "(use force=true)", 412)
        del app.machines[machine.id]
        app.destroyed_machines.add(machine.id)
        for volume in app.volumes.values():  # a destroyed machine frees its volume
            if volume.attached_machine_id == machine.id:
                volume.attached_machine_id = None
        return json_response({"ok": True})

    def wait_machine(self, request: Request, org: str) -> Response:
        state = request.arg("state", "started")
        if state not in WAITABLE_STATES:
            return _error(f"invalid state {state!r}: one of {', '.join(WAITABLE_STATES)}", 400)
        try:
            timeout = min(MAX_WAIT_SECONDS, max(1, int(request.arg("timeout", "60") or 60)))
        except ValueError:
            return _error("invalid timeout: seconds as an integer", 400)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                app = self._apps.get(request.params["app"])
                if app is None:
                    return _error("app not found", 404)
                if app.org_slug != org:
                    return _error("unauthorized", 403)
                machine_id = request.params["machine_id"]
                machine = app.machines.get(machine_id)
                if machine is None:
                    if machine_id in app.destroyed_machines and state == "destroyed":
                        return json_response({"ok": True})
                    return _error("machine not found", 404)
                self._advance(machine)
                if machine.state == state:
                    return json_response({"ok": True})
            if time.monotonic() >= deadline:
                return _error(f"deadline_exceeded: machine did not reach state {state!r} within {timeout}s", 408)
            time.sleep(0.02)

    # -- volumes ---------------------------------------------------------------------------------

    @staticmethod
    def _volume_json(volume: Volume) -> dict:
        blocks = volume.size_gb * 262_144
        return {
            "id": volume.id, "name": volume.name, "state": volume.state, "size_gb": volume.size_gb,
            "region": volume.region, "zone": volume.zone, "encrypted": True,
            "attached_machine_id": volume.attached_machine_id, "attached_alloc_id": None,
            "created_at": _iso(volume.created_at), "blocks": blocks, "block_size": 4096,
            "blocks_free": blocks, "blocks_avail": blocks, "fstype": "ext4", "snapshot_retention": 5,
            "auto_backup_enabled": True, "host_dedication_key": "",
        }

    def list_volumes(self, request: Request, app: App) -> Response:
        return json_response([self._volume_json(v) for v in app.volumes.values()])

    def create_volume(self, request: Request, app: App) -> Response:
        data = request.json()
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return _error("name is required", 400)
        if not VOLUME_NAME.match(data["name"]):
            return _error("Volume name can only contain lowercase letters, numbers and underscores, "
                          "and be at most 30 characters", 422)
        size = data.get("size_gb", 3)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 500:
            return _error("size_gb must be between 1 and 500", 422)
        region = data.get("region") or "iad"
        if region not in REGIONS:
            return _error(f"invalid region {region!r}", 422)
        volume = Volume(id="vol_" + secrets.token_hex(8), name=data["name"], region=region, size_gb=size,
                        zone=secrets.token_hex(2), created_at=self.clock())
        app.volumes[volume.id] = volume
        return json_response(self._volume_json(volume))

    def get_volume(self, request: Request, app: App) -> Response:
        volume = app.volumes.get(request.params["volume_id"])
        return json_response(self._volume_json(volume)) if volume else _error("volume not found", 404)

    def delete_volume(self, request: Request, app: App) -> Response:
        volume = app.volumes.get(request.params["volume_id"])
        if volume is None:
            return _error("volume not found", 404)
        if volume.attached_machine_id:
            return _error(f"volume {volume.id} is attached to machine {volume.attached_machine_id}; "
                          "destroy the machine first", 409)
        del app.volumes[volume.id]
        volume.state = "destroyed"
        return json_response(self._volume_json(volume))

    # -- secrets (digests only) ------------------------------------------------------------------

    @staticmethod
    def _secrets_json(app: App) -> list[dict]:
        return [{"name": name, "digest": entry["digest"], "created_at": _iso(entry["created_at"]),
                 "updated_at": _iso(entry["updated_at"])} for name, entry in sorted(app.secrets.items())]

    def _put_secret(self, app: App, name: str, value: str) -> None:
        now = self.clock()
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        entry = app.secrets.get(name)
        app.secrets[name] = {"digest": digest, "created_at": entry["created_at"] if entry else now, "updated_at": now}

    def list_secrets(self, request: Request, app: App) -> Response:
        return json_response({"secrets": self._secrets_json(app)})

    def update_secrets(self, request: Request, app: App) -> Response:
        data = request.json()
        values = data.get("values") if isinstance(data, dict) else None
        if not isinstance(values, dict) or not values:
            return _error("values must be a non-empty map of secret names to values (null unsets)", 400)
        for name, value in values.items():
            if not SECRET_NAME.match(name):
                return _error(f"invalid secret name {name!r}", 422)
            if value is not None and not isinstance(value, str):
                return _error(f"secret {name!r}: the value must be a string or null", 422)
        for name, value in values.items():
            if value is None:
                app.secrets.pop(name, None)
            else:
                self._put_secret(app, name, value)
        app.secrets_version += 1
        return json_response({"secrets": self._secrets_json(app), "version": app.secrets_version})

    def set_secret(self, request: Request, app: App) -> Response:
        name = request.params["secret_name"]
        data = request.json()
        if not SECRET_NAME.match(name):
            return _error(f"invalid secret name {name!r}", 422)
        if not isinstance(data, dict) or not isinstance(data.get("value"), str):
            return _error("value is required", 400)
        self._put_secret(app, name, data["value"])
        app.secrets_version += 1
        entry = next(s for s in self._secrets_json(app) if s["name"] == name)
        return json_response({**entry, "version": app.secrets_version}, 201)

    def delete_secret(self, request: Request, app: App) -> Response:
        if app.secrets.pop(request.params["secret_name"], None) is None:
            return _error("secret not found", 404)
        app.secrets_version += 1
        return json_response({"version": app.secrets_version})

    # -- IP addresses ----------------------------------------------------------------------------

    def _allocate_ip(self, app: App, kind: str, region: str | None) -> IpAssignment | Response:
        if kind not in IP_TYPES:
            return _error(f"invalid ip type {kind!r}: one of {', '.join(IP_TYPES)}", 422)
        if kind == "shared_v4" and any(ip.type == "shared_v4" for ip in app.ips):
            return _error("app already has a shared IPv4 address", 422)
        self._ip_counter += 1
        n = self._ip_counter
        address = {
            "v4": f"137.66.{n // 250 % 250}.{n % 250 + 1}",
            "v6": f"2a09:8280:1::{n:x}:0",
            "shared_v4": SHARED_V4,
            "private_v6": f"fdaa:0:{n:x}:0::2",
        }[kind]
        ip = IpAssignment(id="ip_" + secrets.token_hex(6), ip=address, type=kind,
                          region="global" if kind != "private_v6" else (region or "iad"), created_at=self.clock())
        app.ips.append(ip)
        return ip

    @staticmethod
    def _ip_json(ip: IpAssignment) -> dict:
        return {"ip": ip.ip, "region": ip.region, "service_name": "", "shared": ip.type == "shared_v4",
                "created_at": _iso(ip.created_at), "egress": False, "network": None}

    def list_ips(self, request: Request, app: App) -> Response:
        return json_response({"ips": [self._ip_json(ip) for ip in app.ips]})

    def assign_ip(self, request: Request, app: App) -> Response:
        data = request.json()
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return _error("type is required", 400)
        ip = self._allocate_ip(app, data["type"], data.get("region"))
        return ip if isinstance(ip, Response) else json_response(self._ip_json(ip))

    def delete_ip(self, request: Request, app: App) -> Response:
        target = unquote(request.params["ip"])
        for ip in app.ips:
            if _same_ip(ip.ip, target):
                app.ips.remove(ip)
                return Response(204)
        return _error("ip assignment not found", 404)

    # -- certificates ----------------------------------------------------------------------------

    def _certificate_status(self, app: App, cert: Certificate) -> str:
        ready = self.clock() - cert.created_at >= self.settings["certificate_ms"] / 1000
        return "active" if ready and self.dns_configured(cert.hostname, app.name) else "pending_validation"

    def _certificate_json(self, app: App, cert: Certificate) -> dict:
        status = self._certificate_status(app, cert)
        configured = status == "active"
        issued = [{"type": "ecdsa", "expires_at": _iso(cert.created_at + 90 * 86_400),
                   "certificate_authority": "lets_encrypt"}] if configured else []
        return {
            "hostname": cert.hostname, "configured": configured, "acme_requested": True, "status": status,
            "dns_provider": "sandbox", "rate_limited_until": None,
            "certificates": [{"source": "fly", "status": status, "created_at": _iso(cert.created_at),
                              "expires_at": _iso(cert.created_at + 90 * 86_400), "issuer": None,
                              "issued": issued}],
            "validation": {"dns_configured": configured, "alpn_configured": configured,
                           "http_configured": configured, "ownership_txt_configured": configured},
            "dns_requirements": {
                "a": [ip.ip for ip in app.ips if ip.type in ("v4", "shared_v4")],
                "aaaa": [ip.ip for ip in app.ips if ip.type == "v6"],
                "cname": f"{app.name}.fly.dev",
                "acme_challenge": {"name": f"_acme-challenge.{cert.hostname}",
                                   "target": f"{cert.hostname}.{app.id[:6]}.flydns.net"},
                "ownership": {"name": f"_fly-ownership.{cert.hostname}", "app_value": f"app-{app.id}",
                              "org_value": f"org-{app.org_slug}"},
            },
            "validation_errors": [],
        }

    def _add_certificate(self, app: App, hostname: str) -> Certificate | Response:
        hostname = (hostname or "").strip().lower().rstrip(".")
        if not HOSTNAME.match(hostname):
            return _error(f"invalid hostname {hostname!r}", 422)
        for other in self._apps.values():
            if other is not app and hostname in other.certificates:
                return _error(f"Hostname {hostname!r} is already configured on another app", 422)
        cert = app.certificates.get(hostname)
        if cert is None:
            cert = app.certificates[hostname] = Certificate(id="cert_" + secrets.token_hex(6), hostname=hostname,
                                                            created_at=self.clock())
        return cert

    def list_certificates(self, request: Request, app: App) -> Response:
        certs = [self._certificate_json(app, c) for c in app.certificates.values()
                 if (request.arg("filter") or "") in c.hostname]
        return json_response({"certificates": certs, "total_count": len(certs)})

    def request_certificate(self, request: Request, app: App) -> Response:
        data = request.json()
        if not isinstance(data, dict) or not isinstance(data.get("hostname"), str):
            return _error("hostname is required", 400)
        existed = data["hostname"].strip().lower().rstrip(".") in app.certificates
        cert = self._add_certificate(app, data["hostname"])
        if isinstance(cert, Response):
            return cert
        return json_response(self._certificate_json(app, cert), 200 if existed else 201)

    def get_certificate(self, request: Request, app: App) -> Response:
        cert = app.certificates.get(unquote(request.params["hostname"]).lower())
        return json_response(self._certificate_json(app, cert)) if cert else _error("certificate not found", 404)

    def delete_certificate(self, request: Request, app: App) -> Response:
        if app.certificates.pop(unquote(request.params["hostname"]).lower(), None) is None:
            return _error("certificate not found", 404)
        return Response(204)

    # -- GraphQL (api.fly.io/graphql): the IP and certificate operations -------------------------

    def graphql(self, request: Request, org: str) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return json_response({"errors": [{"message": "query is required"}]}, 400)
        variables = body.get("variables") or {}
        try:
            kind, selections = _parse_operation(body["query"], body.get("operationName"))
            data = {}
            errors = []
            with self._lock:
                for sel in selections:
                    try:
                        data[sel.alias] = _project(self._resolve_root(kind, sel, variables, org), sel.children, variables)
                    except _GraphQLError as exc:
                        data[sel.alias] = None
                        errors.append({"message": exc.message, "path": [sel.alias],
                                       "extensions": {"code": exc.code}})
        except _GraphQLError as exc:
            return json_response({"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]})
        answer = {"data": data}
        if errors:
            answer["errors"] = errors
        return json_response(answer)

    def _gql_app(self, name, org: str) -> App:
        app = self._apps.get(str(name or ""))
        if app is None or app.org_slug != org:  # GraphQL answers "not found" either way
            raise _GraphQLError("Could not find App", "NOT_FOUND")
        self._advance_all(app)
        return app

    def _resolve_root(self, kind: str, sel, variables: dict, org: str):
        args = {k: _value(v, variables) for k, v in sel.args.items()}
        if kind == "query" and sel.name == "app":
            return _AppView(self, self._gql_app(args.get("name") or args.get("id"), org))
        if kind != "mutation":
            raise _GraphQLError(f"Field '{sel.name}' doesn't exist on type 'Query'", "BAD_REQUEST")
        if sel.name == "allocateIpAddress":
            data = args.get("input") or {}
            app = self._gql_app(data.get("appId"), org)
            ip = self._allocate_ip(app, str(data.get("type", "")), data.get("region"))
            if isinstance(ip, Response):
                raise _GraphQLError(json.loads(ip.body)["error"], "UNPROCESSABLE")
            return {"ipAddress": _gql_ip(ip), "app": {"name": app.name}}
        if sel.name in ("releaseIpAddress", "releaseIpAddressV2"):
            data = args.get("input") or {}
            app = self._gql_app(data.get("appId"), org)
            for ip in list(app.ips):
                if ip.id == data.get("ipAddressId") or _same_ip(ip.ip, str(data.get("ip") or "")):
                    app.ips.remove(ip)
                    return {"app": {"name": app.name}}
            raise _GraphQLError("Could not find IPAddress", "NOT_FOUND")
        if sel.name == "addCertificate":
            app = self._gql_app(args.get("appId"), org)
            cert = self._add_certificate(app, str(args.get("hostname") or ""))
            if isinstance(cert, Response):
                raise _GraphQLError(json.loads(cert.body)["error"], "UNPROCESSABLE")
            return {"certificate": _gql_certificate(self, app, cert), "check": None, "app": {"name": app.name}}
        if sel.name == "deleteCertificate":
            app = self._gql_app(args.get("appId"), org)
            cert = app.certificates.pop(str(args.get("hostname") or "").lower(), None)
            if cert is None:
                raise _GraphQLError("Could not find Certificate", "NOT_FOUND")
            return {"app": {"name": app.name}, "certificate": {"id": cert.id, "hostname": cert.hostname}}
        raise _GraphQLError(f"Field '{sel.name}' doesn't exist on type 'Mutations'", "BAD_REQUEST")

    # -- control surface -------------------------------------------------------------------------

    def inventory(self, _request: Request) -> Response:
        with self._lock:
            apps, machines, volumes, ips, certificates, secret_names = [], [], [], [], [], []
            for app in self._apps.values():
                self._advance_all(app)
                apps.append({"name": app.name, "org_slug": app.org_slug})
                machines += [{"app": app.name, "id": m.id, "name": m.name, "state": m.state, "region": m.region,
                              "volume_ids": m.volume_ids, "metadata": m.config.get("metadata") or {}}
                             for m in app.machines.values()]
                volumes += [{"app": app.name, "id": v.id, "name": v.name, "size_gb": v.size_gb,
                             "region": v.region, "attached_machine_id": v.attached_machine_id}
                            for v in app.volumes.values()]
                ips += [{"app": app.name, "ip": ip.ip, "type": ip.type} for ip in app.ips]
                certificates += [{"app": app.name, "hostname": c.hostname,
                                  "status": self._certificate_status(app, c)} for c in app.certificates.values()]
                secret_names += [{"app": app.name, "name": name} for name in sorted(app.secrets)]
        counts = {"apps": len(apps), "machines": len(machines), "volumes": len(volumes), "ips": len(ips),
                  "certificates": len(certificates), "secrets": len(secret_names)}
        return json_response({"apps": apps, "machines": machines, "volumes": volumes, "ips": ips,
                              "certificates": certificates, "secrets": secret_names, "counts": counts})

    def get_config(self, _request: Request) -> Response:
        with self._lock:
            return json_response(dict(self.settings))

    def set_config(self, request: Request) -> Response:
        return update_settings(request, self.settings, self._lock, minimum={name: 0 for name in self.settings})

    def reset(self, _request: Request) -> Response:
        with self._lock:
            self._apps.clear()
        return Response(204)


# -- helpers -------------------------------------------------------------------------------------


def _guest_problem(guest) -> str | None:
    """Fly's machine sizes: shared 1-8 CPUs with up to 2 GB per CPU; performance 1-16 with 2-8 GB per CPU;
    memory in 256 MB steps."""
    if guest is None:
        return None
    if not isinstance(guest, dict):
        return "invalid config.guest"
    kind, cpus, memory = guest.get("cpu_kind", "shared"), guest.get("cpus", 1), guest.get("memory_mb", 256)
    if kind not in ("shared", "performance"):
        return f"invalid config.guest.cpu_kind {kind!r}: shared or performance"
    if not isinstance(cpus, int) or cpus not in ((1, 2, 4, 6, 8) if kind == "shared" else (1, 2, 4, 8, 16)):
        return f"invalid config.guest.cpus {cpus!r} for {kind} CPUs"
    if not isinstance(memory, int) or memory < 256 or memory % 256:
        return "invalid config.guest.memory_mb: a multiple of 256"
    low, high = (256, cpus * 2048) if kind == "shared" else (cpus * 2048, cpus * 8192)
    if not low <= memory <= high:
        return f"invalid memory size {memory} MB for {cpus} {kind} CPU(s): between {low} and {high} MB"
    return None


def _image_ref(image: str) -> dict:
    registry, _, rest = image.partition("/") if "." in image.split("/", 1)[0] else ("registry-1.docker.io", "", image)
    repository, _, tag = rest.partition(":")
    return {"registry": registry, "repository": repository, "tag": tag or "latest",
            "digest": "sha256:" + hashlib.sha256(image.encode()).hexdigest(), "labels": {}}


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a == b


def _gql_ip(ip: IpAssignment) -> dict:
    return {"id": ip.id, "address": ip.ip, "type": ip.type, "region": ip.region, "createdAt": _iso(ip.created_at)}


def _gql_certificate(sandbox: FlySandbox, app: App, cert: Certificate) -> dict:
    rest = sandbox._certificate_json(app, cert)
    status = rest["status"]
    return {
        "id": cert.id, "hostname": cert.hostname, "createdAt": _iso(cert.created_at),
        "configured": rest["configured"], "acmeDnsConfigured": rest["configured"],
        "acmeAlpnConfigured": rest["configured"], "certificateAuthority": "lets_encrypt",
        "clientStatus": "Ready" if status == "active" else "Awaiting configuration",
        "dnsValidationHostname": f"_acme-challenge.{cert.hostname}",
        "dnsValidationTarget": rest["dns_requirements"]["acme_challenge"]["target"],
        "dnsValidationInstructions": f"CNAME _acme-challenge.{cert.hostname} → "
                                     f"{rest['dns_requirements']['acme_challenge']['target']}",
        "issued": {"nodes": [{"type": "ecdsa", "expiresAt": i["expires_at"]} for i in rest["certificates"][0]["issued"]]},
        "source": "fly",
    }


class _AppView:
    """``app(name)`` in GraphQL: fields computed on demand (certificate takes an argument)."""

    def __init__(self, sandbox: FlySandbox, app: App) -> None:
        self.sandbox, self.app = sandbox, app

    def field(self, name: str, args: dict):
        app = self.app
        if name in ("id", "name"):
            return app.name
        if name == "organization":
            return {"slug": app.org_slug, "name": app.org_slug}
        if name == "hostname":
            return f"{app.name}.fly.dev"
        if name == "ipAddresses":
            return {"nodes": [_gql_ip(ip) for ip in app.ips], "totalCount": len(app.ips)}
        if name == "certificates":
            nodes = [_gql_certificate(self.sandbox, app, c) for c in app.certificates.values()]
            return {"nodes": nodes, "totalCount": len(nodes)}
        if name == "certificate":
            cert = app.certificates.get(str(args.get("hostname") or "").lower())
            if cert is None:
                raise _GraphQLError("Could not find Certificate", "NOT_FOUND")
            return _gql_certificate(self.sandbox, app, cert)
        raise _GraphQLError(f"Field '{name}' doesn't exist on type 'App'", "BAD_REQUEST")


class _GraphQLError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class _Selection:
    name: str
    alias: str
    args: dict
    children: list


_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|(\.\.\.|[{}():\[\]!=$@,])|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?)|([A-Za-z_]\w*))')


def _tokens(source: str) -> list[str]:
    out, pos = [], 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None or match.end() == pos:
            if source[pos:].strip():
                raise _GraphQLError(f"Syntax error at offset {pos}", "GRAPHQL_PARSE_FAILED")
            break
        pos = match.end()
        if match.group(1) or match.group(0).strip() == ",":
            continue
        out.append(match.group(0).strip())
    return out


class _Parser:
    """Just enough GraphQL: one operation (query or mutation) with variables, arguments (variables,
    strings, numbers, enums, objects, lists), aliases and nested selections. No fragments."""

    def __init__(self, source: str) -> None:
        self.toks, self.i = _tokens(source), 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _GraphQLError(f"Syntax error: expected {expected or 'more'}, got {tok!r}", "GRAPHQL_PARSE_FAILED")
        self.i += 1
        return tok

    def operation(self) -> tuple[str, list[_Selection]]:
        kind = "query"
        if self.peek() in ("query", "mutation"):
            kind = self.take()
            if self.peek() not in ("{", "("):
                self.take()  # operation name
            if self.peek() == "(":  # variable definitions: skip to the matching ")"
                depth = 0
                while True:
                    tok = self.take()
                    depth += tok == "("
                    depth -= tok == ")"
                    if depth == 0:
                        break
        elif self.peek() == "subscription":
            raise _GraphQLError("subscriptions are not supported", "BAD_REQUEST")
        return kind, self.selection_set()

    def selection_set(self) -> list[_Selection]:
        self.take("{")
        selections = []
        while self.peek() != "}":
            if self.peek() == "...":
                raise _GraphQLError("fragments are not supported by the sandbox", "BAD_REQUEST")
            name = alias = self.take()
            if self.peek() == ":":
                self.take(":")
                name = self.take()
            args = {}
            if self.peek() == "(":
                self.take("(")
                while self.peek() != ")":
                    key = self.take()
                    self.take(":")
                    args[key] = self.value()
                self.take(")")
            children = self.selection_set() if self.peek() == "{" else []
            selections.append(_Selection(name, alias, args, children))
        self.take("}")
        return selections

    def value(self):
        tok = self.take()
        if tok == "$":
            return ("$", self.take())
        if tok.startswith('"'):
            return json.loads(tok)
        if tok == "{":
            obj = {}
            while self.peek() != "}":
                key = self.take()
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        if tok == "[":
            items = []
            while self.peek() != "]":
                items.append(self.value())
            self.take("]")
            return items
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "null":
            return None
        if re.match(r"^-?\d", tok):
            return float(tok) if "." in tok else int(tok)
        return tok  # an enum value such as v4 or shared_v4


def _parse_operation(source: str, operation_name) -> tuple[str, list[_Selection]]:
    parser = _Parser(source)
    kind, selections = parser.operation()
    if parser.peek() is not None:
        raise _GraphQLError("the sandbox runs one operation per request", "BAD_REQUEST")
    return kind, selections


def _value(raw, variables: dict):
    if isinstance(raw, tuple) and raw[0] == "$":
        return variables.get(raw[1])
    if isinstance(raw, dict):
        return {k: _value(v, variables) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_value(v, variables) for v in raw]
    return raw


def _project(value, selections: list[_Selection], variables: dict | None = None):
    """Keep only the selected fields (GraphQL answers exactly what was asked)."""
    if not selections or value is None:
        return value
    if isinstance(value, list):
        return [_project(v, selections, variables) for v in value]
    out = {}
    for sel in selections:
        if isinstance(value, _AppView):
            field_value = value.field(sel.name, {k: _value(v, variables or {}) for k, v in sel.args.items()})
        elif isinstance(value, dict):
            if sel.name not in value:
                raise _GraphQLError(f"Field '{sel.name}' doesn't exist", "BAD_REQUEST")
            field_value = value[sel.name]
        else:
            field_value = None
        out[sel.alias] = _project(field_value, sel.children, variables)
    return out
