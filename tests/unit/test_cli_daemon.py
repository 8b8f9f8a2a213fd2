"""``relay-cloud daemon`` against an in-process fake cloud (an httpx MockTransport that keeps an inbox with
leases the way the contract does), with injected sleep, clock and random: inbox files, duplicates,
redelivery after a crash before the ack, backoff bounds, 401 and the server's interval."""

from __future__ import annotations

import io
import json
import os
import random
import stat
import time
from pathlib import Path

import httpx
import pytest

from relay_cloud.cli import config as cfg
from relay_cloud.cli import daemon as dmn
from relay_cloud.cli.main import build_parser

CLOUD = "http://127.0.0.1:8787"
DAEMON_ID = "dmn_" + "a" * 32
KEY = f"rly_{DAEMON_ID}_" + "s" * 43


class FakeCloud:
    """The daemon-key routes the loop uses, with the contract's lease: a received message is not handed out
    again until its 60 s lease has passed; acked messages are gone."""

    def __init__(self) -> None:
        self.now = 1_000_000
        self.inbox: dict[str, dict] = {}
        self.commands: list[dict] = []
        self.reports: list[tuple[str, dict]] = []
        self.heartbeats: list[dict] = []
        self.fail_with: list = []  # per request: an exception to raise or a status to answer, in order
        self.interval = 15

    def put(self, message_id: str, agent: str, body: object, *, from_agent: str | None = "alice") -> None:
        self.inbox[message_id] = {"message_id": message_id, "from": {"daemon_id": "dmn_" + "b" * 32, "agent": from_agent},
                                  "to": {"daemon_id": DAEMON_ID, "agent": agent}, "body": body,
                                  "sent_at": self.now, "expires_at": self.now + 86400, "delivery_count": 0,
                                  "lease_expires_at": None}

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        if self.fail_with:
            failure = self.fail_with.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return httpx.Response(failure, json={"error": "nope", "code": "SOMETHING"})
        path = request.url.path
        if path == dmn.HEARTBEAT_PATH:
            self.heartbeats.append(json.loads(request.content))
            return httpx.Response(200, json={"commands": self.commands, "heartbeat_interval_s": self.interval})
        if path == dmn.MESSAGES_PATH and request.method == "GET":
            limit = int(request.url.params.get("limit", 50))
            picked = []
            for message in sorted(self.inbox.values(), key=lambda m: m["message_id"]):
                if message["lease_expires_at"] and message["lease_expires_at"] > self.now:
                    continue
                message["lease_expires_at"] = self.now + 60
                message["delivery_count"] += 1
                picked.append(dict(message))
                if len(picked) == limit:
                    break
            return httpx.Response(200, json={"messages": picked})
        if path == dmn.ACK_PATH:
            ids = json.loads(request.content)["message_ids"]
            acked = [i for i in ids if self.inbox.pop(i, None) is not None]
            return httpx.Response(200, json={"acked": acked, "unknown": [i for i in ids if i not in acked]})
        if path.startswith("/api/daemons/commands/"):
            command_id = path.split("/")[4]
            self.reports.append((command_id, json.loads(request.content)))
            return httpx.Response(200, json={"command_id": command_id, "status": "x"})
        return httpx.Response(404, json={"error": "no route", "code": "NOT_FOUND"})


class Sleeps:
    def __init__(self, daemon_ref: list, stop_after: int) -> None:
        self.waits: list[float] = []
        self.daemon_ref, self.stop_after = daemon_ref, stop_after

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.stop_after:
            self.daemon_ref[0].stop()


def linked_config() -> cfg.Config:
    return cfg.Config(cloud_url=CLOUD, daemon_id=DAEMON_ID, api_key=KEY, machine_id="m-1", name="laptop",
                      private_key="A" * 43)


def make_daemon(cloud: FakeCloud, home: Path, *, agents=("bob",), stop_after: int = 1,
                rand=None) -> tuple[dmn.Daemon, Sleeps, io.StringIO]:
    http = httpx.Client(base_url=CLOUD, transport=httpx.MockTransport(cloud.handler),
                        headers={"Authorization": f"Bearer {KEY}"})
    ref: list = []
    sleeps = Sleeps(ref, stop_after)
    err = io.StringIO()
    daemon = dmn.Daemon(http, linked_config(), home, [dmn.parse_agent(a) for a in agents], sleep=sleeps,
                        random=rand or random.Random(7).uniform, clock=lambda: 0.0, err=err)
    ref.append(daemon)
    return daemon, sleeps, err


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def events(err: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in err.getvalue().splitlines() if line.startswith("{")]


def test_a_cycle_heartbeats_writes_private_inbox_files_and_acks(tmp_path):
    cloud = FakeCloud()
    cloud.put("msg_0001", "bob", {"text": "hello bob"})
    cloud.put("msg_0002", "carol", {"text": "hi carol"}, from_agent=None)
    daemon, _, err = make_daemon(cloud, tmp_path, agents=("bob:anthropic", "carol"))

    assert daemon.run(once=True) == 0

    assert cloud.heartbeats == [{"agents": [{"name": "bob", "status": "idle", "provider": "anthropic"},
                                            {"name": "carol", "status": "idle"}]}]
    assert cloud.inbox == {}  # both acked
    written = tmp_path / "inbox" / "bob" / "msg_0001.json"
    saved = json.loads(written.read_text())
    assert saved["body"] == {"text": "hello bob"} and saved["to"] == {"daemon_id": DAEMON_ID, "agent": "bob"}
    assert saved["from"]["agent"] == "alice" and "lease_expires_at" not in saved
    assert json.loads((tmp_path / "inbox" / "carol" / "msg_0002.json").read_text())["body"] == {"text": "hi carol"}
    assert mode(written) == 0o600
    assert mode(tmp_path / "inbox") == 0o700 and mode(tmp_path / "inbox" / "bob") == 0o700
    # the log says what happened without the bodies
    log = err.getvalue()
    assert "hello bob" not in log and "hi carol" not in log
    assert [e["message_id"] for e in events(err) if e["event"] == "message_received"] == ["msg_0001", "msg_0002"]


def test_an_inbox_file_already_there_is_a_duplicate_acked_but_not_rewritten(tmp_path):
    cloud = FakeCloud()
    cloud.put("msg_0001", "bob", {"text": "second delivery"})
    existing = tmp_path / "inbox" / "bob" / "msg_0001.json"
    cfg.write_private(existing, b'{"body": "first delivery"}\n')
    before = existing.stat().st_mtime_ns
    daemon, _, err = make_daemon(cloud, tmp_path)

    assert daemon.run(once=True) == 0

    assert cloud.inbox == {}
    assert existing.read_text() == '{"body": "first delivery"}\n' and existing.stat().st_mtime_ns == before
    received = [e for e in events(err) if e["event"] == "message_received"]
    assert received[0]["duplicate"] is True


def test_a_daemon_stopped_before_its_ack_gets_the_message_again_after_the_lease_and_dedups_it(tmp_path):
    cloud = FakeCloud()
    cloud.put("msg_0001", "bob", {"text": "at least once"})
    crashed, _, _ = make_daemon(cloud, tmp_path)

    class Crash(BaseException):
        pass

    def crash(ids):
        raise Crash()

    crashed.ack = crash
    with pytest.raises(Crash):
        crashed.run(once=True)
    path = tmp_path / "inbox" / "bob" / "msg_0001.json"
    first = path.read_bytes()
    assert cloud.inbox["msg_0001"]["delivery_count"] == 1

    restarted, _, err = make_daemon(cloud, tmp_path)
    assert restarted.run(once=True) == 0
    assert "msg_0001" in cloud.inbox  # still leased to the crashed receive: not handed out yet

    cloud.now += 61  # the lease is over
    assert restarted.run(once=True) == 0
    assert cloud.inbox == {} and path.read_bytes() == first
    received = [e for e in events(err) if e["event"] == "message_received"]
    assert received == [dict(received[0], delivery_count=2, duplicate=True)]


def test_a_message_for_an_unsafe_agent_name_is_dropped_and_acked_never_written(tmp_path):
    cloud = FakeCloud()
    cloud.put("msg_0001", "..", {"text": "escape"})
    daemon, _, _ = make_daemon(cloud, tmp_path / "home")
    assert daemon.run(once=True) == 0
    assert cloud.inbox == {}
    assert not list(tmp_path.rglob("msg_0001.json"))


def test_network_errors_and_5xx_back_off_with_full_jitter_growing_to_the_cap(tmp_path):
    cloud = FakeCloud()
    cloud.fail_with = [httpx.ConnectError("refused")] * 5 + [503, 500] + [httpx.ReadTimeout("slow")] * 3
    upper = lambda low, high: high  # noqa: E731 — the top of each jitter range shows the bound itself
    daemon, sleeps, _ = make_daemon(cloud, tmp_path, stop_after=12, rand=upper)
    assert daemon.run() == 0
    assert sleeps.waits[:10] == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert sleeps.waits[10:] == [15, 15]  # after a success: the server's interval, and the backoff is reset


def test_the_jitter_is_random_within_each_bound(tmp_path):
    cloud = FakeCloud()
    cloud.fail_with = [httpx.ConnectError("refused")] * 40
    daemon, sleeps, err = make_daemon(cloud, tmp_path, stop_after=40, rand=random.Random(3).uniform)
    daemon.run()
    bounds = [min(60, 2 ** n) for n in range(40)]
    assert all(0 <= wait <= bound for wait, bound in zip(sleeps.waits, bounds))
    assert len({round(w, 6) for w in sleeps.waits}) == 40  # jittered, not a fixed schedule
    assert sum(w > 30 for w in sleeps.waits) >= 5 and min(sleeps.waits) < 1
    assert [e["event"] for e in events(err)].count("backoff") == 40


def test_a_4xx_other_than_401_does_not_back_off(tmp_path):
    cloud = FakeCloud()
    cloud.fail_with = [400, 429, 404]
    daemon, sleeps, err = make_daemon(cloud, tmp_path, stop_after=4, rand=lambda low, high: high)
    assert daemon.run() == 0
    assert sleeps.waits == [15, 15, 15, 15]
    assert [e["status"] for e in events(err) if e["event"] == "rejected"] == [400, 429, 404]


def test_401_exits_3_saying_the_machine_was_unlinked(tmp_path):
    cloud = FakeCloud()
    cloud.fail_with = [httpx.ConnectError("refused"), 401]
    daemon, sleeps, err = make_daemon(cloud, tmp_path, stop_after=99)
    assert daemon.run() == dmn.EXIT_UNLINKED
    assert len(sleeps.waits) == 1
    assert "this machine was unlinked; run relay-cloud link" in err.getvalue()
    assert KEY not in err.getvalue()


def test_the_loop_follows_the_servers_interval(tmp_path):
    cloud = FakeCloud()
    cloud.interval = 2
    daemon, sleeps, _ = make_daemon(cloud, tmp_path, stop_after=2)
    assert daemon.run() == 0
    assert sleeps.waits == [2, 2] and len(cloud.heartbeats) == 2


def test_commands_it_cannot_run_are_reported_failed_once_and_a_cancel_of_nothing_succeeds(tmp_path):
    cloud = FakeCloud()
    cloud.commands = [{"command_id": "cmd_1", "type": "spawn_agent", "args": {}},
                      {"command_id": "cmd_2", "type": "provider_login_cancel", "args": {"login_id": "login_x"}},
                      {"command_id": "cmd_3", "type": "provider_login_code", "args": {"login_id": "login_x",
                                                                                       "sealed": {}}}]
    daemon, _, _ = make_daemon(cloud, tmp_path, stop_after=2)
    assert daemon.run() == 0  # two cycles: the queue still holds them, they are not run twice
    assert cloud.reports == [
        ("cmd_1", {"status": "failed", "error": {"code": "UNSUPPORTED_COMMAND",
                                                 "message": "this daemon cannot run that command"}}),
        ("cmd_2", {"status": "succeeded", "output": {}}),
        ("cmd_3", {"status": "failed", "error": {"code": "LOGIN_NOT_RUNNING",
                                                 "message": "no login with that id is running here"}}),
    ]


def test_a_provider_login_command_runs_the_cli_and_reports_its_prompt_then_its_result(tmp_path, monkeypatch):
    standins = Path(__file__).resolve().parents[1] / "standins"
    cloud = FakeCloud()
    cloud.commands = [{"command_id": "cmd_login", "type": "provider_login",
                       "args": {"login_id": "login_1", "provider": "openai"}}]
    daemon, _, _ = make_daemon(cloud, tmp_path, stop_after=2)
    daemon.login_env = dict(os.environ, PATH=f"{standins}{os.pathsep}{os.environ['PATH']}", STANDIN_DELAY="0.2")
    daemon.cycle()
    daemon.cycle()  # the command is still queued while the login runs: it is not started twice
    runner = daemon.logins["login_1"]
    assert runner.wait(20)
    statuses = [body["status"] for command_id, body in cloud.reports if command_id == "cmd_login"]
    assert statuses == ["running", "succeeded"]
    prompt = cloud.reports[0][1]["output"]
    assert prompt["url"] == "https://auth.openai.com/codex/device" and prompt["needs_code"] is False


def test_stopping_the_daemon_stops_a_running_login_and_says_so(tmp_path):
    standins = Path(__file__).resolve().parents[1] / "standins"
    cloud = FakeCloud()
    cloud.commands = [{"command_id": "cmd_login", "type": "provider_login",
                       "args": {"login_id": "login_1", "provider": "anthropic"}}]
    daemon, _, _ = make_daemon(cloud, tmp_path)
    daemon.login_env = dict(os.environ, PATH=f"{standins}{os.pathsep}{os.environ['PATH']}")
    assert daemon.run(once=True) == 0
    assert daemon.logins["login_1"].finished.is_set()
    final = [body for command_id, body in cloud.reports if body["status"] != "running"]
    assert final == [{"status": "failed", "error": {"code": "DAEMON_STOPPED",
                                                    "message": "relay-cloud daemon stopped during the login"}}]


def test_agent_names_are_checked_before_anything_is_sent(tmp_path):
    for bad in ("..", ".", "a/b", "", "x" * 65, "bad name"):
        with pytest.raises(ValueError):
            dmn.parse_agent(bad)
    assert dmn.parse_agent("alice:anthropic") == {"name": "alice", "status": "idle", "provider": "anthropic"}
    err = io.StringIO()
    cfg.save(linked_config(), tmp_path)
    assert dmn.run(agents=["../etc"], home=tmp_path, err=err) == 1 and "agent name" in err.getvalue()
    assert dmn.run(agents=["a", "a"], home=tmp_path, err=io.StringIO()) == 1


def test_not_linked_exits_1(tmp_path):
    err = io.StringIO()
    assert dmn.run(home=tmp_path, err=err) == 1 and "not linked" in err.getvalue()


def test_the_parser_knows_daemon_sync_and_send():
    parser = build_parser()
    args = parser.parse_args(["daemon", "--agent", "alice", "--agent", "bob:openai", "--once"])
    assert args.agents == ["alice", "bob:openai"] and args.once
    assert parser.parse_args(["sync", "--print-env"]).print_env
    args = parser.parse_args(["send", "laptop/bob", "@note.txt", "--from", "alice"])
    assert (args.target, args.content, args.from_agent, args.json) == ("laptop/bob", "@note.txt", "alice", False)


def test_a_sealed_login_code_is_opened_with_the_machine_key_and_typed_into_the_login(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from relay_cloud.domain.sealing import b64url, login_code_aad, seal

    standins = Path(__file__).resolve().parents[1] / "standins"
    private = X25519PrivateKey.generate()
    cloud = FakeCloud()
    daemon, _, err = make_daemon(cloud, tmp_path)
    daemon.linked = cfg.Config(**{**linked_config().__dict__, "private_key": b64url(private.private_bytes_raw())})
    daemon.login_env = dict(os.environ, PATH=f"{standins}{os.pathsep}{os.environ['PATH']}",
                            STANDIN_EXPECT_CODE="the-pasted-code")
    cloud.commands = [{"command_id": "cmd_login", "type": "provider_login",
                       "args": {"login_id": "login_1", "provider": "anthropic"}}]
    daemon.cycle()
    runner = daemon.logins["login_1"]
    deadline = time.monotonic() + 20
    while not cloud.reports and time.monotonic() < deadline:
        time.sleep(0.05)
    public = private.public_key().public_bytes_raw()
    wrong_aad = seal(public, b"the-pasted-code", login_code_aad(DAEMON_ID, "login_other"))
    right = seal(public, b"the-pasted-code", login_code_aad(DAEMON_ID, "login_1"))
    cloud.commands = [{"command_id": "cmd_bad", "type": "provider_login_code",
                       "args": {"login_id": "login_1", "sealed": wrong_aad}},
                      {"command_id": "cmd_code", "type": "provider_login_code",
                       "args": {"login_id": "login_1", "sealed": right}}]
    daemon.cycle()
    assert runner.wait(20)
    by_id = {command_id: body for command_id, body in cloud.reports}
    assert by_id["cmd_bad"]["error"]["code"] == "CODE_UNREADABLE"
    assert by_id["cmd_code"] == {"status": "succeeded", "output": {}}
    assert by_id["cmd_login"] == {"status": "succeeded", "output": {}}
    token = json.loads((tmp_path / "credentials" / "anthropic.json").read_text())["token"]
    assert token not in json.dumps(cloud.reports) and token not in err.getvalue()
    assert "the-pasted-code" not in err.getvalue()
