"""The data tier against moto and against AWS's own engine (DynamoDB Local): every access pattern of
sign-in, and the conditional writes that keep it race-free."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.accounts import AuditLog, LoginRepository, SessionRepository, UserRepository
from relay_cloud.adapters.dynamo.models import DataKeyItem, Item
from relay_cloud.adapters.dynamo.table import TABLE
from relay_cloud.domain.auth import PendingLogin, Session, User
from relay_cloud.domain.errors import Conflict
from relay_cloud.services.auth import StoredCredential

NOW = 1_800_000_000


def _user(user_id="usr_a", github_id=7, login="octo"):
    return User(user_id, github_id, login, "Octo", "octo@example.com", None, "free", NOW)


def _credential(user_id):
    return StoredCredential(user_id, "github", "sign-in", "oauth_access_token", b"\x00ciphertext", 1, {"login": "octo"})


def _data_key(user_id):
    return DataKeyItem(keys.user_pk(user_id), keys.data_key_sk(1), user_id=user_id, version=1,
                       wrapped_key=b"wrapped", kms_key_id="alias/k", created_at=NOW)


def test_table_definition_is_what_was_created(backend):
    client, name = backend
    described = client.describe_table(TableName=name)["Table"]
    assert {k["AttributeName"] for k in described["KeySchema"]} == {TABLE.partition_key, TABLE.sort_key}
    assert {i["IndexName"] for i in described["GlobalSecondaryIndexes"]} == {i.name for i in TABLE.indexes}
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl.get("AttributeName") == TABLE.ttl_attribute


def test_first_sign_in_writes_everything_in_one_transaction(backend):
    users = UserRepository()
    users.save_sign_in(_user(), is_new=True, credential=_credential("usr_a"), new_data_key=_data_key("usr_a"), now=NOW)
    assert users.get("usr_a").github_login == "octo"
    assert users.user_id_for_github(7) == "usr_a"
    sks = sorted(item.sk for item in Item.query(keys.user_pk("usr_a")))
    assert sks == ["CRED#github#sign-in", "DATAKEY#000001", "PROFILE"]


def test_concurrent_first_sign_in_of_the_same_github_account_leaves_nothing_half_written(backend):
    users = UserRepository()
    users.save_sign_in(_user(), is_new=True, credential=_credential("usr_a"), new_data_key=_data_key("usr_a"), now=NOW)
    with pytest.raises(Conflict) as err:
        users.save_sign_in(_user("usr_b"), is_new=True, credential=_credential("usr_b"),
                           new_data_key=_data_key("usr_b"), now=NOW)
    assert err.value.code == "SIGN_IN_RACE"
    assert users.get("usr_b") is None
    assert list(Item.query(keys.user_pk("usr_b"))) == []


def test_returning_user_is_updated_not_duplicated(backend):
    users = UserRepository()
    users.save_sign_in(_user(), is_new=True, credential=_credential("usr_a"), new_data_key=_data_key("usr_a"), now=NOW)
    renamed = User("usr_a", 7, "octo-renamed", None, None, None, "free", NOW)
    users.save_sign_in(renamed, is_new=False, credential=_credential("usr_a"), new_data_key=None, now=NOW + 5)
    assert users.get("usr_a").github_login == "octo-renamed"


def test_pending_login_is_consumed_exactly_once_under_concurrency(backend):
    logins = LoginRepository()
    logins.put(PendingLogin("state-1", "verifier", "binding", "/dashboard", NOW + 600), NOW)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: logins.take("state-1", NOW), range(16)))
    assert sum(r is not None for r in results) == 1
    assert logins.take("state-1", NOW) is None


def test_expired_pending_login_is_not_returned(backend):
    logins = LoginRepository()
    logins.put(PendingLogin("state-2", "v", "b", "/dashboard", NOW + 600), NOW)
    assert logins.take("state-2", NOW + 601) is None


def test_state_is_stored_only_as_a_digest(backend):
    client, name = backend
    LoginRepository().put(PendingLogin("plain-state-value", "v", "b", "/dashboard", NOW + 600), NOW)
    dump = str(client.scan(TableName=name)["Items"])
    assert "plain-state-value" not in dump


def test_sessions_create_get_slide_delete_and_expire(backend):
    client, name = backend
    sessions = SessionRepository()
    session = Session("sid-secret-value", "usr_a", "csrf", NOW, NOW + 100)
    sessions.create(session)
    assert sessions.get("sid-secret-value", NOW).user_id == "usr_a"
    assert sessions.get("sid-secret-value", NOW + 100) is None  # expired though not yet deleted by TTL
    sessions.slide(session, NOW + 1000)
    assert sessions.get("sid-secret-value", NOW + 500).expires_at == NOW + 1000
    assert "sid-secret-value" not in str(client.scan(TableName=name)["Items"])
    sessions.delete("sid-secret-value")
    assert sessions.get("sid-secret-value", NOW) is None
    sessions.slide(session, NOW + 2000)  # sliding a deleted session never resurrects it
    assert sessions.get("sid-secret-value", NOW) is None


def test_account_items_cover_partition_identity_and_sessions(backend):
    users, sessions = UserRepository(), SessionRepository()
    users.save_sign_in(_user(), is_new=True, credential=_credential("usr_a"), new_data_key=_data_key("usr_a"), now=NOW)
    sessions.create(Session("s1", "usr_a", "c", NOW, NOW + 100))
    sessions.create(Session("s2", "usr_a", "c", NOW + 1, NOW + 100))
    sessions.create(Session("other", "usr_z", "c", NOW, NOW + 100))
    AuditLog().record(subject_user_id="usr_a", action="auth.sign_in", actor="usr_a")
    deleted = users.delete_items(list(users.account_items(users.get("usr_a"))))
    assert deleted == 8  # profile, credential, data key, audit, identity and login guards, two sessions
    assert users.get("usr_a") is None and users.user_id_for_github(7) is None
    assert sessions.get("s1", NOW) is None and sessions.get("other", NOW) is not None


def test_sign_in_sealed_under_a_rotated_away_key_is_refused(backend):
    users = UserRepository()
    users.save_sign_in(_user(), is_new=True, credential=_credential("usr_a"), new_data_key=_data_key("usr_a"), now=NOW)
    stale = StoredCredential("usr_a", "github", "sign-in", "oauth_access_token", b"\x00new", 2, {})
    with pytest.raises(Conflict):
        users.save_sign_in(_user(), is_new=False, credential=stale, new_data_key=None, now=NOW + 1)


def test_a_retired_data_key_accepts_no_new_ciphertext(backend):
    """Rotation retires the old key before its last pass: a writer that sealed under it must seal again."""
    from relay_cloud.adapters.dynamo.vault_store import DynamoVaultStore

    users = UserRepository()
    users.save_sign_in(_user(), is_new=True, credential=_credential("usr_a"), new_data_key=_data_key("usr_a"), now=NOW)
    DynamoVaultStore().retire_data_keys("usr_a", [1])
    with pytest.raises(Conflict):
        users.save_sign_in(_user(), is_new=False, credential=_credential("usr_a"), new_data_key=None, now=NOW + 1)
    assert DynamoVaultStore().data_key("usr_a", 1).retired_at is not None  # still there to open old ciphertext


def test_a_connection_replaced_meanwhile_is_never_overwritten(backend):
    from relay_cloud.adapters.dynamo.connections import ConnectionRepository, NewConnection

    users, connections = UserRepository(), ConnectionRepository()
    users.save_sign_in(_user(), is_new=True, credential=_credential("usr_a"), new_data_key=_data_key("usr_a"), now=NOW)
    new = NewConnection("usr_a", "anthropic", "api_key", "api_key", b"\x00ct", 1, None, NOW, None, None)
    connections.save(new, now=NOW, new_data_key=None)
    stale_read = connections.get("usr_a", "anthropic")
    connections.save(new, now=NOW + 1, new_data_key=None)  # someone else replaced it meanwhile
    original_get = connections.get
    connections.get = lambda *_: stale_read  # a writer that read before that replacement
    with pytest.raises(Conflict):
        connections.save(new, now=NOW + 2, new_data_key=None)
    connections.get = original_get
    assert connections.get("usr_a", "anthropic").generation == 2
