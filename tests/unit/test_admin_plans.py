"""``relay-cloud admin set-plan``: the operator's plan change (services/admin.py) over the in-memory
fakes, and the command's argument handling before it touches any table (cli/admin.py)."""

from __future__ import annotations

import io

import pytest

from relay_cloud.cli import admin as admin_cli
from relay_cloud.cli.main import build_parser
from relay_cloud.domain.auth import User
from relay_cloud.domain.errors import Conflict, NotFound, ValidationFailed
from relay_cloud.services.admin import PlanAdmin
from tests.fakes import Clock, FakeUsers

OPERATOR = "operator:alice"


@pytest.fixture
def users():
    fake = FakeUsers()
    fake.users["usr_1"] = User("usr_1", 101, "Octo-Cat", None, None, None, "free", 1)
    fake.users["usr_2"] = User("usr_2", 102, "hubot", None, None, None, "pro", 1)
    return fake


def service(users):
    return PlanAdmin(users=users, clock=Clock(1_800_000_000))


def test_sets_the_plan_and_audits_it(users):
    change = service(users).set_plan("octo-cat", "Team", actor=OPERATOR, reason="design partner")
    assert (change.user_id, change.github_login, change.from_plan, change.to_plan) == ("usr_1", "Octo-Cat", "free",
                                                                                      "team")
    assert change.changed and users.users["usr_1"].plan == "team"
    assert users.users["usr_2"].plan == "pro"  # nobody else
    assert users.audit == [{"subject": "usr_1", "action": "plan.set", "actor": OPERATOR, "reason": "design partner",
                            "detail": {"from": "free", "to": "team"}, "at": 1_800_000_000}]


def test_the_same_plan_again_changes_and_audits_nothing(users):
    change = service(users).set_plan("@hubot", "pro", actor=OPERATOR)
    assert not change.changed and users.users["usr_2"].plan == "pro" and users.audit == []


@pytest.mark.parametrize("plan", ["gold", "", "pro-max", "Enterprise Plus"])
def test_only_catalog_plans(users, plan):
    with pytest.raises(ValidationFailed) as err:
        service(users).set_plan("hubot", plan, actor=OPERATOR)
    assert err.value.code == "UNKNOWN_PLAN" and err.value.details["plans"] == ["free", "pro", "team", "enterprise"]
    assert users.users["usr_2"].plan == "pro" and users.audit == []


def test_plan_names_ignore_case_and_spaces(users):
    assert service(users).set_plan("hubot", " FREE ", actor=OPERATOR).to_plan == "free"
    assert users.users["usr_2"].plan == "free"


def test_unknown_login_is_not_found(users):
    with pytest.raises(NotFound) as err:
        service(users).set_plan("nobody", "team", actor=OPERATOR)
    assert err.value.code == "USER_NOT_FOUND" and "nobody" in err.value.message


@pytest.mark.parametrize("login", ["", "-octo", "octo cat", "a" * 40, "octo/cat", "octo@x"])
def test_malformed_logins_are_refused(users, login):
    with pytest.raises(ValidationFailed) as err:
        service(users).set_plan(login, "team", actor=OPERATOR)
    assert err.value.code == "INVALID_LOGIN"


def test_the_actor_must_be_an_operator(users):
    with pytest.raises(ValueError):
        service(users).set_plan("hubot", "team", actor="usr_2")


def test_a_concurrent_change_is_reported_not_overwritten(users):
    class Racing(FakeUsers):
        def find_by_github_login(self, login):
            found = super().find_by_github_login(login)
            self.users["usr_2"] = User("usr_2", 102, "hubot", None, None, None, "enterprise", 1)  # someone else
            return found

    racing = Racing()
    racing.users = dict(users.users)
    with pytest.raises(Conflict) as err:
        service(racing).set_plan("hubot", "team", actor=OPERATOR)
    assert err.value.code == "PLAN_CHANGED"
    assert racing.users["usr_2"].plan == "enterprise" and racing.audit == []


# -- the command, before any table is touched ---------------------------------------------------------


def test_the_command_is_registered():
    args = build_parser().parse_args(["admin", "set-plan", "octocat", "team", "--table", "t", "--region", "eu-west-1"])
    assert (args.login, args.plan, args.table, args.region, args.endpoint_url) == ("octocat", "team", "t",
                                                                                   "eu-west-1", None)
    assert args.handler.__module__ == "relay_cloud.cli.admin"


@pytest.mark.parametrize(("kwargs", "environ", "message"), [
    ({}, {}, "--table"),
    ({"table": "t"}, {}, "--region"),
    ({}, {"RELAY_TABLE_NAME": "t", "AWS_ENDPOINT_URL": "http://dynamo.example.net:8000"}, "https"),
])
def test_usage_errors_exit_2_before_any_aws_call(kwargs, environ, message):
    err = io.StringIO()
    status = admin_cli.set_plan(login="octocat", plan="team", environ=environ, out=io.StringIO(), err=err, **kwargs)
    assert status == 2 and message in err.getvalue()


def test_the_actor_names_the_os_user():
    actor = admin_cli.operator_actor()
    assert actor.startswith("operator:") and len(actor) > len("operator:") and " " not in actor
