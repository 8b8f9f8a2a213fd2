"""``relay-cloud daemon``: keep this machine present in the cloud and carry its messages and commands.

Every cycle: heartbeat (the configured agents) → receive messages → write each into
``<data dir>/inbox/<agent>/<message_id>.json`` (0600, atomic; a file already there is a duplicate of an
earlier delivery) → ack them → run the commands the heartbeat returned. Then wait the interval the server
asked for. Network errors and 5xx back off with full jitter (1 s base, 60 s cap); other 4xx are logged and
the loop goes on at the normal interval; 401 means the key was revoked: exit 3.

Logs are one JSON object a line on stderr: ids, counts and codes, never message bodies, login URLs,
codes or tokens.
"""

from __future__ import annotations

import json
import random as _random
import re
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TextIO

import httpx

from relay_cloud.cli import config as cfg
from relay_cloud.cli._http import client, describe_network_error, error_code
from relay_cloud.cli.logins import LoginRunner
from relay_cloud.domain.daemons import is_agent_name

HEARTBEAT_PATH = "/api/daemons/heartbeat"
MESSAGES_PATH = "/api/daemons/messages"
ACK_PATH = "/api/daemons/messages/ack"
RESULT_PATH = "/api/daemons/commands/{command_id}/result"

EXIT_UNLINKED = 3
UNLINKED_TEXT = "this machine was unlinked; run relay-cloud link"
DEFAULT_INTERVAL = 15.0
MIN_INTERVAL, MAX_INTERVAL = 1.0, 300.0
BACKOFF_BASE, BACKOFF_CAP = 1.0, 60.0
RECEIVE_LIMIT = 100  # the most the server hands out per call, and the most one ack takes
MAX_PAGES = 10  # receive calls per cycle: a full inbox drains over a few cycles, heartbeats go on
REPORT_ATTEMPTS = 5
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class Unlinked(Exception):
    """401: the daemon key is revoked or unknown."""


class Retryable(Exception):
    """A network error or a 5xx: back off and try again."""


class Rejected(Exception):
    """Any other 4xx: this request will not succeed as it is."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(f"HTTP {status} {code}".strip())
        self.status, self.code = status, code


def parse_agent(text: str) -> dict:
    """``NAME[:PROVIDER]`` → the heartbeat's agent entry (status ``idle``)."""
    name, _, provider = text.partition(":")
    if not is_agent_name(name):
        raise ValueError(f"agent name {name!r} must be 1-64 characters of A-Z a-z 0-9 . _ - (not . or ..)")
    agent = {"name": name, "status": "idle"}
    if provider:
        if len(provider) > 32 or not provider.isprintable():
            raise ValueError(f"provider {provider!r} must be 1-32 printable characters")
        agent["provider"] = provider
    return agent


def private_key_bytes(linked: cfg.Config) -> bytes:
    from relay_cloud.domain.sealing import b64url_decode

    return b64url_decode(linked.private_key)


class Daemon:
    def __init__(self, http: httpx.Client, linked: cfg.Config, home: Path, agents: list[dict], *,
                 sleep: Callable[[float], object] | None = None,
                 random: Callable[[float, float], float] = _random.uniform,
                 clock: Callable[[], float] = time.monotonic,
                 err: TextIO | None = None,
                 login_env: dict | None = None) -> None:
        self.http, self.linked, self.home, self.agents = http, linked, Path(home), agents
        self.stopping = threading.Event()
        self.sleep = sleep or self.stopping.wait  # the default wakes up at once on SIGTERM/SIGINT
        self.random, self.clock, self.err = random, clock, err or sys.stderr
        self.login_env = login_env
        self.interval = DEFAULT_INTERVAL
        self.failures = 0
        self.logins: dict[str, LoginRunner] = {}
        self.handled: set[str] = set()  # command ids taken on (a running login stays queued until it ends)
        self._log_lock = threading.Lock()

    # -- plumbing -----------------------------------------------------------------------------------------

    def log(self, event: str, **fields) -> None:
        line = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "event": event, **{k: v for k, v in fields.items() if v is not None}}
        with self._log_lock:
            print(json.dumps(line, separators=(",", ":")), file=self.err, flush=True)

    def call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Retryable(describe_network_error(exc)) from None
        if response.status_code == 401:
            raise Unlinked()
        if response.status_code >= 500:
            raise Retryable(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise Rejected(response.status_code, error_code(response)[0])
        try:
            body = response.json()
        except ValueError:
            raise Retryable(f"HTTP {response.status_code} with a body that is not JSON") from None
        if not isinstance(body, dict):
            raise Retryable(f"HTTP {response.status_code} with an unexpected body")
        return body

    def backoff(self) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^failures)], failures counted since the last success."""
        delay = self.random(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** self.failures))
        self.failures += 1
        return delay

    # -- one cycle ----------------------------------------------------------------------------------------

    def cycle(self) -> None:
        commands = self.heartbeat()
        self.deliver()
        self.run_commands(commands)

    def heartbeat(self) -> list:
        body = self.call("POST", HEARTBEAT_PATH, json={"agents": self.agents})
        try:
            interval = float(body.get("heartbeat_interval_s", DEFAULT_INTERVAL))
        except (TypeError, ValueError):
            interval = DEFAULT_INTERVAL
        self.interval = min(max(interval, MIN_INTERVAL), MAX_INTERVAL)
        commands = body.get("commands")
        commands = [c for c in commands if isinstance(c, dict)] if isinstance(commands, list) else []
        self.log("heartbeat", agents=len(self.agents), commands=len(commands), interval_s=self.interval)
        return commands

    def deliver(self) -> None:
        for _ in range(MAX_PAGES):
            body = self.call("GET", MESSAGES_PATH, params={"limit": RECEIVE_LIMIT})
            messages = body.get("messages")
            messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
            if not messages:
                return
            ids = [message_id for message_id in map(self.store, messages) if message_id]
            if ids:
                self.ack(ids)
            if len(messages) < RECEIVE_LIMIT:
                return

    def store(self, message: dict) -> str | None:
        """Write one message into its agent's inbox; the id to ack (also for a duplicate, and for a message
        that can never be stored, which would otherwise come back until it expires)."""
        message_id = message.get("message_id")
        if not isinstance(message_id, str) or not SAFE_ID.fullmatch(message_id):
            self.log("message_invalid", reason="message_id")
            return None
        to = message.get("to") if isinstance(message.get("to"), dict) else {}
        agent = to.get("agent")
        if not isinstance(agent, str) or not is_agent_name(agent):
            self.log("message_dropped", message_id=message_id, reason="agent name")
            return message_id
        sender = message.get("from") if isinstance(message.get("from"), dict) else {}
        path = self.home / "inbox" / agent / f"{message_id}.json"
        duplicate = path.exists()
        if not duplicate:
            record = {key: message.get(key) for key in ("message_id", "from", "to", "body", "sent_at", "expires_at")}
            cfg.ensure_dir(self.home / "inbox")
            cfg.write_private(path, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        self.log("message_received", message_id=message_id, agent=agent, from_daemon=sender.get("daemon_id"),
                 from_agent=sender.get("agent"), delivery_count=message.get("delivery_count"), duplicate=duplicate)
        return message_id

    def ack(self, message_ids: list[str]) -> None:
        body = self.call("POST", ACK_PATH, json={"message_ids": message_ids})
        unknown = body.get("unknown") if isinstance(body.get("unknown"), list) else []
        self.log("messages_acked", acked=len(message_ids) - len(unknown), unknown=len(unknown) or None)

    # -- commands -----------------------------------------------------------------------------------------

    def run_commands(self, commands: list) -> None:
        live = {c.get("command_id") for c in commands}
        self.handled &= live  # a command that left the queue is finished; forget it
        for command in commands:
            command_id, kind = command.get("command_id"), command.get("type")
            if not isinstance(command_id, str) or not SAFE_ID.fullmatch(command_id) or command_id in self.handled:
                continue
            self.handled.add(command_id)  # before running: a failed report must not run it twice
            args = command.get("args") if isinstance(command.get("args"), dict) else {}
            self.log("command", command_id=command_id, type=kind)
            if kind == "provider_login":
                self.start_login(command_id, args)
            elif kind == "provider_login_code":
                self.enter_login_code(command_id, args)
            elif kind == "provider_login_cancel":
                runner = self.logins.get(str(args.get("login_id")))
                if runner is not None and not runner.finished.is_set():
                    runner.cancel()
                self.report(command_id, {"status": "succeeded", "output": {}})
            else:
                self.report(command_id, self.failure("UNSUPPORTED_COMMAND", "this daemon cannot run that command"))

    @staticmethod
    def failure(code: str, message: str) -> dict:
        return {"status": "failed", "error": {"code": code, "message": message}}

    def start_login(self, command_id: str, args: dict) -> None:
        login_id, provider = args.get("login_id"), args.get("provider")
        if not isinstance(login_id, str) or not isinstance(provider, str):
            self.report(command_id, self.failure("INVALID_COMMAND", "login_id and provider are required"))
            return
        running = self.logins.get(login_id)
        if running is not None and not running.finished.is_set():
            return
        self.logins = {k: v for k, v in self.logins.items() if not v.finished.is_set()}
        self.logins[login_id] = LoginRunner(
            command_id=command_id, login_id=login_id, provider=provider, report=self.report, home=self.home,
            env=self.login_env, log=self.log,
        ).start()

    def enter_login_code(self, command_id: str, args: dict) -> None:
        from relay_cloud.domain.sealing import login_code_aad, open_sealed

        login_id = str(args.get("login_id"))
        runner = self.logins.get(login_id)
        if runner is None or runner.finished.is_set():
            self.report(command_id, self.failure("LOGIN_NOT_RUNNING", "no login with that id is running here"))
            return
        sealed = args.get("sealed")
        try:
            aad = login_code_aad(self.linked.daemon_id, login_id)
            code = open_sealed(private_key_bytes(self.linked), sealed, aad).decode()
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
            self.report(command_id, self.failure("CODE_UNREADABLE", "the code could not be opened on this machine"))
            return
        runner.submit_code(code)
        self.report(command_id, {"status": "succeeded", "output": {}})

    def report(self, command_id: str, body: dict) -> bool:
        """POST the command's progress or result; retried with backoff on network errors and 5xx. Whether
        the cloud took it. Called from login threads too (httpx clients are thread-safe)."""
        path = RESULT_PATH.format(command_id=command_id)
        for attempt in range(REPORT_ATTEMPTS):
            try:
                self.call("POST", path, json=body)
                self.log("command_reported", command_id=command_id, status=body.get("status"))
                return True
            except Retryable as exc:
                self.log("report_retry", command_id=command_id, reason=str(exc))
                self.sleep(self.random(0.0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)))
            except Rejected as exc:  # 404 unknown or 410 expired: nothing left to report to
                self.log("report_rejected", command_id=command_id, status=exc.status, code=exc.code)
                return False
            except Unlinked:
                return False  # the main loop sees the 401 on its next request and exits
        self.log("report_abandoned", command_id=command_id)
        return False

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> int:
        self.log("started", daemon_id=self.linked.daemon_id, agents=[a["name"] for a in self.agents],
                 once=once or None)
        code = 0
        try:
            while not self.stopping.is_set():
                started = self.clock()
                try:
                    self.cycle()
                    self.failures = 0
                    wait = max(0.0, self.interval - (self.clock() - started))
                except Unlinked:
                    self.log("unlinked")
                    print(f"relay-cloud daemon: {UNLINKED_TEXT}", file=self.err, flush=True)
                    return EXIT_UNLINKED
                except Retryable as exc:
                    wait = self.backoff()
                    self.log("backoff", reason=str(exc), wait_s=round(wait, 3), failures=self.failures)
                    code = 1
                except Rejected as exc:
                    wait = self.interval
                    self.log("rejected", status=exc.status, code=exc.code)
                    code = 1
                else:
                    code = 0
                if once:
                    return code
                self.sleep(wait)
            return 0
        finally:
            self.shutdown()

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """A login cannot outlive the daemon: stop its CLI and say so to the dashboard."""
        running = [r for r in self.logins.values() if not r.finished.is_set()]
        for runner in running:
            runner.cancel("DAEMON_STOPPED", "relay-cloud daemon stopped during the login")
        for runner in running:
            runner.wait(10)
        self.log("stopped")


def run(*, agents: list[str] | None = None, once: bool = False, home: Path | None = None,
        err: TextIO | None = None) -> int:
    err = err or sys.stderr

    def fail(text: str) -> int:
        print(f"relay-cloud daemon: {text}", file=err, flush=True)
        return 1

    try:
        directory, linked = cfg.load_linked(home)
    except cfg.ConfigError as exc:  # NoConfig included: its text says to run relay-cloud link
        return fail(str(exc))
    try:
        inventory = [parse_agent(text) for text in agents or []]
    except ValueError as exc:
        return fail(str(exc))
    if len({a["name"] for a in inventory}) != len(inventory):
        return fail("agent names must be unique")

    with client(linked.cloud_url, api_key=linked.api_key) as http:
        daemon = Daemon(http, linked, directory, inventory, err=err)
        previous = {sig: signal.signal(sig, lambda *_: daemon.stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return daemon.run(once=once)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
