"""Logins on the user's machine, data tier on moto and on DynamoDB Local: only a pending login changes,
each stage change is conditional on the stage it expects, expiry is enforced by the writes, and a
workspace_login connection is stored (and read by every reader) without any ciphertext."""

from __future__ import annotations

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.connections import ConnectionRepository, NewConnection
from relay_cloud.adapters.dynamo.logins import (
    AWAITING_USER,
    CANCELLED,
    CONNECTED,
    ERROR,
    VERIFYING,
    WAITING_FOR_MACHINE,
    WorkspaceLogin,
    WorkspaceLoginRepository,
)
from relay_cloud.adapters.dynamo.models import DataKeyItem, WorkspaceLoginItem
from relay_cloud.adapters.dynamo.refresh_store import DynamoRefreshStore
from relay_cloud.adapters.dynamo.vault_store import DynamoVaultStore
from relay_cloud.adapters.vault import Vault
from relay_cloud.domain.errors import Conflict
from relay_cloud.services.refresh import NOT_DUE, RefreshService

NOW = 1_800_000_000
USER, DAEMON = "usr_a", "dmn_" + "a" * 32
PROMPT = {"url": "https://claude.ai/oauth/authorize?x=1", "needs_code": True}


def new_login(login_id="login_" + "1" * 32, user_id=USER) -> WorkspaceLogin:
    login = WorkspaceLogin(login_id=login_id, user_id=user_id, provider="anthropic", daemon_id=DAEMON,
                           status=WAITING_FOR_MACHINE, login_expires_at=NOW + 900, created_at=NOW)
    WorkspaceLoginRepository().create(login, now=NOW)
    return login


def test_stages_move_only_from_the_stage_they_expect(backend):
    logins, login = WorkspaceLoginRepository(), new_login()
    stored = logins.get(USER, login.login_id)
    assert stored == login and logins.get("usr_b", login.login_id) is None
    logins.set_command(USER, login.login_id, "cmd_1", now=NOW)
    assert not logins.transition(USER, login.login_id, now=NOW + 1, to=VERIFYING, expected=(AWAITING_USER,))
    assert logins.transition(USER, login.login_id, now=NOW + 1, to=AWAITING_USER, prompt=PROMPT,
                             expected=(WAITING_FOR_MACHINE, AWAITING_USER))
    assert logins.transition(USER, login.login_id, now=NOW + 2, to=VERIFYING, expected=(AWAITING_USER,))
    assert not logins.transition(USER, login.login_id, now=NOW + 2, to=VERIFYING, expected=(AWAITING_USER,))
    stored = logins.get(USER, login.login_id)
    assert stored.status == VERIFYING and stored.prompt == PROMPT and stored.command_id == "cmd_1"
    item = WorkspaceLoginItem.get(keys.user_pk(USER), keys.workspace_login_sk(login.login_id))
    assert item.type == "WORKSPACE_LOGIN" and item.expires_at == NOW + 900 + 24 * 3600


def test_only_a_pending_login_changes(backend):
    logins, login = WorkspaceLoginRepository(), new_login()
    error = {"code": "CLI_NOT_INSTALLED", "message": "claude is not on PATH"}
    assert logins.transition(USER, login.login_id, now=NOW + 1, to=ERROR, error=error)
    for to in (CANCELLED, AWAITING_USER, CONNECTED):
        assert not logins.transition(USER, login.login_id, now=NOW + 2, to=to)
    assert not logins.expire(USER, login.login_id, now=NOW + 900)
    stored = logins.get(USER, login.login_id)
    assert stored.status == ERROR and stored.error == error and stored.prompt is None
    assert not logins.transition(USER, "login_" + "9" * 32, now=NOW, to=CANCELLED)  # no such login


def test_expiry_is_enforced_by_the_writes(backend):
    logins, login = WorkspaceLoginRepository(), new_login()
    assert not logins.expire(USER, login.login_id, now=NOW + 899)
    assert not logins.transition(USER, login.login_id, now=NOW + 900, to=CANCELLED)
    assert logins.expire(USER, login.login_id, now=NOW + 900)
    assert not logins.expire(USER, login.login_id, now=NOW + 901)
    assert logins.get(USER, login.login_id).status == "expired"


def data_key() -> DataKeyItem:
    return DataKeyItem(keys.user_pk(USER), keys.data_key_sk(1), user_id=USER, version=1, wrapped_key=b"wrapped",
                       kms_key_id="k", created_at=NOW)


def test_a_login_records_a_connection_without_ciphertext(backend):
    connections, logins, login = ConnectionRepository(), WorkspaceLoginRepository(), new_login()
    # An API key connection (sealed, with the user's data key) is replaced.
    connections.save(NewConnection(USER, "anthropic", "api_key", "api_key", b"rv1-sealed", 1, account=None,
                                   issued_at=NOW, token_expires_at=None, refresh_due_at=None),
                     now=NOW, new_data_key=data_key())
    on_machine = NewConnection.on_machine(USER, "anthropic", daemon_id=DAEMON, account="me@example.com", now=NOW + 5)
    connections.save(on_machine, now=NOW + 5, new_data_key=None, complete_login=login.login_id)
    item = connections.get(USER, "anthropic")
    assert item.ciphertext is None and item.key_version is None and item.generation == 2
    assert item.method == "workspace_login" and item.status == "valid" and item.account == "me@example.com"
    assert item.metadata.as_dict() == {"daemon_id": DAEMON} and item.gsi2pk is None
    assert logins.get(USER, login.login_id).status == CONNECTED
    # A repeat (a duplicate report) finds the login connected: the whole write fails, nothing changes.
    with pytest.raises(Conflict):
        connections.save(on_machine, now=NOW + 6, new_data_key=None, complete_login=login.login_id)
    assert connections.get(USER, "anthropic").generation == 2


def test_a_finished_or_expired_login_records_nothing(backend):
    connections, logins = ConnectionRepository(), WorkspaceLoginRepository()
    cancelled, late = new_login(), new_login("login_" + "2" * 32)
    logins.transition(USER, cancelled.login_id, now=NOW + 1, to=CANCELLED)
    for login, now in ((cancelled, NOW + 2), (late, NOW + 900)):
        with pytest.raises(Conflict):
            connections.save(NewConnection.on_machine(USER, "anthropic", daemon_id=DAEMON, account=None, now=now),
                             now=now, new_data_key=None, complete_login=login.login_id)
    assert connections.get(USER, "anthropic") is None
    assert logins.get(USER, late.login_id).status == WAITING_FOR_MACHINE


def test_every_reader_tolerates_a_connection_without_ciphertext(backend):
    connections = ConnectionRepository()
    new_login()
    connections.save(NewConnection.on_machine(USER, "anthropic", daemon_id=DAEMON, account=None, now=NOW),
                     now=NOW, new_data_key=None, complete_login="login_" + "1" * 32)
    store = DynamoRefreshStore()
    credential = store.get(USER, "anthropic")
    assert credential.ciphertext is None and credential.key_version is None and credential.refresh_due_at is None
    assert RefreshService(registry=None, store=store, vault=None, upstream=None,
                          clock=lambda: NOW + 10**6).refresh_one(USER, "anthropic") == NOT_DUE
    assert list(DynamoVaultStore().credentials(USER)) == []  # nothing for a rotation to rewrap
    vault = Vault(kms=None, kms_key_id="alias/unused", store=DynamoVaultStore())
    assert vault.rewrap(USER) == 0  # no data key, no sealed credential: nothing to do, no error
    assert set(connections.all(USER)) == {"anthropic"}
    assert connections.delete(USER, "anthropic") and connections.get(USER, "anthropic") is None


def test_a_whole_login_through_the_real_command_queue(backend):
    """Service level on the real repositories and CommandService (the routes are thin): the machine sees
    the login in its heartbeat, relays the prompt, receives the code sealed to its key, reports success."""
    import base64

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from relay_cloud.adapters.dynamo.accounts import AuditLog
    from relay_cloud.adapters.dynamo.daemons import DaemonRepository, LinkRepository
    from relay_cloud.domain.auth import Principal
    from relay_cloud.domain.daemons import PENDING, Daemon, DaemonPrincipal, LinkRequest
    from relay_cloud.domain.providers import Registry, built_in_providers
    from relay_cloud.domain.sealing import login_code_aad, open_sealed
    from relay_cloud.services.commands import CommandService
    from relay_cloud.services.machine_logins import MachineLoginService
    from relay_cloud.services.providers import ProviderService

    private = X25519PrivateKey.generate()
    public = base64.urlsafe_b64encode(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).rstrip(b"=")
    links, daemons = LinkRepository(), DaemonRepository()
    links.create(LinkRequest(device_hash="dh", user_code="BCDFGHJK", client_id="relay-cloud-cli", machine_id="m",
                             name="laptop", public_key=public.decode(), requesting_ip=None, status=PENDING,
                             user_id=None, allowed_providers=(), daemon_id=None, interval=5, last_polled_at=None,
                             created_at=NOW))
    links.approve("dh", Daemon(daemon_id=DAEMON, user_id=USER, name="laptop", machine_id="m",
                               public_key=public.decode(), key_hash=None, allowed_providers=(), linked_at=NOW),
                  now=NOW)
    assert links.exchange("dh", DAEMON, "key-hash", now=NOW)

    clock = [NOW + 10]
    registry = Registry(built_in_providers(anthropic_url="https://a.test", openai_url="https://o.test",
                                           google_url="https://g.test", github_oauth_url="https://github.test",
                                           github_client_id="cid", github_client_secret="secret"))
    machine_logins = MachineLoginService(logins=WorkspaceLoginRepository(), machines=daemons, commands=None,
                                         connections=ConnectionRepository(), audit=AuditLog(), clock=lambda: clock[0])
    providers = ProviderService(registry=registry, connections=ConnectionRepository(), flows=None, vault=None,
                                upstream=None, workflow=None, audit=AuditLog(), clock=lambda: clock[0],
                                machine_logins=machine_logins)
    machine_logins.commands = commands = CommandService(
        daemons=daemons, audit=AuditLog(), clock=lambda: clock[0],
        sinks=dict.fromkeys(("provider_login", "provider_login_code", "provider_login_cancel"),
                            machine_logins.report))
    me, machine = Principal(USER, "sid", "csrf"), DaemonPrincipal(DAEMON, USER, public.decode(), ())

    status, view = providers.connect(me, "anthropic", {"method": "workspace_login"})
    assert status == 202 and view["stage"] == "waiting_for_machine"
    (login_command,) = daemons.heartbeat(DAEMON, key_hash="key-hash", now=clock[0], agents=[], metrics={})
    assert login_command["type"] == "provider_login" and login_command["args"]["login_id"] == view["login_id"]

    commands.report(machine, login_command["command_id"], {"status": "running", "output": {
        "stage": "awaiting_user", "url": "https://claude.ai/oauth/authorize?x=1", "needs_code": True}})
    assert providers.flow_status(me, view["login_id"])["prompt"]["needs_code"] is True
    code = "the-code-the-user-pasted-0123456789"
    assert machine_logins.relay_code(me, view["login_id"], {"code": code})["stage"] == "verifying"
    queued = daemons.heartbeat(DAEMON, key_hash="key-hash", now=clock[0], agents=[], metrics={})
    (code_command,) = [c for c in queued if c["type"] == "provider_login_code"]
    aad = login_code_aad(DAEMON, view["login_id"])
    assert open_sealed(private.private_bytes_raw(), code_command["args"]["sealed"], aad) == code.encode()
    commands.report(machine, code_command["command_id"], {"status": "succeeded"})

    commands.report(machine, login_command["command_id"], {"status": "succeeded", "output": {"account": "me"}})
    again = commands.report(machine, login_command["command_id"], {"status": "succeeded", "output": {"account": "me"}})
    assert again["duplicate"] is True
    assert providers.flow_status(me, view["login_id"])["status"] == "connected"
    item = ConnectionRepository().get(USER, "anthropic")
    assert item.method == "workspace_login" and item.ciphertext is None and item.account == "me"
    table = backend[0].scan(TableName=backend[1])["Items"]
    assert code not in repr(table)  # the code exists only sealed
    assert sum(1 for i in table if i.get("action", {}).get("S") == "provider.connect") == 1
