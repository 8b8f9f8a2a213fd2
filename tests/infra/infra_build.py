"""Build the CDK app for tests: bundling skipped, a stand-in web build, output in a temp dir."""

from __future__ import annotations

from pathlib import Path

SKIP_BUNDLING = {"aws:cdk:bundling-stacks": []}


def build(web_dir: Path, tmp_path_factory, **context):
    """(app, stack, nag pack), built exactly as infra/app.py builds them."""
    from relay_cloud_infra.application import build_app

    outdir = tmp_path_factory.mktemp("cdk.out")
    return build_app({**SKIP_BUNDLING, "web_dir": str(web_dir), **context}, outdir=str(outdir))
