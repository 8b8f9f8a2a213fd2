"""``relay-cloud admin set-plan`` as an operator runs it against the local stack: a user signs in through
the sandbox GitHub, the command (a subprocess, pointed at the stack's table the way ``relay-cloud dev``
prints) sets their plan, the user's own API shows it, and the table holds the audit item."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import uuid

import boto3

from relay_cloud.local.signin import sign_in
from tests.e2e.conftest import SEEN_SECRETS


def admin(stack, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "AWS_"))}
    env |= {"AWS_ENDPOINT_URL": stack.moto_url, "RELAY_TABLE_NAME": stack.env["RELAY_TABLE_NAME"]}
    return subprocess.run([sys.executable, "-m", "relay_cloud.cli.main", "admin", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def audit_items(stack, user_id: str) -> list[dict]:
    client = boto3.client("dynamodb", endpoint_url=stack.moto_url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return client.query(
        TableName=stack.env["RELAY_TABLE_NAME"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :audit)",
        ExpressionAttributeValues={":pk": {"S": f"USER#{user_id}"}, ":audit": {"S": "AUDIT#"}},
        ConsistentRead=True,
    )["Items"]


def signed_in(stack, login):
    client = sign_in(stack.url, login)
    SEEN_SECRETS.update({client.csrf_token, *client.cookies.values()})
    return client


def test_operator_sets_a_plan_the_user_sees_and_the_audit_records(local_stack):
    login = f"Plan-{uuid.uuid4().hex[:6]}"
    user = signed_in(local_stack, login)
    me = user.get("/api/auth/me").json()
    assert me["plan"] == "free"

    done = admin(local_stack, "set-plan", login.lower(), "team", "--reason", "design partner")
    assert done.returncode == 0, done.stderr
    assert "plan free → team" in done.stdout and me["id"] in done.stdout

    after = user.get("/api/auth/me").json()
    assert (after["plan"], after["plan_name"]) == ("team", "Team")
    [audit] = [i for i in audit_items(local_stack, me["id"]) if i["action"]["S"] == "plan.set"]
    assert audit["actor"]["S"] == f"operator:{getpass.getuser()}"
    assert audit["reason"]["S"] == "design partner"
    assert audit["detail"]["M"] == {"from": {"S": "free"}, "to": {"S": "team"}}

    again = admin(local_stack, "set-plan", login, "team")  # nothing to change: no second audit item
    assert again.returncode == 0 and "already on the team plan" in again.stdout
    assert len([i for i in audit_items(local_stack, me["id"]) if i["action"]["S"] == "plan.set"]) == 1


def test_unknown_login_and_unknown_plan_fail_clearly_and_change_nothing(local_stack):
    login = f"keep-{uuid.uuid4().hex[:6]}"
    user = signed_in(local_stack, login)

    missing = admin(local_stack, "set-plan", "nobody-" + uuid.uuid4().hex[:6], "team")
    assert missing.returncode == 1
    assert "No user has signed in with the GitHub login" in missing.stderr and missing.stdout == ""

    bogus = admin(local_stack, "set-plan", login, "platinum")
    assert bogus.returncode == 2 and "Unknown plan 'platinum'" in bogus.stderr and "free, pro, team" in bogus.stderr

    no_table = subprocess.run([sys.executable, "-m", "relay_cloud.cli.main", "admin", "set-plan", login, "pro"],
                              env={k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "AWS_"))},
                              capture_output=True, text=True, timeout=60)
    assert no_table.returncode == 2 and "--table" in no_table.stderr

    assert user.get("/api/auth/me").json()["plan"] == "free"
