"""``relay-cloud admin``: operator commands. They act on the DynamoDB table directly with the operator's
own AWS credentials; no HTTP route exists for them, so no web session can ever reach them.

    relay-cloud admin set-plan LOGIN PLAN [--reason TEXT] [--table NAME] [--region REGION] [--endpoint-url URL]

Which table:
- deployed: ``--table NAME --region REGION`` (or RELAY_TABLE_NAME / AWS_REGION), credentials from the
  standard AWS chain (environment, profile, SSO);
- the local stack: ``relay-cloud dev`` prints the line to use, e.g. ``AWS_ENDPOINT_URL=http://127.0.0.1:
  PORT RELAY_TABLE_NAME=relay-cloud-local relay-cloud admin set-plan octocat team`` (a loopback endpoint
  needs no real credentials and defaults to the stack's region).

Exit status: 0 done (or nothing to change), 1 the user or the table cannot be found or the plan changed
meanwhile, 2 bad usage (unknown plan, malformed login, no table given).

Only argparse is imported at module level (``relay-cloud --help`` builds this parser).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TextIO
from urllib.parse import urlsplit

PROG = "relay-cloud admin"


def add_parser(commands) -> None:
    """Register ``admin`` and its subcommands on the top-level subparsers."""
    admin = commands.add_parser(
        "admin", help="operator commands on the table (the local stack's, or a deployed one with AWS credentials)",
        description="Operator commands. They use the table directly with your AWS credentials.",
    )
    actions = admin.add_subparsers(dest="admin_command", metavar="ACTION", required=True)
    set_plan = actions.add_parser(
        "set-plan", help="set a user's plan (audited) until billing exists",
        description="Set the plan of the user who signed in with GitHub login LOGIN. The change is conditional "
        "(a concurrent change is reported, not overwritten) and audited as plan.set by operator:<your OS user>.",
    )
    set_plan.add_argument("login", metavar="LOGIN", help="the user's GitHub login")
    set_plan.add_argument("plan", metavar="PLAN", help="a plan of the catalog: free, pro, team, enterprise")
    set_plan.add_argument("--reason", default=None, help="why (kept in the audit item)")
    set_plan.add_argument("--table", default=None, help="the table (default: $RELAY_TABLE_NAME)")
    set_plan.add_argument("--region", default=None, help="its region (default: $AWS_REGION / $AWS_DEFAULT_REGION)")
    set_plan.add_argument(
        "--endpoint-url", default=None,
        help="a DynamoDB endpoint other than AWS's, e.g. the local stack's "
        "(default: $AWS_ENDPOINT_URL_DYNAMODB / $AWS_ENDPOINT_URL)",
    )
    set_plan.set_defaults(handler=_set_plan)


def _set_plan(args: argparse.Namespace) -> int:
    return set_plan(login=args.login, plan=args.plan, reason=args.reason, table=args.table, region=args.region,
                    endpoint_url=args.endpoint_url)


def operator_actor() -> str:
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        name = f"uid-{os.getuid()}"
    return "operator:" + ("".join(ch for ch in name if not ch.isspace())[:64] or "unknown")


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def set_plan(*, login: str, plan: str, reason: str | None = None, table: str | None = None,
             region: str | None = None, endpoint_url: str | None = None, environ=None,
             out: TextIO | None = None, err: TextIO | None = None) -> int:
    environ = os.environ if environ is None else environ
    out, err = out or sys.stdout, err or sys.stderr

    def fail(message: str, status: int) -> int:
        print(f"{PROG} set-plan: {message}", file=err, flush=True)
        return status

    table = table or environ.get("RELAY_TABLE_NAME")
    if not table:
        return fail("which table? give --table NAME (or set RELAY_TABLE_NAME)", 2)
    endpoint_url = endpoint_url or environ.get("AWS_ENDPOINT_URL_DYNAMODB") or environ.get("AWS_ENDPOINT_URL") or None
    local = bool(endpoint_url) and _is_loopback(endpoint_url)
    if endpoint_url and not local and urlsplit(endpoint_url).scheme != "https":
        return fail("an endpoint other than this machine must be https", 2)
    region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not region:
        if not local:
            return fail("which region? give --region REGION (or set AWS_REGION)", 2)
        from relay_cloud.local.stack import REGION

        region = REGION

    import boto3

    if boto3.session.Session().get_credentials() is None:
        if not local:
            return fail("no AWS credentials found (set AWS_PROFILE, run aws sso login, or export keys)", 1)
        # The local stack's emulator accepts any key; give botocore one so it can sign.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")

    from relay_cloud.adapters.dynamo import models
    from relay_cloud.adapters.dynamo.accounts import UserRepository
    from relay_cloud.domain.errors import Conflict, DependencyUnavailable, NotFound, RelayError, ValidationFailed
    from relay_cloud.services.admin import PlanAdmin

    models.bind_table(table, host=endpoint_url, region=region)
    actor = operator_actor()
    try:
        change = PlanAdmin(users=UserRepository()).set_plan(login, plan, actor=actor, reason=reason)
    except ValidationFailed as exc:
        return fail(exc.message, 2)
    except (NotFound, Conflict) as exc:
        return fail(exc.message, 1)
    except DependencyUnavailable as exc:
        return fail(f"{exc.message} (table {table} in {region})", 1)
    except RelayError as exc:  # e.g. the table does not exist, or access is denied
        return fail(f"{exc.message} (table {table} in {region})", 1)
    except KeyboardInterrupt:
        return 130
    if not change.changed:
        print(f"{change.github_login} ({change.user_id}) is already on the {change.to_plan} plan; nothing changed.",
              file=out, flush=True)
        return 0
    print(f"{change.github_login} ({change.user_id}): plan {change.from_plan} → {change.to_plan} "
          f"(audited as plan.set by {actor}).", file=out, flush=True)
    return 0
