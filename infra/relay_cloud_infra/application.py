"""Build the CDK app: context, environment, the stack and the cdk-nag AwsSolutions checks."""

from __future__ import annotations

import os
from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from .function import custom_providers_context, workspace_sizes_context
from .stack import RelayCloudStack

STACK_NAME = "RelayCloud"
# Offline synth fallback: a CMK-encrypted TableV2 needs a concrete environment. Real deploys get the
# account/region from the CLI (CDK_DEFAULT_ACCOUNT/REGION) or from context.
FALLBACK_ACCOUNT = "111111111111"
FALLBACK_REGION = "us-east-1"
SKIP_BUNDLING_CONTEXT = {"aws:cdk:bundling-stacks": []}


def _context(app: App, key: str, default=None):
    value = app.node.try_get_context(key)
    return default if value in (None, "") else value


def build_app(
    context: dict | None = None, outdir: str | None = None, *, nag: bool = True
) -> tuple[App, RelayCloudStack, AwsSolutionsChecks | None]:
    context = dict(context or {})
    if os.environ.get("RELAY_SKIP_BUNDLING") == "1":
        context.update(SKIP_BUNDLING_CONTEXT)
    app = App(context=context, outdir=outdir)  # outdir None: CDK_OUTDIR (CLI) or a temp dir
    env = Environment(
        account=_context(app, "account", os.environ.get("CDK_DEFAULT_ACCOUNT") or FALLBACK_ACCOUNT),
        region=_context(app, "region", os.environ.get("CDK_DEFAULT_REGION") or FALLBACK_REGION),
    )
    web_dir = _context(app, "web_dir")
    stack = RelayCloudStack(
        app,
        STACK_NAME,
        env=env,
        description="Agent Relay Cloud control plane",
        termination_protection=bool(_context(app, "termination_protection", False)),
        **({"web_dir": Path(web_dir)} if web_dir else {}),
        domain_name=_context(app, "domain_name"),
        certificate_arn=_context(app, "certificate_arn"),
        github_client_id=str(_context(app, "github_client_id", "")),
        custom_providers=custom_providers_context(app.node.try_get_context("custom_providers")),
        alarm_email=_context(app, "alarm_email"),
        fly_org=str(_context(app, "fly_org", "personal")),
        workspace_region=str(_context(app, "workspace_region", "iad")),
        workspace_image=str(_context(app, "workspace_image", "")),
        workspace_sizes=workspace_sizes_context(app.node.try_get_context("workspace_sizes")),
        railway_workspace_id=str(_context(app, "railway_workspace_id", "")).strip(),
        api_rate_limit=int(_context(app, "api_rate_limit", 100)),
        api_burst_limit=int(_context(app, "api_burst_limit", 200)),
    )
    pack = None
    if nag:
        # Violations (errors and warnings) fail the synth; acknowledgements are written to the template
        # metadata (cdk_nag.rules_to_suppress) as the audit trail.
        pack = AwsSolutionsChecks(app, verbose=True, write_suppressions_to_cloud_formation=True)
        Validations.of(app).add_plugins(pack)
    return app, stack, pack
