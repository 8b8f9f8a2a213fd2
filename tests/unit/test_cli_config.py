"""The CLI's config module: where it lives, its modes, atomic writes, the machine id."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from relay_cloud.cli import config as cfg


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def wide_umask():
    """Prove the modes do not depend on the caller's umask."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def sample(**overrides) -> cfg.Config:
    values = dict(
        cloud_url="http://127.0.0.1:8787", daemon_id="d1", api_key="rly_d1_SECRETKEY", machine_id="m-1",
        name="laptop", private_key="PRIVATEKEYB64",
    )
    values.update(overrides)
    return cfg.Config(**values)


# --- where ---------------------------------------------------------------------------------------------


def test_relay_cloud_home_overrides_everything(tmp_path):
    env = {"RELAY_CLOUD_HOME": str(tmp_path / "rc"), "XDG_DATA_HOME": "/xdg", "HOME": "/home/u"}
    assert cfg.data_dir(env) == tmp_path / "rc"


def test_xdg_data_home_when_absolute():
    assert cfg.data_dir({"XDG_DATA_HOME": "/xdg/data", "HOME": "/home/u"}) == Path("/xdg/data/relay-cloud")


def test_relative_or_empty_xdg_data_home_is_ignored():
    expected = Path("/home/u/.local/share/relay-cloud")
    assert cfg.data_dir({"XDG_DATA_HOME": "relative/dir", "HOME": "/home/u"}) == expected
    assert cfg.data_dir({"XDG_DATA_HOME": "", "HOME": "/home/u"}) == expected
    assert cfg.data_dir({"HOME": "/home/u"}) == expected


def test_defaults_to_the_process_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RELAY_CLOUD_HOME", str(tmp_path))
    assert cfg.data_dir() == tmp_path
    assert cfg.config_path() == tmp_path / "config.json"


# --- modes ---------------------------------------------------------------------------------------------


def test_save_creates_dir_0700_and_file_0600(tmp_path, wide_umask):
    home = tmp_path / "a" / "relay-cloud"
    path = cfg.save(sample(), home)
    assert path == home / "config.json"
    assert mode(home) == 0o700
    assert mode(path) == 0o600
    assert cfg.is_private(path)
    assert os.listdir(home) == ["config.json"]  # no temp file left behind


def test_existing_wider_dir_is_tightened(tmp_path):
    home = tmp_path / "rc"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    cfg.save(sample(), home)
    assert mode(home) == 0o700


def test_ensure_dir_refuses_a_file(tmp_path):
    (tmp_path / "rc").write_text("x")
    with pytest.raises(cfg.ConfigError):
        cfg.ensure_dir(tmp_path / "rc")


def test_overwrite_keeps_0600_even_if_the_old_file_was_wider(tmp_path, wide_umask):
    path = cfg.save(sample(), tmp_path)
    os.chmod(path, 0o644)
    cfg.save(sample(name="desk"), tmp_path)
    assert mode(path) == 0o600
    assert cfg.load(tmp_path).name == "desk"


# --- atomic write --------------------------------------------------------------------------------------


def test_the_temp_file_is_private_before_it_replaces_the_target(tmp_path, monkeypatch, wide_umask):
    cfg.save(sample(), tmp_path)
    seen = {}
    real_replace = os.replace

    def spy(src, dst):
        seen["tmp_mode"] = mode(Path(src))
        seen["tmp_dir"] = Path(src).parent
        seen["tmp_content"] = json.loads(Path(src).read_text())["name"]
        seen["target_before"] = json.loads(Path(dst).read_text())["name"]
        return real_replace(src, dst)

    monkeypatch.setattr(cfg.os, "replace", spy)
    cfg.save(sample(name="desk"), tmp_path)
    assert seen == {"tmp_mode": 0o600, "tmp_dir": tmp_path, "tmp_content": "desk", "target_before": "laptop"}
    assert cfg.load(tmp_path).name == "desk"


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    cfg.save(sample(), tmp_path)

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cfg.os, "replace", broken)
    with pytest.raises(OSError):
        cfg.save(sample(name="desk"), tmp_path)
    assert cfg.load(tmp_path).name == "laptop"
    assert os.listdir(tmp_path) == ["config.json"]


def test_write_private_does_not_follow_a_planted_temp_symlink(tmp_path, monkeypatch):
    # The temp name is random and created with O_EXCL: a pre-existing name is an error, never followed.
    monkeypatch.setattr(cfg.secrets, "token_hex", lambda n: "fixed")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / ".config.json.fixed.tmp").symlink_to(victim)
    with pytest.raises(FileExistsError):
        cfg.write_private(tmp_path / "config.json", b"{}")
    assert victim.read_text() == "untouched"


# --- content -------------------------------------------------------------------------------------------


def test_round_trip_and_file_shape(tmp_path):
    config = sample()
    path = cfg.save(config, tmp_path)
    assert cfg.load(tmp_path) == config
    assert set(json.loads(path.read_text())) == {
        "cloud_url", "daemon_id", "api_key", "machine_id", "name", "private_key",
    }


def test_repr_never_shows_the_secrets():
    text = repr(sample())
    assert "SECRETKEY" not in text and "PRIVATEKEY" not in text and "laptop" in text


def test_load_missing_is_none_and_delete_reports(tmp_path):
    assert cfg.load(tmp_path) is None
    assert cfg.delete(tmp_path) is False
    cfg.save(sample(), tmp_path)
    assert cfg.delete(tmp_path) is True
    assert cfg.load(tmp_path) is None


@pytest.mark.parametrize("content", ["not json", "[]", '{"cloud_url": "x"}', json.dumps({
    "cloud_url": "x", "daemon_id": "", "api_key": "k", "machine_id": "m", "name": "n", "private_key": "p",
})])
def test_load_rejects_a_broken_config(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(cfg.ConfigError):
        cfg.load(tmp_path)




def test_load_linked_returns_the_dir_and_link_or_says_how_to_link(tmp_path, monkeypatch):
    with pytest.raises(cfg.NoConfig) as missing:
        cfg.load_linked(tmp_path)
    assert missing.value.directory == tmp_path
    assert str(missing.value) == f"this machine is not linked (no config in {tmp_path}); run relay-cloud link"

    cfg.save(sample(), tmp_path)
    assert cfg.load_linked(tmp_path) == (tmp_path, sample())
    monkeypatch.setenv("RELAY_CLOUD_HOME", str(tmp_path))
    assert cfg.load_linked() == (tmp_path, sample())  # no home: the default data dir

    (tmp_path / "config.json").write_text("not json")
    with pytest.raises(cfg.ConfigError) as broken:
        cfg.load_linked(tmp_path)
    assert not isinstance(broken.value, cfg.NoConfig)
# --- machine id ----------------------------------------------------------------------------------------


def test_machine_id_is_derived_from_etc_machine_id_and_stable(tmp_path):
    system = tmp_path / "machine-id-src"
    system.write_text("0123456789abcdef0123456789abcdef\n")
    first = cfg.machine_id(tmp_path / "home", system_file=system)
    assert first == cfg.machine_id(tmp_path / "home", system_file=system)
    assert first.startswith("m-") and "0123456789abcdef" not in first  # never the raw id
    assert not (tmp_path / "home").exists()  # nothing stored when the system id is readable
    system.write_text("fedcba9876543210fedcba9876543210\n")
    assert cfg.machine_id(tmp_path / "home", system_file=system) != first


def test_machine_id_falls_back_to_a_stored_random_id(tmp_path, wide_umask):
    home = tmp_path / "home"
    missing = tmp_path / "nope"
    first = cfg.machine_id(home, system_file=missing)
    assert first.startswith("r-") and len(first) == 34
    assert mode(home / "machine-id") == 0o600 and mode(home) == 0o700
    assert cfg.machine_id(home, system_file=missing) == first
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert cfg.machine_id(home, system_file=empty) == first  # an empty /etc/machine-id is unusable too
    assert cfg.machine_id(home, system_file=tmp_path) == first  # unreadable (a directory)
