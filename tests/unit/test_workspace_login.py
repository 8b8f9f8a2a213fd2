"""Provider logins on the user's machine (workspace_login) with fakes: choosing the machine, the
provider's prompt relayed to the dashboard, the pasted code relayed sealed to the machine's key, the
machine's reports (idempotent) recording a connection that holds no secret, cancel and expiry."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from relay_cloud.adapters.dynamo.connections import connection_item
from relay_cloud.adapters.dynamo.logins import EXPIRED, PENDING_STAGES
from relay_cloud.domain.auth import Principal
from relay_cloud.domain.commands import new_command
from relay_cloud.domain.daemons import Daemon
from relay_cloud.domain.errors import Conflict, NotFound, RateLimited, ValidationFailed
from relay_cloud.domain.providers import Registry, built_in_providers
from relay_cloud.domain.sealing import SealedBoxError, login_code_aad, open_sealed
from relay_cloud.services.machine_logins import MachineLoginService
from relay_cloud.services.providers import ProviderService
from tests.fakes import Clock, FakeAudit, FakeVault

ME = Principal("usr_me", "sid", "csrf")
OTHER = Principal("usr_other", "sid2", "csrf2")
LAPTOP, DESKTOP, THEIRS = "dmn_" + "a" * 32, "dmn_" + "b" * 32, "dmn_" + "c" * 32
CODE = "pasted-code-4f1c9e#only-the-machine-may-read-this"
PROMPT = {"stage": "awaiting_user", "url": "https://claude.ai/oauth/authorize?code=true&state=xyz",
          "needs_code": True}


# -- fakes with the real repositories' conditions ---------------------------------------------------

class Upstream:
    def validate_api_key(self, spec, key):
        assert key == "sk-ant-good"


class Logins:
    def __init__(self):
        self.items = {}

    def create(self, login, *, now):
        assert (login.user_id, login.login_id) not in self.items
        self.items[(login.user_id, login.login_id)] = login

    def get(self, user_id, login_id):
        return self.items.get((user_id, login_id))

    def set_command(self, user_id, login_id, command_id, *, now):
        if (user_id, login_id) in self.items:
            self.items[(user_id, login_id)] = replace(self.items[(user_id, login_id)], command_id=command_id)

    def transition(self, user_id, login_id, *, now, to, expected=PENDING_STAGES, prompt=None, error=None):
        login = self.items.get((user_id, login_id))
        if login is None or login.status not in expected or now >= login.login_expires_at:
            return False
        changes = {"status": to}
        if prompt is not None:
            changes["prompt"] = prompt
        if error is not None:
            changes["error"] = error
        self.items[(user_id, login_id)] = replace(login, **changes)
        return True

    def expire(self, user_id, login_id, *, now):
        login = self.items.get((user_id, login_id))
        if login is None or not login.pending or now < login.login_expires_at:
            return False
        self.items[(user_id, login_id)] = replace(login, status=EXPIRED)
        return True


class Connections:
    def __init__(self, logins):
        self.items, self.logins = {}, logins

    def get(self, user_id, provider):
        return self.items.get((user_id, provider))

    def all(self, user_id):
        return {p: item for (u, p), item in self.items.items() if u == user_id}

    def save(self, connection, *, now, new_data_key, complete_flow=None, complete_login=None):
        if complete_login is not None and not self.logins.transition(connection.user_id, complete_login, now=now,
                                                                     to="connected"):
            raise Conflict("race", code="CONNECTION_RACE")
        self.items[(connection.user_id, connection.provider)] = connection_item(connection, now=now, generation=1)

    def delete(self, user_id, provider):
        return self.items.pop((user_id, provider), None) is not None


class Machines:
    def __init__(self):
        self.items = {}

    def get(self, daemon_id):
        return self.items.get(daemon_id)

    def owned_by(self, user_id):
        return [d for d in self.items.values() if d.user_id == user_id]


class Commands:
    """CommandService.enqueue: only a linked, keyed, unrevoked daemon of that user; at most ``limit``."""

    def __init__(self, machines, clock):
        self.machines, self.clock, self.queues, self.limit = machines, clock, {}, 32

    def enqueue(self, user_id, daemon_id, type, args, ttl_seconds=600):
        daemon = self.machines.get(daemon_id)
        if daemon is None or daemon.user_id != user_id or not daemon.active:
            raise NotFound("No such machine", code="DAEMON_NOT_FOUND")
        queue = self.queues.setdefault(daemon_id, [])
        if len(queue) >= self.limit:
            raise RateLimited("full", code="COMMAND_QUEUE_FULL")
        command = new_command(type, args, now_ms=int(self.clock() * 1000), ttl_seconds=ttl_seconds)
        queue.append(command)
        return command

    def of(self, daemon_id, type=None):
        return [c for c in self.queues.get(daemon_id, []) if type is None or c["type"] == type]


def machine(daemon_id, user_id="usr_me", *, public_key=None, linked_at=1, key_hash="h", revoked_at=None):
    public_key = public_key or base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    return Daemon(daemon_id=daemon_id, user_id=user_id, name=daemon_id[-4:], machine_id="m", public_key=public_key,
                  key_hash=key_hash, allowed_providers=(), linked_at=linked_at, revoked_at=revoked_at)


@pytest.fixture
def laptop_key():
    return X25519PrivateKey.generate()


@pytest.fixture
def svc(laptop_key):
    clock, logins, machines = Clock(), Logins(), Machines()
    public = laptop_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    machines.items = {
        LAPTOP: machine(LAPTOP, public_key=base64.urlsafe_b64encode(public).rstrip(b"=").decode()),
        "dmn_" + "d" * 32: machine("dmn_" + "d" * 32, revoked_at=5),  # unlinked: not a candidate
        "dmn_" + "e" * 32: machine("dmn_" + "e" * 32, key_hash=None),  # approved, key never exchanged
        THEIRS: machine(THEIRS, "usr_other"),
    }
    registry = Registry(built_in_providers(anthropic_url="https://a.test", openai_url="https://o.test",
                                           google_url="https://g.test", github_oauth_url="https://github.test",
                                           github_client_id="cid", github_client_secret="secret"))
    connections, audit = Connections(logins), FakeAudit()
    machine_logins = MachineLoginService(logins=logins, machines=machines, commands=Commands(machines, clock),
                                         connections=connections, audit=audit, clock=clock)
    return ProviderService(registry=registry, connections=connections, flows=None, vault=FakeVault(),
                           upstream=Upstream(), workflow=None, audit=audit, clock=clock,
                           machine_logins=machine_logins)


def start(svc, **body):
    status, view = svc.connect(ME, "anthropic", {"method": "workspace_login", **body})
    assert status == 202
    return view


def report(svc, command, status, output=None, error=None, daemon_id=LAPTOP):
    svc.machine_logins.report("usr_me", daemon_id, command, status, output, error)


def login_command(svc, daemon_id=LAPTOP):
    (command,) = svc.machine_logins.commands.of(daemon_id, "provider_login")
    return command


# -- starting -----------------------------------------------------------------------------------------

def test_connect_picks_the_only_linked_machine_and_queues_the_login(svc):
    view = start(svc)
    assert view["status"] == "pending" and view["stage"] == "waiting_for_machine" and view["prompt"] is None
    assert view["method"] == "workspace_login" and view["provider"] == "anthropic" and view["daemon_id"] == LAPTOP
    assert view["flow_id"] == view["login_id"] and view["login_id"].startswith("login_") and len(view["login_id"]) == 38
    assert view["expires_at"] == int(svc.clock()) + 900
    command = login_command(svc)
    assert command["args"] == {"login_id": view["login_id"], "provider": "anthropic"}
    assert command["expires_at"] - command["created_at"] == 900
    assert svc.machine_logins.logins.get("usr_me", view["login_id"]).command_id == command["command_id"]
    assert svc.flow_status(ME, view["login_id"]) == view


def test_no_linked_machine_is_409(svc):
    machines = svc.machine_logins.machines
    machines.items = {k: d for k, d in machines.items.items() if k != LAPTOP}  # revoked + keyless remain
    with pytest.raises(Conflict) as err:
        start(svc)
    assert err.value.code == "NO_MACHINE_LINKED" and svc.machine_logins.logins.items == {}


def test_several_machines_need_a_daemon_id(svc):
    svc.machine_logins.machines.items[DESKTOP] = machine(DESKTOP, linked_at=2)
    with pytest.raises(ValidationFailed) as err:
        start(svc)
    assert err.value.code == "DAEMON_REQUIRED" and err.value.details["field"] == "daemon_id"
    assert start(svc, daemon_id=DESKTOP)["daemon_id"] == DESKTOP
    assert svc.machine_logins.commands.of(DESKTOP, "provider_login") and not svc.machine_logins.commands.of(LAPTOP)


@pytest.mark.parametrize("daemon_id", [THEIRS, "dmn_" + "d" * 32, "dmn_" + "e" * 32, "dmn_" + "f" * 32, "nope"])
def test_another_users_unknown_or_unlinked_machine_is_404(svc, daemon_id):
    with pytest.raises(NotFound) as err:
        start(svc, daemon_id=daemon_id)
    assert err.value.code == "DAEMON_NOT_FOUND"
    assert svc.machine_logins.logins.items == {} and svc.machine_logins.commands.queues == {}


def test_a_bad_daemon_id_or_a_provider_without_the_method_is_400(svc):
    with pytest.raises(ValidationFailed) as err:
        start(svc, daemon_id=42)
    assert err.value.details["field"] == "daemon_id"
    with pytest.raises(ValidationFailed) as err:
        svc.connect(ME, "github", {"method": "workspace_login"})
    assert err.value.code == "METHOD_NOT_ALLOWED"


def test_a_full_command_queue_is_429_and_the_login_records_it(svc):
    svc.machine_logins.commands.limit = 0
    with pytest.raises(RateLimited) as err:
        start(svc)
    assert err.value.code == "COMMAND_QUEUE_FULL"
    (login,) = svc.machine_logins.logins.items.values()
    assert svc.flow_status(ME, login.login_id)["status"] == "error"
    assert svc.flow_status(ME, login.login_id)["error"]["code"] == "COMMAND_QUEUE_FULL"


# -- the machine's reports --------------------------------------------------------------------------

def test_the_prompt_is_relayed_and_repeats_change_nothing(svc):
    login_id = start(svc)["login_id"]
    command = login_command(svc)
    report(svc, command, "running", {**PROMPT, "user_code": "ABCD-1234"})
    report(svc, command, "running", {**PROMPT, "user_code": "ABCD-1234"})  # a duplicate report
    view = svc.flow_status(ME, login_id)
    assert view["status"] == "pending" and view["stage"] == "awaiting_user"
    assert view["prompt"] == {"url": PROMPT["url"], "user_code": "ABCD-1234", "needs_code": True}


@pytest.mark.parametrize("bad", [
    {"url": "javascript:alert(1)"}, {"url": "http://claude.ai/x"}, {"url": "https://"}, {"url": "https://a b.c/"},
    {"url": "https://x.test/" + "a" * 2048}, {"user_code": "<b>"}, {"needs_code": "yes"},
])
def test_a_prompt_the_dashboard_cannot_show_fails_the_login(svc, bad):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", {**PROMPT, **bad})
    view = svc.flow_status(ME, login_id)
    assert view["status"] == "error" and view["error"]["code"] == "LOGIN_PROMPT_INVALID" and view["prompt"] is None
    assert svc.machine_logins.commands.of(LAPTOP, "provider_login_cancel")[0]["args"] == {"login_id": login_id}


def test_success_records_a_connection_without_any_secret(svc):
    login_id = start(svc)["login_id"]
    command = login_command(svc)
    report(svc, command, "running", PROMPT)
    report(svc, command, "succeeded", {"account": "me@example.com"})
    report(svc, command, "succeeded", {"account": "me@example.com"})  # duplicates are idempotent
    view = svc.flow_status(ME, login_id)
    assert view["status"] == "connected" and view["stage"] is None and view["prompt"] is None
    item = svc.connections.get("usr_me", "anthropic")
    assert item.ciphertext is None and item.key_version is None and item.refresh_due_at is None
    assert item.method == "workspace_login" and item.status == "valid" and item.account == "me@example.com"
    assert item.metadata.as_dict() == {"daemon_id": LAPTOP} and item.gsi2pk is None
    assert svc.vault.keys == set()  # _seal was never involved: the user has no data key at all
    entry = {p["id"]: p for p in svc.list(ME)["providers"]}["anthropic"]
    assert entry["health"] == "valid" and entry["connection"]["method"] == "workspace_login"
    assert entry["connection"]["account"] == "me@example.com" and entry["connection"]["daemon_id"] == LAPTOP
    connects = [e for e in svc.audit.events if e["action"] == "provider.connect"]
    assert len(connects) == 1 and connects[0]["reason"] == "workspace_login"
    assert connects[0]["detail"] == {"provider": "anthropic", "daemon_id": LAPTOP, "login_id": login_id}
    # Disconnecting just deletes it: there is nothing to decrypt or revoke.
    svc.disconnect(ME, "anthropic")
    assert svc.connections.items == {}


def test_a_login_replaces_an_api_key_connection(svc):
    svc.connect(ME, "anthropic", {"method": "api_key", "api_key": "sk-ant-good"})
    start(svc)
    report(svc, login_command(svc), "succeeded", {"account": "x" * 129})  # an odd account is dropped
    item = svc.connections.get("usr_me", "anthropic")
    assert item.method == "workspace_login" and item.ciphertext is None and item.account is None


@pytest.mark.parametrize("error,code", [({"code": "CLI_NOT_INSTALLED", "message": "claude is not on PATH"},
                                         "CLI_NOT_INSTALLED"), (None, "LOGIN_FAILED")])
def test_failure_sets_the_error(svc, error, code):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "failed", error=error)
    view = svc.flow_status(ME, login_id)
    assert view["status"] == "error" and view["error"]["code"] == code
    report(svc, login_command(svc), "succeeded")  # too late: nothing stored
    assert svc.connections.items == {}


def test_reports_from_another_machine_or_for_another_users_login_change_nothing(svc):
    svc.machine_logins.machines.items[DESKTOP] = machine(DESKTOP, linked_at=2)
    login_id = start(svc, daemon_id=LAPTOP)["login_id"]
    report(svc, login_command(svc), "succeeded", daemon_id=DESKTOP)
    svc.machine_logins.report("usr_other", LAPTOP, login_command(svc), "succeeded", None, None)
    report(svc, {"type": "provider_login", "args": {}}, "succeeded")
    assert svc.flow_status(ME, login_id)["status"] == "pending" and svc.connections.items == {}


# -- the code the user pastes --------------------------------------------------------------------------

def test_the_code_is_relayed_sealed_to_the_machine(svc, laptop_key):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", PROMPT)
    view = svc.machine_logins.relay_code(ME, login_id, {"code": CODE})
    assert view["status"] == "pending" and view["stage"] == "verifying" and CODE not in json.dumps(view)
    (command,) = svc.machine_logins.commands.of(LAPTOP, "provider_login_code")
    assert command["args"]["login_id"] == login_id and CODE not in json.dumps(command)
    assert CODE not in repr(svc.machine_logins.logins.items) and CODE not in repr(svc.audit.events)
    private = laptop_key.private_bytes_raw()
    assert open_sealed(private, command["args"]["sealed"], login_code_aad(LAPTOP, login_id)) == CODE.encode()
    with pytest.raises(SealedBoxError):  # bound to this daemon and login
        open_sealed(private, command["args"]["sealed"], login_code_aad(LAPTOP, "login_" + "0" * 32))
    assert command["expires_at"] <= svc.machine_logins.logins.get("usr_me", login_id).login_expires_at
    # One code per prompt: a second submission is refused until the machine asks again.
    with pytest.raises(Conflict) as err:
        svc.machine_logins.relay_code(ME, login_id, {"code": CODE})
    assert err.value.code == "LOGIN_NOT_AWAITING_CODE"
    report(svc, login_command(svc), "succeeded")
    assert svc.flow_status(ME, login_id)["status"] == "connected"


def test_a_code_is_refused_unless_the_login_awaits_one(svc):
    login_id = start(svc)["login_id"]
    with pytest.raises(Conflict) as err:  # the machine has not prompted yet
        svc.machine_logins.relay_code(ME, login_id, {"code": CODE})
    assert err.value.code == "LOGIN_NOT_AWAITING_CODE"
    report(svc, login_command(svc), "running", {**PROMPT, "needs_code": False, "user_code": "WXYZ-9876"})
    with pytest.raises(Conflict) as err:  # a device-code login (Codex): the CLI polls, no code to paste
        svc.machine_logins.relay_code(ME, login_id, {"code": CODE})
    assert err.value.code == "LOGIN_NOT_AWAITING_CODE"
    assert svc.machine_logins.commands.of(LAPTOP, "provider_login_code") == []


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": 7}, {"code": "x" * 2049}, {"code": "a\nb"}])
def test_a_bad_code_is_400(svc, body):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", PROMPT)
    with pytest.raises(ValidationFailed) as err:
        svc.machine_logins.relay_code(ME, login_id, body)
    assert err.value.details["field"] == "code"
    assert svc.flow_status(ME, login_id)["stage"] == "awaiting_user"


def test_a_code_that_cannot_be_queued_leaves_the_login_awaiting_it(svc):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", PROMPT)
    svc.machine_logins.commands.limit = 1
    with pytest.raises(RateLimited):
        svc.machine_logins.relay_code(ME, login_id, {"code": CODE})
    assert svc.flow_status(ME, login_id)["stage"] == "awaiting_user"
    svc.machine_logins.commands.limit = 32
    assert svc.machine_logins.relay_code(ME, login_id, {"code": CODE})["stage"] == "verifying"


def test_a_machine_unlinked_before_the_code_fails_the_login(svc):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", PROMPT)
    svc.machine_logins.machines.items[LAPTOP] = replace(svc.machine_logins.machines.items[LAPTOP], revoked_at=10)
    with pytest.raises(Conflict) as err:
        svc.machine_logins.relay_code(ME, login_id, {"code": CODE})
    assert err.value.code == "LOGIN_NOT_AWAITING_CODE"
    assert svc.flow_status(ME, login_id)["error"]["code"] == "MACHINE_UNLINKED"


def test_a_failed_code_delivery_fails_the_login_and_stops_the_cli(svc):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", PROMPT)
    svc.machine_logins.relay_code(ME, login_id, {"code": CODE})
    (code_command,) = svc.machine_logins.commands.of(LAPTOP, "provider_login_code")
    report(svc, code_command, "failed", error={"code": "LOGIN_FAILED", "message": "the CLI rejected the code"})
    view = svc.flow_status(ME, login_id)
    assert view["status"] == "error" and view["error"] == {"code": "LOGIN_FAILED", "message": "the CLI rejected the code"}
    assert len(svc.machine_logins.commands.of(LAPTOP, "provider_login_cancel")) == 1


# -- cancel, expiry, tenancy ---------------------------------------------------------------------------

def test_cancel_tells_the_machine_and_later_reports_change_nothing(svc):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", PROMPT)
    assert svc.cancel_flow(ME, login_id) is None
    assert svc.flow_status(ME, login_id)["status"] == "cancelled"
    cancels = svc.machine_logins.commands.of(LAPTOP, "provider_login_cancel")
    assert [c["args"] for c in cancels] == [{"login_id": login_id}]
    report(svc, login_command(svc), "succeeded")
    svc.cancel_flow(ME, login_id)  # cancelling again is a no-op
    assert svc.connections.items == {} and len(svc.machine_logins.commands.of(LAPTOP, "provider_login_cancel")) == 1
    with pytest.raises(Conflict):
        svc.machine_logins.relay_code(ME, login_id, {"code": CODE})


def test_a_login_expires_after_15_minutes(svc):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", PROMPT)
    svc.clock.advance(899)
    assert svc.flow_status(ME, login_id)["status"] == "pending"
    svc.clock.advance(1)
    view = svc.flow_status(ME, login_id)
    assert view["status"] == "expired" and view["stage"] is None and view["prompt"] is None
    assert svc.machine_logins.logins.get("usr_me", login_id).status == "expired"  # recorded, and the CLI told to stop
    assert svc.flow_status(ME, login_id)["status"] == "expired"
    assert len(svc.machine_logins.commands.of(LAPTOP, "provider_login_cancel")) == 1
    report(svc, login_command(svc), "succeeded")
    assert svc.connections.items == {}
    with pytest.raises(Conflict) as err:
        svc.machine_logins.relay_code(ME, login_id, {"code": CODE})
    assert err.value.code == "LOGIN_NOT_AWAITING_CODE"


def test_a_report_after_the_deadline_but_before_any_read_stores_nothing(svc):
    login_id = start(svc)["login_id"]
    svc.clock.advance(900)
    report(svc, login_command(svc), "succeeded")
    assert svc.connections.items == {} and svc.flow_status(ME, login_id)["status"] == "expired"


def test_another_users_login_is_404(svc):
    login_id = start(svc)["login_id"]
    report(svc, login_command(svc), "running", PROMPT)
    for call in (lambda: svc.flow_status(OTHER, login_id), lambda: svc.cancel_flow(OTHER, login_id),
                 lambda: svc.machine_logins.relay_code(OTHER, login_id, {"code": CODE}),
                 lambda: svc.flow_status(ME, "login_" + "0" * 32), lambda: svc.flow_status(ME, "login_nope")):
        with pytest.raises(NotFound) as err:
            call()
        assert err.value.code == "LOGIN_NOT_FOUND"
    assert svc.flow_status(ME, login_id)["stage"] == "awaiting_user"
    assert svc.machine_logins.commands.of(LAPTOP, "provider_login_code") == []
