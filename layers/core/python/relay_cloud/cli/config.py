"""The CLI's local state: ``config.json`` (and a fallback machine id) in the user data dir.

The directory is 0700 and every file in it 0600 from the moment it exists: files are written to a
temporary file created with ``O_EXCL`` and mode 0600 in the same directory, fsynced, then renamed over
the target with ``os.replace`` — a reader sees the old file or the new one, never half of one, and never
a file anyone else can read. The daemon key and the X25519 private key live only in ``config.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

CONFIG_FILE = "config.json"
MACHINE_ID_FILE = "machine-id"
DIR_MODE = 0o700
FILE_MODE = 0o600
SYSTEM_MACHINE_ID = Path("/etc/machine-id")
# Never send the raw /etc/machine-id (machine-id(5): it is confidential); send an app-specific HMAC of it.
_MACHINE_ID_APP_KEY = b"relay-cloud-cli machine id v1"


class ConfigError(Exception):
    """The config file exists but cannot be read or is not ours."""


class NoConfig(ConfigError):
    """There is no config in the data dir: this machine is not linked (never was, or was unlinked)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(f"this machine is not linked (no config in {directory}); run relay-cloud link")
        self.directory = directory


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$RELAY_CLOUD_HOME``, else ``$XDG_DATA_HOME/relay-cloud``, else ``~/.local/share/relay-cloud``.

    Per the XDG base directory spec a relative ``XDG_DATA_HOME`` is invalid and ignored."""
    env = os.environ if env is None else env
    override = env.get("RELAY_CLOUD_HOME", "").strip()
    if override:
        return Path(override).expanduser()
    xdg = env.get("XDG_DATA_HOME", "").strip()
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "relay-cloud"
    home = env.get("HOME", "").strip()
    base = Path(home) if home else Path.home()
    return base / ".local" / "share" / "relay-cloud"


def ensure_dir(directory: Path) -> Path:
    """Create the directory 0700 (parents with the default mode) or tighten an existing one to 0700."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not directory.is_dir():
            raise ConfigError(f"{directory} exists and is not a directory") from None
    os.chmod(directory, DIR_MODE)  # mkdir's mode is masked by the umask; an existing dir may be wider
    return directory


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, mode 0600 throughout (temp file + fsync + os.replace)."""
    path = Path(path)
    directory = ensure_dir(path.parent)
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, FILE_MODE)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, FILE_MODE)  # the creation mode is masked by the umask; make it exact
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Config:
    cloud_url: str
    daemon_id: str
    api_key: str = field(repr=False)
    machine_id: str
    name: str
    private_key: str = field(repr=False)  # base64url (no padding) of the raw 32-byte X25519 private key

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()


def config_path(directory: Path | None = None) -> Path:
    return (data_dir() if directory is None else Path(directory)) / CONFIG_FILE


def load(directory: Path | None = None) -> Config | None:
    """The saved link, or ``None`` when this machine is not linked."""
    path = config_path(directory)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
        return Config(**{name: _text(data, name) for name in Config.__dataclass_fields__})
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{path} is not a valid relay-cloud config ({exc})") from None


def load_linked(home: Path | None = None) -> tuple[Path, Config]:
    """The data dir (``home``, else the default one) and the link saved in it, for the commands that need
    one. Raises ``NoConfig`` when this machine is not linked, ``ConfigError`` when the config is unreadable."""
    directory = data_dir() if home is None else Path(home)
    linked = load(directory)
    if linked is None:
        raise NoConfig(directory)
    return directory, linked


def _text(data: dict, name: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def save(config: Config, directory: Path | None = None) -> Path:
    path = config_path(directory)
    write_private(path, config.to_json())
    return path


def delete(directory: Path | None = None) -> bool:
    """Remove ``config.json``; ``False`` when there was none."""
    try:
        config_path(directory).unlink()
    except FileNotFoundError:
        return False
    return True


def is_private(path: Path) -> bool:
    """True when no one but the owner can read or write ``path``."""
    return (os.stat(path).st_mode & 0o077) == 0


def machine_id(directory: Path | None = None, *, system_file: Path = SYSTEM_MACHINE_ID) -> str:
    """A stable id for this machine: an HMAC of ``/etc/machine-id`` when readable, else a random id
    generated once and kept in the data dir (``machine-id``, 0600)."""
    try:
        system = system_file.read_text().strip()
    except (OSError, UnicodeDecodeError):
        system = ""
    if system:
        return "m-" + hmac.new(system.encode(), _MACHINE_ID_APP_KEY, hashlib.sha256).hexdigest()[:32]
    path = (data_dir() if directory is None else Path(directory)) / MACHINE_ID_FILE
    try:
        stored = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        stored = ""
    if stored and _valid_machine_id(stored):
        return stored
    generated = "r-" + secrets.token_hex(16)
    write_private(path, (generated + "\n").encode())
    return generated


def _valid_machine_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(c.isascii() and (c.isalnum() or c in "._:-") for c in value)
