"""The steps of the workspace workflows (SPEC C6; the contract is docs/design/workspaces.md "The provisioning
workflow" and "Teardown"): one method per Task state of ``workflows/provision_workspace.asl.json`` and
``workflows/delete_workspace.asl.json``, called by the workflows function.

Every step may run more than once (a Retry after a timeout whose request did reach the provider, a
redriven execution, compensation after a partial create), so every step is idempotent: the provisioner
looks before it creates, resources are recorded on the workspace as soon as they exist, deletes treat
"already gone" as done, and status writes are conditional on the status they expect.

Secrets handled here: the workspace daemon's key and its X25519 private key. Both are minted by the
``secrets`` step and handed only to ``Provisioner.set_secrets`` (the machine reads them from its
environment); the daemon item stores the key's SHA-256 and the public key. Neither is logged, stored,
returned or put in an event. No provider token ever goes to the machine: its daemon asks for leases.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from relay_cloud.domain.compute import MachineSize, MachineSpec, ProviderRejected, app_name_for
from relay_cloud.domain.daemons import Daemon, daemon_key, new_key_secret, sha256_hex
from relay_cloud.domain.errors import RelayError
from relay_cloud.domain.sealing import b64url
from relay_cloud.domain.workspaces import (
    DELETING,
    PROVISIONING,
    RUNNING,
    WorkspaceNotFound,
    WorkspaceStateConflict,
)

STARTED, SUCCEEDED, FAILED, COMPENSATING, COMPENSATED = "started", "succeeded", "failed", "compensating", "compensated"

VOLUME_NAME = "data"
MACHINE_NAME = "agent-host"
MOUNT_PATH = "/data"
WAIT_CALL_SECONDS = 20  # one wait request to the provider: well inside the workflows function's 30 s timeout
DEFAULT_DEADLINE_SECONDS = 600
MAX_DEADLINE_SECONDS = 3600
# Names of the machine's secrets: what the agent host reads to run as the workspace's own daemon.
SECRET_NAMES = ("RELAY_CLOUD_URL", "RELAY_DAEMON_KEY", "RELAY_DAEMON_PRIVATE_KEY", "RELAY_WORKSPACE_ID")
# The error classes a step may raise → the machine code recorded on the workspace. Step Functions names a
# task's error after the exception's class (the Lambda errorType); the public message comes with it.
ERROR_CODES = {
    "ProviderRejected": "COMPUTE_PROVIDER_REJECTED",
    "AppNameTaken": "APP_NAME_TAKEN",
    "UpstreamUnavailable": "UPSTREAM_UNAVAILABLE",
    "DependencyUnavailable": "DEPENDENCY_UNAVAILABLE",
    "StartTimeout": "START_TIMEOUT",
    "HealthCheckFailed": "HEALTH_CHECK_FAILED",
    "ProvisioningCancelled": "PROVISIONING_CANCELLED",
    "ValidationFailed": "COMPUTE_NOT_CONFIGURED",  # the only validation a step does: provider configuration
    "States.Timeout": "STEP_TIMEOUT",
}
GENERIC_FAILURE = "PROVISIONING_FAILED"
GENERIC_MESSAGES = {
    "START_TIMEOUT": "The machine did not start before the deadline",
    "STEP_TIMEOUT": "A provisioning step timed out",
    GENERIC_FAILURE: "Provisioning failed",
}
MAX_MESSAGE = 300
# What the dashboard shows while a step runs.
STARTING_MESSAGES = {
    "app": "Creating the app",
    "ips": "Allocating IP addresses",
    "volume": "Creating the data volume",
    "secrets": "Minting the workspace's daemon key and setting the machine's secrets",
    "machine": "Creating the machine",
    "health": "Checking the agent host",
    "finish": "Marking the workspace running",
    "teardown.domain": "Releasing the custom domain",
    "teardown.machine": "Deleting the machine",
    "teardown.volume": "Deleting the data volume",
    "teardown.ips": "Releasing the IP addresses",
    "teardown.app": "Deleting the app",
    "teardown.daemon": "Revoking the workspace's daemon key",
}


class StartTimeout(RelayError):
    status = 504
    code = "START_TIMEOUT"


class HealthCheckFailed(RelayError):
    status = 502
    code = "HEALTH_CHECK_FAILED"


class ProvisioningCancelled(RelayError):
    """The workspace left ``provisioning`` (deleted meanwhile): stop creating, compensate what exists."""

    status = 409
    code = "PROVISIONING_CANCELLED"


def workspace_daemon_id(workspace_id: str) -> str:
    """The workspace's own daemon id, derived (``dmn_`` + 32 hex, like a linked daemon's): a re-run of the
    secrets step finds the same daemon and rotates its key instead of minting a second machine."""
    return "dmn_" + hashlib.sha256(f"relay-workspace-daemon:{workspace_id}".encode()).hexdigest()[:32]


@dataclass
class ProvisioningService:
    workspaces: object  # adapters.dynamo.workspaces.WorkspaceRepository
    # The provisioner of a compute provider by name ("fly" | "railway"): every step runs on the provider the
    # workspace records.
    compute_for: Callable[[str], object]
    daemons: object  # adapters.dynamo.daemons.DaemonRepository
    cloud_url: str  # RELAY_PUBLIC_URL: where the workspace's daemon reaches the cloud
    image: str  # RELAY_WORKSPACE_IMAGE
    region: str  # RELAY_WORKSPACE_REGION: for workspaces that name none
    sizes: dict[str, MachineSize] = field(default_factory=dict)  # RELAY_WORKSPACE_SIZES
    clock: Callable[[], float] = time.time
    new_private_key: Callable[[], X25519PrivateKey] = X25519PrivateKey.generate
    new_secret: Callable[[], str] = new_key_secret
    # services.domains.DomainService: the teardown frees the workspace's custom domain (certificate, guard).
    domains: object = None

    def _now(self) -> int:
        return int(self.clock())

    # -- provisioning steps -------------------------------------------------------------------------

    def app(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            ref = self.compute_for(ws.compute).ensure_app(self._app_name(ws))
            self.workspaces.set_resource(workspace_id, "app", ref.name)
            return f"App {ref.name} {'created' if ref.created else 'found'}"
        return self._step("app", workspace_id, user_id, run)

    def ips(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            ips = self.compute_for(ws.compute).ensure_ips(self._app_name(ws))
            self.workspaces.set_resource(workspace_id, "ips", [{"address": ip.address, "type": ip.type} for ip in ips])
            return "Addresses " + ", ".join(f"{ip.address} ({ip.type})" for ip in ips)
        return self._step("ips", workspace_id, user_id, run)

    def volume(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            size = self._size(ws)
            volume = self.compute_for(ws.compute).ensure_volume(self._app_name(ws), VOLUME_NAME, self._region(ws),
                                                                size.volume_gb)
            self.workspaces.set_resource(workspace_id, "volume_id", volume.id)
            return f"Volume {volume.id} ({volume.size_gb} GB) in {volume.region}"
        return self._step("volume", workspace_id, user_id, run)

    def secrets(self, workspace_id: str, user_id: str) -> dict:
        """Mint (or rotate) the workspace's own daemon and hand its key to the machine's secrets."""
        def run(ws):
            daemon_id = workspace_daemon_id(workspace_id)
            secret = self.new_secret()
            private_key = self.new_private_key()
            public_raw = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                               serialization.PublicFormat.Raw)
            private_raw = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                                    serialization.NoEncryption())
            self.daemons.upsert_workspace_daemon(Daemon(
                daemon_id=daemon_id, user_id=ws.user_id, name=ws.name, machine_id=workspace_id,
                public_key=b64url(public_raw), key_hash=sha256_hex(secret),
                allowed_providers=tuple(ws.providers or ()), linked_at=self._now(),
            ), now=self._now())
            self.workspaces.set_resource(workspace_id, "daemon_id", daemon_id)
            # The key and the private key exist only in this request body to the provider.
            self.compute_for(ws.compute).set_secrets(self._app_name(ws), {
                "RELAY_CLOUD_URL": self.cloud_url,
                "RELAY_DAEMON_KEY": daemon_key(daemon_id, secret),
                "RELAY_DAEMON_PRIVATE_KEY": b64url(private_raw),
                "RELAY_WORKSPACE_ID": workspace_id,
            })
            return f"Daemon {daemon_id} keyed; secrets set: {', '.join(SECRET_NAMES)}"
        return self._step("secrets", workspace_id, user_id, run)

    def machine(self, workspace_id: str, user_id: str, deadline_seconds: int | None = None) -> dict:
        """Create (or find) the machine; answers the start deadline the workflow's wait loop keeps to."""
        def run(ws):
            resources = self._resources(ws)
            spec = MachineSpec(image=self.image, size=self._size(ws), region=self._region(ws),
                               volume_id=resources.get("volume_id"), mount_path=MOUNT_PATH,
                               metadata={"workspace_id": workspace_id})
            machine = self.compute_for(ws.compute).ensure_machine(self._app_name(ws), MACHINE_NAME, spec)
            self.workspaces.set_resource(workspace_id, "machine_id", machine.id)
            return f"Machine {machine.id} ({machine.state}) in {machine.region}"
        self._step("machine", workspace_id, user_id, run)
        seconds = _bounded(deadline_seconds, DEFAULT_DEADLINE_SECONDS, MAX_DEADLINE_SECONDS)
        return {"started": False, "deadline": self._now() + seconds, "polls": 0}

    def wait(self, workspace_id: str, user_id: str, deadline: int, polls: int = 0,
             wait_seconds: int | None = None) -> dict:
        """One wait for ``started`` of at most ``wait_seconds`` (≤ WAIT_CALL_SECONDS). Not yet → the
        workflow's Wait state polls again; past the deadline → ``StartTimeout`` (caught by the workflow:
        compensation)."""
        call_seconds = _bounded(wait_seconds, WAIT_CALL_SECONDS, WAIT_CALL_SECONDS)
        ws = self._provisioning(workspace_id, user_id)
        if polls == 0:
            self._event(workspace_id, "wait", STARTED, "Waiting for the machine to start")
        machine_id = self._resources(ws).get("machine_id")
        try:
            remaining = int(deadline) - self._now()
            started = remaining > 0 and bool(machine_id) and self.compute_for(ws.compute).wait_started(
                self._app_name(ws), machine_id, max(1, min(call_seconds, remaining)))
            if not started and self._now() >= int(deadline):
                raise StartTimeout("The machine did not start before the deadline")
        except RelayError as exc:
            self._event(workspace_id, "wait", FAILED, exc.message)
            raise
        if started:
            self._event(workspace_id, "wait", SUCCEEDED, "The machine started")
        return {"started": started, "deadline": int(deadline), "polls": int(polls) + 1}

    def health(self, workspace_id: str, user_id: str) -> dict:
        """Fly's own check on the agent host: the machine reports ``started``."""
        def run(ws):
            machine_id = self._resources(ws).get("machine_id")
            state = self.compute_for(ws.compute).machine_state(self._app_name(ws), machine_id) if machine_id else None
            if state != "started":
                raise HealthCheckFailed(f"The machine is {state or 'gone'}, not started")
            return "The machine is started"
        return self._step("health", workspace_id, user_id, run)

    def finish(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            now = self._now()
            try:
                self.workspaces.update(workspace_id, expected_status=PROVISIONING, now=now, status=RUNNING,
                                       running_since=now, host=self._host(ws), error=None)
            except WorkspaceStateConflict as exc:
                raise ProvisioningCancelled(f"The workspace is {exc.current_status}, no longer provisioning") from exc
            return "The workspace is running"
        return self._step("finish", workspace_id, user_id, run)

    # -- failure: compensate, then record ------------------------------------------------------------

    def compensate(self, workspace_id: str, user_id: str, step: str | None = None) -> dict:
        """Delete in reverse what exists (machine → volume → IPs → app; "already gone" is done) and revoke
        the workspace daemon. The app is deleted by its derived name even when it was never recorded (a
        create whose answer was lost): deleting it takes anything left inside with it."""
        ws = self._owned(workspace_id, user_id)
        if ws is None:
            return {"compensated": True}
        self._event(workspace_id, "compensate", COMPENSATING, f"Removing what was created (failed at {step or '?'})")
        try:
            removed = self._release_compute(ws)
            self._revoke_daemon(ws)
        except RelayError as exc:
            self._event(workspace_id, "compensate", FAILED, exc.message)
            raise
        self._event(workspace_id, "compensate", COMPENSATED,
                    "Removed: " + (", ".join(removed) if removed else "nothing was left"))
        return {"compensated": True}

    def fail(self, workspace_id: str, user_id: str, step: str | None = None, failure: dict | None = None,
             compensation: dict | None = None) -> dict:
        """Status ``error`` with ``{code, message, step}`` from the caught error, the plan slot released
        (the repository does both in one transaction, only from ``provisioning``: a workspace deleted
        meanwhile is the teardown's)."""
        ws = self._owned(workspace_id, user_id)
        if ws is None:
            return {"recorded": False}
        error = describe_failure(failure or {}, step or "unknown")
        if not (compensation or {}).get("compensated"):
            error["cleanup"] = "incomplete"  # resources stay recorded: a delete removes them
        try:
            self.workspaces.fail(workspace_id, error, self._now(), expected_status=PROVISIONING)
        except (WorkspaceStateConflict, WorkspaceNotFound):
            return {"recorded": False}  # deleted meanwhile: the teardown owns it now (and its slot)
        self._event(workspace_id, step or "unknown", FAILED, f"{error['code']}: {error['message']}")
        return {"recorded": True, "code": error["code"]}

    # -- teardown steps (delete_workspace.asl.json) --------------------------------------------------

    def teardown_domain(self, workspace_id: str, user_id: str) -> dict:
        """First: the certificate at the provider (404 = done) and the ``DOMAIN#`` guard if it still names
        this workspace, so the name is free for its owner's next workspace (or anyone who proves it). The
        map goes with the workspace item. A re-run finds nothing left to delete."""
        def run(ws):
            if not ws.domain:
                return "No custom domain"
            if self.domains is None:
                raise RuntimeError("the teardown needs the domain service to release a custom domain")
            self.domains.teardown(ws)
            return f"Custom domain {ws.domain.get('domain')} released"
        return self._teardown_step("teardown.domain", workspace_id, user_id, run)

    def teardown_machine(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            machine_id = self._resources(ws).get("machine_id")
            if machine_id:
                self.compute_for(ws.compute).delete_machine(self._app_name(ws), machine_id)
                self.workspaces.set_resource(workspace_id, "machine_id", None)
            return f"Machine {machine_id} deleted" if machine_id else "No machine"
        return self._teardown_step("teardown.machine", workspace_id, user_id, run)

    def teardown_volume(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            volume_id = self._resources(ws).get("volume_id")
            if volume_id:
                self._delete_volume(ws, volume_id)
                self.workspaces.set_resource(workspace_id, "volume_id", None)
            return f"Volume {volume_id} deleted" if volume_id else "No volume"
        return self._teardown_step("teardown.volume", workspace_id, user_id, run)

    def teardown_ips(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            self.compute_for(ws.compute).release_ips(self._app_name(ws))
            self.workspaces.set_resource(workspace_id, "ips", None)
            return "Addresses released"
        return self._teardown_step("teardown.ips", workspace_id, user_id, run)

    def teardown_app(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            self.compute_for(ws.compute).delete_app(self._app_name(ws))  # by its derived name: recorded or not
            self.workspaces.set_resource(workspace_id, "app", None)
            return f"App {self._app_name(ws)} deleted"
        return self._teardown_step("teardown.app", workspace_id, user_id, run)

    def teardown_daemon(self, workspace_id: str, user_id: str) -> dict:
        def run(ws):
            self._revoke_daemon(ws)
            return "Workspace daemon revoked"
        return self._teardown_step("teardown.daemon", workspace_id, user_id, run)

    def teardown_forget(self, workspace_id: str, user_id: str) -> dict:
        """Detach the repos, release the plan slot and delete the workspace's items (the repository does
        it in one transaction, conditional on ``deleting``)."""
        ws = self._owned(workspace_id, user_id)
        if ws is None:
            return {"deleted": False}  # a re-run after the items went
        if ws.status != DELETING:
            raise WorkspaceStateConflict(ws.status, "The workspace is not being deleted")
        self.workspaces.delete_all(workspace_id, user_id)
        return {"deleted": True}

    def teardown_failed(self, workspace_id: str, user_id: str, step: str | None = None,
                        failure: dict | None = None) -> dict:
        """Record why the teardown stopped; the workspace stays ``deleting`` with its remaining resources
        recorded, so deleting it again runs the teardown again."""
        ws = self._owned(workspace_id, user_id)
        if ws is None:
            return {"recorded": False}
        error = describe_failure(failure or {}, step or "teardown")
        self.workspaces.update(workspace_id, expected_status=DELETING, now=self._now(), error=error)
        self._event(workspace_id, step or "teardown", FAILED, f"{error['code']}: {error['message']}")
        return {"recorded": True, "code": error["code"]}

    # -- helpers -------------------------------------------------------------------------------------

    def _step(self, step: str, workspace_id: str, user_id: str, run) -> dict:
        return self._run(step, self._provisioning(workspace_id, user_id), run)

    def _teardown_step(self, step: str, workspace_id: str, user_id: str, run) -> dict:
        ws = self._owned(workspace_id, user_id)
        if ws is None:
            return {"step": step, "skipped": True}  # the items are gone: a re-run after Forget
        if ws.status != DELETING:
            raise WorkspaceStateConflict(ws.status, "The workspace is not being deleted")
        return self._run(step, ws, run)

    def _run(self, step: str, ws, run) -> dict:
        """``run(ws)`` between the step's ``started`` event and its ``succeeded`` (run's message) or ``failed``."""
        self._event(ws.workspace_id, step, STARTED, STARTING_MESSAGES.get(step))
        try:
            message = run(ws)
        except RelayError as exc:
            self._event(ws.workspace_id, step, FAILED, exc.message)
            raise
        self._event(ws.workspace_id, step, SUCCEEDED, message)
        return {"step": step}

    def _owned(self, workspace_id: str, user_id: str):
        """The workspace when it is this user's (the execution input names both); None when it is gone."""
        ws = self.workspaces.get(workspace_id)
        if ws is None:
            return None
        if ws.user_id != user_id:
            raise WorkspaceNotFound()
        return ws

    def _provisioning(self, workspace_id: str, user_id: str):
        ws = self._owned(workspace_id, user_id)
        if ws is None:
            raise ProvisioningCancelled("The workspace was deleted")
        if ws.status != PROVISIONING:
            raise ProvisioningCancelled(f"The workspace is {ws.status}, no longer provisioning")
        return ws

    def _release_compute(self, ws) -> list[str]:
        app, resources, removed = self._app_name(ws), self._resources(ws), []
        compute = self.compute_for(ws.compute)
        if resources.get("machine_id"):
            compute.delete_machine(app, resources["machine_id"])
            self.workspaces.set_resource(ws.workspace_id, "machine_id", None)
            removed.append("machine")
        if resources.get("volume_id"):
            self._delete_volume(ws, resources["volume_id"])
            self.workspaces.set_resource(ws.workspace_id, "volume_id", None)
            removed.append("volume")
        if resources.get("ips"):
            compute.release_ips(app)
            self.workspaces.set_resource(ws.workspace_id, "ips", None)
            removed.append("addresses")
        compute.delete_app(app)
        if resources.get("app"):
            self.workspaces.set_resource(ws.workspace_id, "app", None)
            removed.append("app")
        return removed

    def _delete_volume(self, ws, volume_id: str) -> None:
        try:
            self.compute_for(ws.compute).delete_volume(self._app_name(ws), volume_id)
        except ProviderRejected as exc:
            # Still attached for a moment after its machine was destroyed: the app's deletion takes it.
            if exc.details.get("upstream_status") != 409:
                raise

    def _revoke_daemon(self, ws) -> None:
        daemon_id = self._resources(ws).get("daemon_id") or workspace_daemon_id(ws.workspace_id)
        self.daemons.revoke(daemon_id, user_id=ws.user_id, now=self._now())  # False: none, or already revoked

    def _event(self, workspace_id: str, step: str, state: str, message: str | None) -> None:
        self.workspaces.add_event(workspace_id, step, state, message or "", self.clock())

    def _host(self, ws) -> str:
        """Where the workspace is reached: set at creation when the provider's rule names it (Fly:
        ``<app>.fly.dev``); Railway's is the service domain the ``ips`` step recorded."""
        if ws.host:
            return ws.host
        for ip in self._resources(ws).get("ips") or ():
            if isinstance(ip, dict) and ip.get("type") == "domain" and ip.get("address"):
                return ip["address"]
        if ws.compute == "fly":
            return f"{self._app_name(ws)}.fly.dev"
        raise HealthCheckFailed("The provider gave the workspace no host name")

    @staticmethod
    def _resources(ws) -> dict:
        return dict(getattr(ws, "resources", None) or {})

    @staticmethod
    def _app_name(ws) -> str:
        return getattr(ws, "app_name", None) or app_name_for(ws.workspace_id)

    def _region(self, ws) -> str:
        return getattr(ws, "region", None) or self.region

    def _size(self, ws) -> MachineSize:
        size = self.sizes.get(getattr(ws, "size", None) or "small")
        if size is None:
            raise ProviderRejected(f"The size {ws.size!r} is not configured", provider="relay",
                                   upstream_status=400, code="UNKNOWN_SIZE")
        return size


def describe_failure(failure: dict, step: str) -> dict:
    """``{code, message, step}`` from a Catch's ``{Error, Cause}``: the code from the error class, the
    message from the Lambda error payload (our typed errors' public messages; nothing else is trusted)."""
    name = str(failure.get("Error") or "")
    code = ERROR_CODES.get(name, GENERIC_FAILURE)
    message = ""
    try:
        cause = json.loads(failure.get("Cause") or "{}")
    except (TypeError, ValueError):
        cause = {}
    if isinstance(cause, dict) and name in ERROR_CODES:
        message = str(cause.get("errorMessage") or "")
    return {"code": code, "message": (message or GENERIC_MESSAGES.get(code) or "Provisioning failed")[:MAX_MESSAGE],
            "step": step}


def _bounded(value, default: int, maximum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(1, min(maximum, number))
