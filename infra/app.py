#!/usr/bin/env python3
"""CDK entry point: ``python infra/app.py`` (or ``npx cdk synth``) synthesizes the RelayCloud stack.

RELAY_SKIP_BUNDLING=1 skips asset bundling (context ``aws:cdk:bundling-stacks=[]``) for a fast offline
synth; without it the core layer is built with pip for arm64/cp312 and every asset is compiled to
unchecked-hash bytecode.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from relay_cloud_infra.application import build_app  # noqa: E402

if __name__ == "__main__":
    # Under the CDK CLI, CDK_OUTDIR is set; a plain `python infra/app.py` writes ./cdk.out.
    app, _stack, _pack = build_app(outdir=None if os.environ.get("CDK_OUTDIR") else str(HERE.parent / "cdk.out"))
    app.synth()
