"""The command queue's data tier on moto and on DynamoDB Local: enqueueing only to the owner's linked
machines (32 live at most, expired entries removed by the same write), heartbeats that return the live
commands in one request, final reports recorded exactly once (also when two race), and expiry."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.daemons import DaemonRepository, LinkRepository
from relay_cloud.adapters.dynamo.models import CommandResultItem, DaemonItem
from relay_cloud.domain.commands import MAX_QUEUED, RESULT_RETENTION_SECONDS
from relay_cloud.domain.daemons import PENDING, Daemon, DaemonPrincipal, LinkRequest
from relay_cloud.domain.errors import Gone, NotFound, RateLimited
from relay_cloud.services.commands import CommandService
from tests.fakes import Clock, FakeAudit

NOW = 1_800_000_000
MINE, OTHERS, REVOKED, LEGACY = ("dmn_" + c * 32 for c in "abcd")


def link(daemon_id: str, user_id: str, n: int) -> None:
    """A daemon through the real link flow: approved (the queue starts empty) and keyed."""
    links = LinkRepository()
    links.create(LinkRequest(device_hash=f"dh-{n}", user_code=f"BCDFGHJ{'KLMN'[n]}", client_id="relay-cloud-cli",
                             machine_id=f"m-{n}", name="laptop", public_key="A" * 43, requesting_ip=None,
                             status=PENDING, user_id=None, allowed_providers=(), daemon_id=None, interval=5,
                             last_polled_at=None, created_at=NOW))
    links.approve(f"dh-{n}", Daemon(daemon_id=daemon_id, user_id=user_id, name="laptop", machine_id=f"m-{n}",
                                    public_key="A" * 43, key_hash=None, allowed_providers=(), linked_at=NOW),
                  now=NOW)
    assert links.exchange(f"dh-{n}", daemon_id, f"hash-{n}", now=NOW)


@pytest.fixture
def daemons(backend):
    link(MINE, "usr_me", 0)
    link(OTHERS, "usr_other", 1)
    link(REVOKED, "usr_me", 2)
    DaemonRepository().revoke(REVOKED, user_id="usr_me", now=NOW)
    # Linked before the queue existed: no ``commands`` attribute at all (what the heartbeat bench writes too).
    DaemonItem(keys.daemon_pk(LEGACY), keys.DAEMON_SK, daemon_id=LEGACY, user_id="usr_me", name="old",
               machine_id="m-old", public_key="A" * 43, key_hash="hash-legacy", linked_at=NOW, agents=[],
               gsi1pk=keys.owner_gsi_pk("usr_me"), gsi1sk=keys.daemon_gsi_sk(NOW, LEGACY)).save()
    return DaemonRepository()


@pytest.fixture
def clock():
    return Clock(NOW + 10)


@pytest.fixture
def service(daemons, clock):
    return CommandService(daemons=daemons, audit=FakeAudit(), sinks={}, clock=clock)


@contextmanager
def counted_requests():
    """Every DynamoDB request pynamodb sends meanwhile, by operation."""
    operations: list[str] = []

    def count(request, **_):
        target = request.headers.get("X-Amz-Target", b"")
        operations.append((target.decode() if isinstance(target, bytes) else str(target)).split(".", 1)[-1])

    events = DaemonItem._get_connection().connection.client.meta.events
    events.register_first("before-send.dynamodb", count)
    try:
        yield operations
    finally:
        events.unregister("before-send.dynamodb", count)


def beat(daemons, daemon_id=MINE, key_hash="hash-0", now=NOW + 10):
    return daemons.heartbeat(daemon_id, key_hash=key_hash, now=now, agents=[], metrics={})


def login(service, daemon_id=MINE, ttl=600, user_id="usr_me"):
    return service.enqueue(user_id, daemon_id, "provider_login", {"login_id": "login_1", "provider": "anthropic"},
                           ttl_seconds=ttl)


def test_heartbeats_return_the_live_commands_in_one_request(daemons, service, clock):
    assert DaemonItem.get(keys.daemon_pk(MINE), keys.DAEMON_SK).commands.as_dict() == {}  # approval made the map
    short = login(service, ttl=30)
    clock.advance(0.002)
    long = login(service, ttl=600)
    with counted_requests() as operations:
        assert beat(daemons, now=NOW + 10) == [short, long]  # id order = enqueue order
        assert beat(daemons, now=NOW + 40) == [long]  # expired: no longer handed out
    assert operations == ["UpdateItem", "UpdateItem"]
    assert beat(daemons, key_hash="wrong") is None


def test_a_daemon_without_a_queue_gets_one_on_its_first_command(daemons, service):
    assert beat(daemons, LEGACY, "hash-legacy") == []
    command = login(service, LEGACY)
    assert beat(daemons, LEGACY, "hash-legacy") == [command]


def test_an_enqueue_removes_expired_entries_in_the_same_write(daemons, service, clock):
    expired = login(service, ttl=5)
    clock.advance(5)
    with counted_requests() as operations:
        fresh = login(service)
    assert operations == ["GetItem", "UpdateItem"]
    assert set(DaemonItem.get(keys.daemon_pk(MINE), keys.DAEMON_SK).commands.as_dict()) == {fresh["command_id"]}
    assert expired["command_id"] != fresh["command_id"]


def test_the_queue_holds_32_live_commands(daemons, service, clock):
    for n in range(MAX_QUEUED):
        login(service, ttl=60 if n == 0 else 600)
    with pytest.raises(RateLimited) as refused:
        login(service)
    assert refused.value.code == "COMMAND_QUEUE_FULL" and refused.value.status == 429
    clock.advance(60)  # the first one expired: it makes room
    login(service)
    assert len(DaemonItem.get(keys.daemon_pk(MINE), keys.DAEMON_SK).commands.as_dict()) == MAX_QUEUED


@pytest.mark.parametrize("daemon_id", [OTHERS, REVOKED, "dmn_" + "f" * 32])
def test_enqueue_to_another_owners_revoked_or_unknown_daemon_is_not_found(daemons, service, daemon_id):
    with pytest.raises(NotFound) as refused:
        login(service, daemon_id)
    assert refused.value.code == "DAEMON_NOT_FOUND"
    item = DaemonItem.get(keys.daemon_pk(OTHERS), keys.DAEMON_SK)
    assert item.commands.as_dict() == {}


def test_a_final_report_removes_the_entry_and_stores_the_result_once(daemons, service, clock):
    command = login(service)
    caller = DaemonPrincipal(MINE, "usr_me")
    assert service.report(caller, command["command_id"], {"status": "running", "output": {"stage": "awaiting_user"}}) \
        == {"command_id": command["command_id"], "status": "running"}
    assert beat(daemons)[0]["progress"] == {"stage": "awaiting_user"}

    answer = service.report(caller, command["command_id"], {"status": "succeeded", "output": {"account": "me@x"}})
    assert answer == {"command_id": command["command_id"], "status": "succeeded"}
    assert beat(daemons) == []
    result = CommandResultItem.get(keys.daemon_pk(MINE), keys.command_result_sk(command["command_id"]))
    assert (result.status, result.command_type, result.output.as_dict()) == ("succeeded", "provider_login",
                                                                              {"account": "me@x"})
    assert result.expires_at == int(clock.now) + RESULT_RETENTION_SECONDS

    again = service.report(caller, command["command_id"], {"status": "failed", "error": {"code": "LOGIN_FAILED"}})
    assert again == {"command_id": command["command_id"], "status": "succeeded", "duplicate": True}
    # Another daemon of the same owner cannot report (or learn about) it.
    with pytest.raises(NotFound):
        service.report(DaemonPrincipal(LEGACY, "usr_me"), command["command_id"], {"status": "succeeded"})


def test_a_finished_command_cannot_be_finished_again_by_the_store(daemons, service, clock):
    command = login(service)
    now = int(clock.now)
    assert daemons.finish_command(MINE, command, status="failed", output=None, error={"code": "X", "message": ""},
                                  now=now)
    assert not daemons.finish_command(MINE, command, status="succeeded", output=None, error=None, now=now)
    assert daemons.command_result(MINE, command["command_id"], now=now)["status"] == "failed"
    assert daemons.command_result(MINE, command["command_id"], now=now + RESULT_RETENTION_SECONDS) is None


def test_concurrent_final_reports_record_exactly_once(daemons, service):
    command = login(service)
    both_read = threading.Barrier(2, timeout=10)
    read = daemons.queued_command

    waited = set()

    def read_then_wait(*args):  # both reports see the entry before either writes: a true race
        entry = read(*args)
        if threading.get_ident() not in waited:  # the first read of each report only
            waited.add(threading.get_ident())
            both_read.wait()
        return entry

    daemons.queued_command = read_then_wait
    answers = []

    def report(status):
        answers.append(service.report(DaemonPrincipal(MINE, "usr_me"), command["command_id"], {"status": status}))

    threads = [threading.Thread(target=report, args=(status,)) for status in ("succeeded", "failed")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    daemons.queued_command = read
    assert len(answers) == 2
    recorded = [a for a in answers if not a.get("duplicate")]
    duplicate = [a for a in answers if a.get("duplicate")]
    assert len(recorded) == 1 and len(duplicate) == 1
    assert duplicate[0]["status"] == recorded[0]["status"]
    assert CommandResultItem.get(keys.daemon_pk(MINE), keys.command_result_sk(command["command_id"])).status \
        == recorded[0]["status"]


def test_an_expired_entry_answers_gone_and_is_removed(daemons, service, clock):
    command = login(service, ttl=60)
    clock.advance(60)
    with pytest.raises(Gone) as refused:
        service.report(DaemonPrincipal(MINE, "usr_me"), command["command_id"], {"status": "succeeded"})
    assert refused.value.code == "COMMAND_EXPIRED" and refused.value.status == 410
    assert DaemonItem.get(keys.daemon_pk(MINE), keys.DAEMON_SK).commands.as_dict() == {}
    assert not list(CommandResultItem.query(keys.daemon_pk(MINE), CommandResultItem.sk.startswith("CMDRESULT#")))
