"""Compute for workspaces: the provisioner interface the provisioning workflow calls step by step, its
value types, the named machine sizes, and the errors a provider's refusal becomes. No I/O here.

The contract (including each step's idempotency rule) is docs/design/compute-provisioning.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Protocol

from relay_cloud.domain.errors import RelayError

# Fly app names are one global namespace: lower-case letters, digits and dashes, at most 63 characters.
_APP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

DEFAULT_SIZES = {
    "small": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 1024, "volume_gb": 10},
    "medium": {"cpu_kind": "shared", "cpus": 2, "memory_mb": 2048, "volume_gb": 20},
    "large": {"cpu_kind": "performance", "cpus": 2, "memory_mb": 4096, "volume_gb": 40},
}


class ProviderRejected(RelayError):
    """The compute provider refused a request (a 4xx): retrying the same call will not help. The
    upstream's own message is kept (shortened) so the workspace's recorded error says why."""

    status = 502
    code = "COMPUTE_PROVIDER_REJECTED"

    def __init__(self, message: str, *, provider: str, upstream_status: int, upstream_error: str = "",
                 code: str | None = None):
        super().__init__(message, code=code, provider=provider, upstream_status=upstream_status,
                         upstream_error=upstream_error[:200])


class AppNameTaken(ProviderRejected):
    code = "APP_NAME_TAKEN"


class SizeError(ValueError):
    """A size catalog (``RELAY_WORKSPACE_SIZES``) that does not describe valid machines."""


@dataclass(frozen=True)
class MachineSize:
    name: str
    cpu_kind: str
    cpus: int
    memory_mb: int
    volume_gb: int

    def guest(self) -> dict:
        return {"cpu_kind": self.cpu_kind, "cpus": self.cpus, "memory_mb": self.memory_mb}


def parse_sizes(raw: str | None) -> dict[str, MachineSize]:
    """The named sizes from JSON ``{"name": {"cpu_kind", "cpus", "memory_mb", "volume_gb"}}`` (empty →
    the defaults). Refuses what no provider could run, so a typo fails at configuration load."""
    try:
        data = json.loads(raw) if raw else DEFAULT_SIZES
    except ValueError as exc:
        raise SizeError("RELAY_WORKSPACE_SIZES must be a JSON object") from exc
    if not isinstance(data, dict) or not data:
        raise SizeError("RELAY_WORKSPACE_SIZES must be a non-empty JSON object of named sizes")
    sizes = {}
    for name, spec in data.items():
        if not re.match(r"^[a-z][a-z0-9-]{0,31}$", str(name)) or not isinstance(spec, dict):
            raise SizeError(f"size {name!r}: a lower-case name with an object of cpu_kind, cpus, memory_mb, volume_gb")
        kind, cpus, memory, volume = (spec.get(k) for k in ("cpu_kind", "cpus", "memory_mb", "volume_gb"))
        if kind not in ("shared", "performance"):
            raise SizeError(f"size {name!r}: cpu_kind must be shared or performance")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (cpus, memory, volume)):
            raise SizeError(f"size {name!r}: cpus, memory_mb and volume_gb must be integers")
        if cpus < 1 or memory < 256 or memory % 256 or not 1 <= volume <= 500:
            raise SizeError(f"size {name!r}: cpus ≥ 1, memory_mb a multiple of 256, volume_gb 1-500")
        sizes[name] = MachineSize(name=name, cpu_kind=kind, cpus=cpus, memory_mb=memory, volume_gb=volume)
    return sizes


def app_name_for(workspace_id: str, prefix: str = "ws") -> str:
    """The provider app name of a workspace: derived, so every retry of a step asks for the same one."""
    name = f"{prefix}-{workspace_id}".lower().replace("_", "-")
    if not _APP_NAME.match(name):
        raise ValueError("workspace id does not make a valid app name")
    return name


@dataclass(frozen=True)
class AppRef:
    name: str
    org: str
    created: bool  # False when an existing app of ours was adopted (a retried step)


@dataclass(frozen=True)
class IpRef:
    address: str
    type: str  # Fly: v4 | v6 | shared_v4 | private_v6; Railway (no IPs): "domain", the service's host name


@dataclass(frozen=True)
class VolumeRef:
    id: str
    name: str
    region: str
    size_gb: int
    attached_machine_id: str | None = None


@dataclass(frozen=True)
class MachineSpec:
    image: str
    size: MachineSize
    region: str
    volume_id: str | None = None
    mount_path: str = "/data"
    env: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)  # e.g. {"workspace_id": ...}
    internal_port: int = 3888  # the agent host's HTTP port behind Fly's proxy


@dataclass(frozen=True)
class MachineRef:
    id: str
    name: str
    state: str
    region: str
    instance_id: str = ""
    volume_id: str | None = None


CERTIFICATE_STATES = ("pending", "active", "failed")


class Provisioner(Protocol):
    """One provider's compute, step by step. Every ``ensure_*`` looks before it creates; every delete
    treats "already gone" as done. Raises ``ProviderRejected`` (4xx) or ``UpstreamUnavailable``
    (retryable)."""

    provider: str

    def ensure_app(self, app_name: str, org: str | None = None) -> AppRef: ...
    def ensure_ips(self, app_name: str) -> list[IpRef]: ...
    def ensure_volume(self, app_name: str, name: str, region: str, size_gb: int) -> VolumeRef: ...
    def set_secrets(self, app_name: str, values: dict[str, str]) -> int: ...
    def ensure_machine(self, app_name: str, name: str, spec: MachineSpec) -> MachineRef: ...
    def wait_started(self, app_name: str, machine_id: str, timeout_s: int = 60) -> bool: ...
    def machine_state(self, app_name: str, machine_id: str) -> str | None: ...
    def start(self, app_name: str, machine_id: str) -> str: ...
    def stop(self, app_name: str, machine_id: str) -> str: ...
    def restart(self, app_name: str, machine_id: str) -> str: ...
    def delete_machine(self, app_name: str, machine_id: str) -> None: ...
    def delete_volume(self, app_name: str, volume_id: str) -> None: ...
    def release_ips(self, app_name: str) -> None: ...
    def delete_app(self, app_name: str) -> None: ...
    # Custom domains: the provider's TLS certificate for a verified hostname of the app.
    def add_certificate(self, app_name: str, hostname: str) -> str: ...  # looks first; the status
    def certificate_status(self, app_name: str, hostname: str) -> str | None: ...  # CERTIFICATE_STATES or None
    def delete_certificate(self, app_name: str, hostname: str) -> None: ...  # 404 = done
