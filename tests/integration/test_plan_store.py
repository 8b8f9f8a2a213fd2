"""The operator's access patterns on both engines: finding a user by GitHub login through the login
guard written at sign-in (renames, re-registered logins, account deletion), and the conditional plan
change written together with its audit item."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.accounts import UserRepository
from relay_cloud.adapters.dynamo.models import AuditItem, DataKeyItem, GithubIdentityItem, Item
from relay_cloud.domain.auth import User
from relay_cloud.domain.errors import Conflict
from relay_cloud.services.admin import PlanAdmin
from relay_cloud.services.auth import StoredCredential

NOW = 1_800_000_000


def sign_in(users, user_id, github_id, login, *, is_new=True, previous_login=None, plan="free"):
    credential = StoredCredential(user_id, "github", "sign-in", "oauth_access_token", b"\x00c", 1, {"login": login})
    data_key = DataKeyItem(keys.user_pk(user_id), keys.data_key_sk(1), user_id=user_id, version=1,
                           wrapped_key=b"w", kms_key_id="alias/k", created_at=NOW) if is_new else None
    users.save_sign_in(User(user_id, github_id, login, None, None, None, plan, NOW), is_new=is_new,
                       credential=credential, new_data_key=data_key, now=NOW, previous_login=previous_login)


def audit_items(user_id):
    return [i for i in AuditItem.query(keys.user_pk(user_id), AuditItem.sk.startswith(keys.AUDIT_PREFIX))]


def test_sign_in_writes_a_login_guard_found_case_insensitively(backend):
    users = UserRepository()
    sign_in(users, "usr_a", 7, "Octo-Cat")
    guard = GithubIdentityItem.get(keys.github_login_pk("octo-cat"), keys.IDENTITY_SK)
    assert guard.user_id == "usr_a" and guard.type == "GITHUB_LOGIN"
    assert users.find_by_github_login("OCTO-cat").user_id == "usr_a"
    assert users.find_by_github_login("octo") is None


def test_a_rename_moves_the_guard_and_a_re_registered_login_finds_its_new_owner(backend):
    users = UserRepository()
    sign_in(users, "usr_a", 7, "octo")
    sign_in(users, "usr_a", 7, "octo-renamed", is_new=False, previous_login="octo")
    assert users.find_by_github_login("octo-renamed").user_id == "usr_a"
    assert users.find_by_github_login("octo") is None
    with pytest.raises(GithubIdentityItem.DoesNotExist):  # released, not left behind
        GithubIdentityItem.get(keys.github_login_pk("octo"), keys.IDENTITY_SK)

    sign_in(users, "usr_b", 8, "octo")  # someone registers the freed login
    sign_in(users, "usr_a", 7, "octo-renamed", is_new=False, previous_login="octo-renamed")
    assert users.find_by_github_login("octo").user_id == "usr_b"


def test_a_stale_guard_never_answers_and_is_not_stolen_on_release(backend):
    users = UserRepository()
    sign_in(users, "usr_a", 7, "octo")
    # usr_a renames to "octo2" on GitHub, and usr_b registers "octo" and signs in before usr_a comes back.
    sign_in(users, "usr_b", 8, "octo")
    sign_in(users, "usr_a", 7, "octo2", is_new=False, previous_login="octo")  # must not delete usr_b's guard
    assert users.find_by_github_login("octo").user_id == "usr_b"
    assert users.find_by_github_login("octo2").user_id == "usr_a"


def test_account_deletion_takes_the_login_guard_only_while_it_is_the_users(backend):
    users = UserRepository()
    sign_in(users, "usr_a", 7, "octo")
    sign_in(users, "usr_b", 8, "octo")  # usr_a renamed away meanwhile (not yet seen by us)
    users.delete_items(list(users.account_items(users.get("usr_a"))))
    assert users.find_by_github_login("octo").user_id == "usr_b"
    users.delete_items(list(users.account_items(users.get("usr_b"))))
    assert list(Item.query(keys.github_login_pk("octo"))) == []


def test_plan_change_is_conditional_and_audited_in_one_transaction(backend):
    users = UserRepository()
    sign_in(users, "usr_a", 7, "octo")
    users.change_plan("usr_a", from_plan="free", to_plan="team", actor="operator:alice", reason="trial", now=NOW)
    assert users.get("usr_a").plan == "team"
    [audit] = audit_items("usr_a")
    assert (audit.action, audit.actor, audit.subject, audit.reason) == ("plan.set", "operator:alice", "usr_a", "trial")
    assert audit.detail.as_dict() == {"from": "free", "to": "team"}

    with pytest.raises(Conflict) as err:  # read "free" earlier, but it is "team" now: no lost update
        users.change_plan("usr_a", from_plan="free", to_plan="pro", actor="operator:bob", reason=None, now=NOW + 1)
    assert err.value.code == "PLAN_CHANGED"
    assert users.get("usr_a").plan == "team" and len(audit_items("usr_a")) == 1  # nothing half-written

    with pytest.raises(Conflict):  # a deleted account is never re-created by a plan change
        users.change_plan("usr_gone", from_plan="free", to_plan="pro", actor="operator:bob", reason=None, now=NOW)
    assert users.get("usr_gone") is None and audit_items("usr_gone") == []


def test_concurrent_operators_change_the_plan_once(backend):
    users = UserRepository()
    sign_in(users, "usr_a", 7, "octo")

    def attempt(plan):
        try:
            return PlanAdmin(users=UserRepository(), clock=lambda: NOW).set_plan("octo", plan, actor="operator:x")
        except Conflict:
            return None

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(attempt, ["pro", "team", "enterprise"] * 2))
    changes = [a.detail.as_dict() for a in audit_items("usr_a")]
    assert len(changes) == sum(1 for r in results if r is not None and r.changed) >= 1  # one audit per change
    # Each change starts from the plan the previous one left: only one of them can start from "free".
    assert sum(1 for c in changes if c["from"] == "free") == 1
    assert all(c["from"] == "free" or c["from"] in {other["to"] for other in changes} for c in changes)
    assert users.get("usr_a").plan in {c["to"] for c in changes}
