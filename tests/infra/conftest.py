"""Fixtures for the CDK tests: the app is built (with bundling skipped) once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

INFRA_DIR = Path(__file__).resolve().parents[2] / "infra"
if str(INFRA_DIR) not in sys.path:
    sys.path.insert(0, str(INFRA_DIR))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk.assertions import Template  # noqa: E402
from infra_build import build  # noqa: E402


@pytest.fixture(scope="session")
def web_dir(tmp_path_factory) -> Path:
    """A stand-in web build, so the tests do not depend on what web/ holds today."""
    folder = tmp_path_factory.mktemp("web")
    (folder / "index.html").write_text("<!doctype html><title>Agent Relay Cloud</title>")
    (folder / "dashboard.html").write_text("<!doctype html><title>Dashboard</title>")
    return folder


@pytest.fixture(scope="session")
def built(web_dir, tmp_path_factory):
    """(app, stack, nag pack) of the default configuration."""
    return build(web_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def stack(built):
    return built[1]


@pytest.fixture(scope="session")
def template(stack) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="session")
def resources(template) -> dict:
    return template.to_json()["Resources"]
