"""Docker-free bundling of the core layer and the function packages (jsii ``ILocalBundling``).

Both assets ship bytecode compiled with ``--invalidation-mode unchecked-hash``: zipped assets have reset
timestamps, so timestamp-checked ``.pyc`` files never validate and every cold start would recompile.
The ``.py`` sources stay beside the bytecode (tracebacks, and nothing else is removed).

Tests skip bundling with the context ``{"aws:cdk:bundling-stacks": []}``; CDK then never calls
``try_bundle`` and hashes the source folder instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsii
from aws_cdk import BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from .paths import FUNCTIONS_DIR, LAYER_DIR, LAYER_PACKAGE_DIR, PYPROJECT

PYTHON_VERSION = "3.12"
# Wheels for the Lambda arm64 runtime (Amazon Linux 2023, glibc 2.34).
PIP_PLATFORM = "manylinux2014_aarch64"
# Subpackages of relay_cloud that belong to the CLI and the local stack and never ship to Lambda.
EXCLUDED_SUBPACKAGES = ("cli", "local", "sandbox", "daemon")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".mypy_cache")
# Nominal image: never pulled, local bundling always succeeds or raises.
_IMAGE = DockerImage.from_registry(f"public.ecr.aws/sam/build-python{PYTHON_VERSION}")
_SOURCE_EXCLUDES = ["**/__pycache__", "**/*.pyc", "**/.pytest_cache"]


class BundlingError(RuntimeError):
    """A local bundling step failed (no Docker fallback: fail the synth loudly)."""


def runtime_dependencies(pyproject: Path = PYPROJECT) -> list[str]:
    """The runtime requirements the layer ships: ``[project].dependencies`` of pyproject.toml."""
    with pyproject.open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def _python() -> str:
    """A Python of the Lambda runtime's minor version (bytecode magic numbers differ per version)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == PYTHON_VERSION:
        return sys.executable
    found = shutil.which(f"python{PYTHON_VERSION}")
    if not found:
        raise BundlingError(f"bundling needs python{PYTHON_VERSION} to compile bytecode for the runtime")
    return found


def _run(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise BundlingError(f"{' '.join(args[:4])} ... failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def compile_tree(path: Path) -> None:
    """Compile every module under ``path`` to unchecked-hash bytecode (PEP 552)."""
    _run([_python(), "-m", "compileall", "-q", "-f", "--invalidation-mode", "unchecked-hash", str(path)])


def bundle_layer(output_dir: Path, dependencies: list[str]) -> None:
    """``<out>/python``: the runtime dependencies for arm64/cp312 plus relay_cloud minus local-only parts."""
    target = Path(output_dir) / "python"
    target.mkdir(parents=True, exist_ok=True)
    if dependencies:
        _run(
            [
                _python(), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
                "--platform", PIP_PLATFORM, "--only-binary=:all:", "--python-version", PYTHON_VERSION,
                "--implementation", "cp", "--target", str(target), *dependencies,
            ]
        )
    excluded = {LAYER_PACKAGE_DIR / name for name in EXCLUDED_SUBPACKAGES}

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(_IGNORE(directory, names))
        return skipped | {name for name in names if Path(directory) / name in excluded}

    shutil.copytree(LAYER_PACKAGE_DIR, target / "relay_cloud", ignore=ignore, dirs_exist_ok=True)
    compile_tree(target)


def package_of(handler: str) -> str:
    """``functions.auth.handler.lambda_handler`` → ``auth`` (the folder under functions/ to ship)."""
    parts = handler.split(".")
    if len(parts) < 3 or parts[0] != "functions" or not all(p.isidentifier() for p in parts):
        raise ValueError(f"handler {handler!r} must look like functions.<package>.<module>.<function>")
    return parts[1]


def bundle_function(output_dir: Path, package: str, functions_dir: Path = FUNCTIONS_DIR) -> None:
    """``<out>/functions``: the package marker, the manifest and the one function package, compiled."""
    target = Path(output_dir) / "functions"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("__init__.py", "manifest.py"):
        shutil.copy2(functions_dir / name, target / name)
    source = functions_dir / package
    if source.is_dir():
        shutil.copytree(source, target / package, ignore=_IGNORE, dirs_exist_ok=True)
    elif (functions_dir / f"{package}.py").is_file():
        shutil.copy2(functions_dir / f"{package}.py", target / f"{package}.py")
    else:
        raise BundlingError(f"no function package functions/{package}")
    compile_tree(Path(output_dir))


@jsii.implements(ILocalBundling)
class LayerBundler:
    def __init__(self, dependencies: list[str]) -> None:
        self.dependencies = list(dependencies)

    def try_bundle(self, output_dir: str, options=None, **_kwargs) -> bool:
        bundle_layer(Path(output_dir), self.dependencies)
        return True


@jsii.implements(ILocalBundling)
class FunctionBundler:
    def __init__(self, package: str, functions_dir: Path = FUNCTIONS_DIR) -> None:
        self.package = package
        self.functions_dir = functions_dir

    def try_bundle(self, output_dir: str, options=None, **_kwargs) -> bool:
        bundle_function(Path(output_dir), self.package, self.functions_dir)
        return True


def layer_code() -> lambda_.Code:
    dependencies = runtime_dependencies()
    return lambda_.Code.from_asset(
        str(LAYER_DIR),
        exclude=_SOURCE_EXCLUDES,
        bundling=BundlingOptions(
            image=_IMAGE,
            local=LayerBundler(dependencies),
            # Never executed (local bundling wins); it keys CDK's asset cache on the dependency list.
            command=["relay-cloud-bundle-layer", PIP_PLATFORM, *dependencies],
        ),
    )


def function_code(handler: str) -> lambda_.Code:
    package = package_of(handler)
    return lambda_.Code.from_asset(
        str(FUNCTIONS_DIR),
        exclude=_SOURCE_EXCLUDES,
        bundling=BundlingOptions(
            image=_IMAGE,
            local=FunctionBundler(package),
            # Never executed; distinct per package so CDK's asset cache never shares one bundle.
            command=["relay-cloud-bundle-function", package],
        ),
    )
