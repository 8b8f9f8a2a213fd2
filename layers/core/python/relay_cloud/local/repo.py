"""Where the repository is, for a local run from an editable install (the console script's sys.path
holds the core layer only, not the repository root where ``functions/`` and ``web/`` live)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# layers/core/python/relay_cloud/local/repo.py → the repository root is five levels up.
REPO_ROOT = Path(__file__).resolve().parents[5]
WEB_DIR = REPO_ROOT / "web"


def ensure_functions_importable() -> None:
    if importlib.util.find_spec("functions") is None and (REPO_ROOT / "functions" / "manifest.py").is_file():
        sys.path.insert(0, str(REPO_ROOT))
