"""Commands with fakes and a controllable clock: enqueueing to the owner's linked machines only, progress
and final reports (recorded once, idempotent by id, duplicates still reach the sink), unknown, foreign
and expired commands, report validation, and the heartbeat's faster interval while commands are queued."""

from __future__ import annotations

import pytest

from relay_cloud.domain.commands import MAX_OUTPUT_BYTES, MAX_QUEUED, live
from relay_cloud.domain.daemons import DaemonKeyClaim, DaemonPrincipal
from relay_cloud.domain.errors import DependencyUnavailable, Gone, NotFound, RateLimited, ValidationFailed
from relay_cloud.services.commands import CommandService
from relay_cloud.services.daemons import DaemonService
from tests.fakes import Clock, FakeAudit

MINE = "dmn_" + "a" * 32
MINE_TOO = "dmn_" + "b" * 32
THEIRS = "dmn_" + "c" * 32
REVOKED = "dmn_" + "d" * 32
UNKEYED = "dmn_" + "e" * 32
CALLER = DaemonPrincipal(MINE, "usr_me")


class FakeCommandStore:
    """The daemon repository's command queue and results, with the same conditions as DynamoDB's."""

    def __init__(self):
        self.daemons = {MINE: ("usr_me", True), MINE_TOO: ("usr_me", True), THEIRS: ("usr_other", True),
                        REVOKED: ("usr_me", False), UNKEYED: ("usr_me", False)}
        self.queues = {daemon_id: {} for daemon_id in self.daemons}
        self.results = {}
        self.before_finish = None  # runs just before finish_command's condition is checked (a racing report)

    def enqueue_command(self, daemon_id, *, user_id, command, now):
        owner, active = self.daemons.get(daemon_id, (None, False))
        if owner != user_id or not active:
            raise NotFound("no", code="DAEMON_NOT_FOUND")
        queue = {k: v for k, v in self.queues[daemon_id].items() if live(v, now)}
        if len(queue) >= MAX_QUEUED:
            raise RateLimited("full", code="COMMAND_QUEUE_FULL")
        queue[command["command_id"]] = dict(command)
        self.queues[daemon_id] = queue

    def queued_command(self, daemon_id, command_id):
        entry = self.queues.get(daemon_id, {}).get(command_id)
        return dict(entry) if entry else None

    def record_progress(self, daemon_id, command_id, *, progress, now):
        entry = self.queues.get(daemon_id, {}).get(command_id)
        if entry is None or not live(entry, now):
            return False
        entry.update(progress=progress, reported_at=now)
        return True

    def finish_command(self, daemon_id, command, *, status, output, error, now):
        if self.before_finish is not None:
            race, self.before_finish = self.before_finish, None
            race()
        queue, command_id = self.queues.get(daemon_id, {}), command["command_id"]
        if command_id not in queue or not live(queue[command_id], now) or (daemon_id, command_id) in self.results:
            return False
        del queue[command_id]
        self.results[(daemon_id, command_id)] = {"command_id": command_id, "type": command["type"],
                                                 "args": command["args"], "status": status, "output": output,
                                                 "error": error, "finished_at": now}
        return True

    def command_result(self, daemon_id, command_id, *, now):
        return self.results.get((daemon_id, command_id))

    def remove_expired_command(self, daemon_id, command_id, *, now):
        entry = self.queues.get(daemon_id, {}).get(command_id)
        if entry is None or live(entry, now):
            return False
        del self.queues[daemon_id][command_id]
        return True


class RecordingSink:
    """A sink that remembers what it was told (what the provider-login sink would act on)."""

    def __init__(self):
        self.reports = []

    def __call__(self, user_id, daemon_id, command, status, output, error):
        self.reports.append((user_id, daemon_id, command["command_id"], command["args"], status, output, error))


@pytest.fixture
def clock():
    return Clock(1_800_000_000)


@pytest.fixture
def sink():
    return RecordingSink()


@pytest.fixture
def service(clock, sink):
    return CommandService(daemons=FakeCommandStore(), audit=FakeAudit(),
                          sinks={"provider_login": sink, "provider_login_code": sink}, clock=clock)


def login(service, daemon_id=MINE, ttl=900):
    return service.enqueue("usr_me", daemon_id, "provider_login", {"login_id": "login_1", "provider": "anthropic"},
                           ttl_seconds=ttl)


# -- enqueue ----------------------------------------------------------------------------------------

def test_enqueue_queues_a_command_with_a_sortable_id_and_its_expiry(service, clock):
    command = login(service)
    assert command["command_id"].startswith("cmd_") and len(command["command_id"]) == 36
    assert int(command["command_id"][4:16], 16) == int(clock.now * 1000)
    assert command == {"command_id": command["command_id"], "type": "provider_login",
                       "args": {"login_id": "login_1", "provider": "anthropic"},
                       "created_at": int(clock.now), "expires_at": int(clock.now) + 900}
    assert service.daemons.queues[MINE] == {command["command_id"]: command}
    clock.advance(0.002)
    assert login(service)["command_id"] > command["command_id"]  # enqueue order
    event = service.audit.events[0]
    assert event["action"] == "daemon.command" and event["detail"]["command_id"] == command["command_id"]


@pytest.mark.parametrize("daemon_id", [THEIRS, REVOKED, UNKEYED, "dmn_" + "f" * 32, "not-a-daemon"])
def test_enqueue_to_anything_but_a_linked_machine_of_the_user_is_not_found(service, daemon_id):
    with pytest.raises(NotFound) as refused:
        login(service, daemon_id)
    assert refused.value.code == "DAEMON_NOT_FOUND"
    assert not any(service.daemons.queues.values()) and service.audit.events == []


def test_enqueue_refuses_unknown_types_and_bad_ttls(service):
    with pytest.raises(ValidationFailed):
        service.enqueue("usr_me", MINE, "rm_rf", {})
    with pytest.raises(ValidationFailed):
        service.enqueue("usr_me", MINE, "provider_login", {}, ttl_seconds=0)
    with pytest.raises(ValidationFailed):
        service.enqueue("usr_me", MINE, "provider_login", ["not", "an", "object"])


def test_the_queue_holds_32_live_commands_and_expired_ones_make_room(service, clock):
    for _ in range(MAX_QUEUED):
        login(service, ttl=60)
    with pytest.raises(RateLimited) as refused:
        login(service)
    assert refused.value.code == "COMMAND_QUEUE_FULL"
    clock.advance(60)
    login(service)
    assert len(service.daemons.queues[MINE]) == 1


# -- reports ----------------------------------------------------------------------------------------

def test_running_records_progress_and_the_command_stays_queued(service, sink, clock):
    command = login(service)
    output = {"stage": "awaiting_user", "url": "https://claude.ai/oauth?x=1", "needs_code": True}
    assert service.report(CALLER, command["command_id"], {"status": "running", "output": output}) == {
        "command_id": command["command_id"], "status": "running"}
    entry = service.daemons.queues[MINE][command["command_id"]]
    assert entry["progress"] == output and entry["reported_at"] == int(clock.now)
    assert sink.reports == [("usr_me", MINE, command["command_id"], command["args"], "running", output, None)]


def test_a_final_report_is_recorded_once_and_reporting_again_is_a_duplicate(service, sink):
    command = login(service)
    answer = service.report(CALLER, command["command_id"], {"status": "succeeded", "output": {"account": "me"}})
    assert answer == {"command_id": command["command_id"], "status": "succeeded"}
    assert service.daemons.queues[MINE] == {}
    stored = service.daemons.results[(MINE, command["command_id"])]
    assert stored["status"] == "succeeded" and stored["output"] == {"account": "me"}

    # The daemon retries (its answer was lost): the stored outcome wins, even over a different status.
    again = service.report(CALLER, command["command_id"], {"status": "failed", "error": {"code": "LOGIN_FAILED"}})
    assert again == {"command_id": command["command_id"], "status": "succeeded", "duplicate": True}
    assert service.daemons.results[(MINE, command["command_id"])] == stored
    # The sink is told both times, with the recorded outcome (sinks are idempotent).
    assert [report[4:] for report in sink.reports] == [("succeeded", {"account": "me"}, None)] * 2
    assert [e["action"] for e in service.audit.events] == ["daemon.command", "daemon.command_result"]


def test_a_failed_report_keeps_the_error(service, sink):
    command = login(service)
    error = {"code": "CLI_NOT_INSTALLED", "message": "claude is not on PATH"}
    service.report(CALLER, command["command_id"], {"status": "failed", "error": error})
    assert service.daemons.results[(MINE, command["command_id"])]["error"] == error
    assert sink.reports[-1][4:] == ("failed", None, error)
    assert service.audit.events[-1]["detail"]["error_code"] == "CLI_NOT_INSTALLED"


def test_a_report_racing_another_final_report_sees_a_duplicate(service, sink):
    command = login(service)
    service.daemons.before_finish = lambda: service.report(CALLER, command["command_id"], {"status": "failed"})
    answer = service.report(CALLER, command["command_id"], {"status": "succeeded"})
    assert answer == {"command_id": command["command_id"], "status": "failed", "duplicate": True}
    assert service.daemons.results[(MINE, command["command_id"])]["status"] == "failed"
    assert [e["action"] for e in service.audit.events].count("daemon.command_result") == 1


def test_unknown_and_other_daemons_commands_are_not_found(service):
    mine_too = login(service, MINE_TOO)
    for command_id in (mine_too["command_id"], "cmd_" + "0" * 32, "nope"):
        with pytest.raises(NotFound) as refused:
            service.report(CALLER, command_id, {"status": "succeeded"})
        assert refused.value.code == "COMMAND_NOT_FOUND"
    assert mine_too["command_id"] in service.daemons.queues[MINE_TOO]  # untouched


def test_an_expired_command_is_removed_and_answers_gone(service, clock, sink):
    command = login(service, ttl=60)
    clock.advance(60)
    with pytest.raises(Gone) as refused:
        service.report(CALLER, command["command_id"], {"status": "succeeded"})
    assert refused.value.status == 410 and refused.value.code == "COMMAND_EXPIRED"
    assert service.daemons.queues[MINE] == {} and service.daemons.results == {} and sink.reports == []
    with pytest.raises(NotFound):
        service.report(CALLER, command["command_id"], {"status": "succeeded"})


def test_a_command_without_a_sink_is_still_recorded(service):
    command = service.enqueue("usr_me", MINE, "provider_login_cancel", {"login_id": "login_1"})
    assert service.report(CALLER, command["command_id"], {"status": "succeeded"})["status"] == "succeeded"


@pytest.mark.parametrize("body, field", [
    ({}, "status"),
    ({"status": "done"}, "status"),
    ({"status": "running", "output": "text"}, "output"),
    ({"status": "running", "output": {"blob": "x" * MAX_OUTPUT_BYTES}}, "output"),
    ({"status": "running", "output": {"n": float("nan")}}, "output"),
    ({"status": "running", "output": {"n": 10**40 + 1}}, "output"),
    ({"status": "failed", "error": {"code": "lower_case"}}, "error.code"),
    ({"status": "failed", "error": {"code": "X" * 65}}, "error.code"),
    ({"status": "failed", "error": {"code": "X", "message": "m" * 513}}, "error.message"),
    ({"status": "succeeded", "error": {"code": "X"}}, "error"),
    ([], "body"),
])
def test_bad_reports_are_refused_with_the_field(service, body, field):
    command = login(service)
    with pytest.raises(ValidationFailed) as refused:
        service.report(CALLER, command["command_id"], body)
    assert refused.value.details["field"] == field
    assert command["command_id"] in service.daemons.queues[MINE]


def test_a_report_that_keeps_losing_races_asks_for_a_retry(service):
    command = login(service)
    service.daemons.record_progress = lambda *args, **kwargs: False  # the entry changes under every attempt
    with pytest.raises(DependencyUnavailable):
        service.report(CALLER, command["command_id"], {"status": "running"})


# -- the heartbeat's interval -----------------------------------------------------------------------

class QueueOnlyDaemons:
    def __init__(self, commands):
        self.commands = commands

    def heartbeat(self, daemon_id, *, key_hash, now, agents, metrics):
        return list(self.commands)


@pytest.mark.parametrize("commands, interval", [([], 15), ([{"command_id": "cmd_1"}], 2)])
def test_the_heartbeat_comes_back_every_2_seconds_while_commands_are_queued(commands, interval):
    daemons = DaemonService(links=None, daemons=QueueOnlyDaemons(commands), audit=FakeAudit(), registry=None,
                            public_url="http://localhost")
    reply = daemons.heartbeat(DaemonKeyClaim(MINE, "hash"), {"agents": []})
    assert reply == {"commands": commands, "heartbeat_interval_s": interval}
