"""Where the things the stack ships live in the repository."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = REPO_ROOT / "pyproject.toml"
FUNCTIONS_DIR = REPO_ROOT / "functions"
LAYER_DIR = REPO_ROOT / "layers" / "core"
LAYER_PACKAGE_DIR = LAYER_DIR / "python" / "relay_cloud"
WEB_DIR = REPO_ROOT / "web"
WORKFLOWS_DIR = REPO_ROOT / "workflows"
