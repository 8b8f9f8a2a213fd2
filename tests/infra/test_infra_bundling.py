"""The local bundler: real bundling of one function asset, and the layer's copy/compile step."""

from __future__ import annotations

import importlib.util
import struct
from pathlib import Path

import pytest
from relay_cloud_infra.bundling import (
    EXCLUDED_SUBPACKAGES,
    FunctionBundler,
    bundle_layer,
    package_of,
    runtime_dependencies,
)


def _pyc_flags(pyc: Path) -> int:
    header = pyc.read_bytes()[:16]
    assert header[:4] == importlib.util.MAGIC_NUMBER  # compiled by a 3.12 interpreter (the runtime's)
    return struct.unpack("<I", header[4:8])[0]


def test_function_asset_ships_unchecked_hash_bytecode(tmp_path):
    bundler = FunctionBundler("meta")
    assert bundler.try_bundle(str(tmp_path), None) is True
    root = tmp_path / "functions"
    assert (root / "__init__.py").is_file() and (root / "manifest.py").is_file()
    assert (root / "meta" / "handler.py").is_file()
    assert sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "__pycache__") == ["meta"]
    pyc = root / "meta" / "__pycache__" / "handler.cpython-312.pyc"
    assert pyc.is_file()
    # PEP 552: flags 0b01 = hash-based, check_source off (unchecked-hash).
    assert _pyc_flags(pyc) == 0b01
    assert _pyc_flags(root / "__pycache__" / "manifest.cpython-312.pyc") == 0b01


def test_layer_copy_excludes_local_only_packages_and_compiles(tmp_path):
    bundle_layer(tmp_path, dependencies=[])  # the pip step is exercised by the real synth
    package = tmp_path / "python" / "relay_cloud"
    assert (package / "config.py").is_file()
    assert (package / "__pycache__" / "config.cpython-312.pyc").is_file()
    assert _pyc_flags(package / "__pycache__" / "config.cpython-312.pyc") == 0b01
    for name in EXCLUDED_SUBPACKAGES:
        assert not (package / name).exists(), name


def test_runtime_dependencies_come_from_pyproject():
    deps = runtime_dependencies()
    assert any(d.startswith("aws-lambda-powertools") for d in deps)
    assert not any(d.startswith("moto") for d in deps)


@pytest.mark.parametrize(
    "handler,package",
    [("functions.auth.handler.lambda_handler", "auth"), ("functions.schedules.refresh.lambda_handler", "schedules")],
)
def test_package_of(handler, package):
    assert package_of(handler) == package


def test_package_of_refuses_foreign_handlers():
    with pytest.raises(ValueError):
        package_of("relay_cloud.handler.main")
