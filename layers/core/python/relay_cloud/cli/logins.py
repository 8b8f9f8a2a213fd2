"""Provider logins on this machine (``workspace_login``): run the provider's own CLI in a pseudo-terminal,
relay only what the user must see (the login URL, a user code, whether a code must be pasted back), feed
the code the user pasted into the terminal, and keep whatever token the CLI prints on this machine.

The cloud never receives raw CLI output: reports carry the parsed prompt, or an error code with a short
message of our own. Each login runs in its own thread so the daemon keeps heartbeating meanwhile.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from relay_cloud.cli import config as cfg

LOGIN_TIMEOUT_SECONDS = 15 * 60  # the server's login lives 15 minutes; the CLI's code no longer
MAX_URL_LENGTH = 2048
MAX_OUTPUT_CHARS = 256 * 1024  # what we keep of the CLI's output to parse (in memory only, never sent)
TERMINAL_COLUMNS = 1000  # wide enough that no CLI wraps its login URL or token across lines
STOP_GRACE_SECONDS = 5
EXIT_QUIET_POLLS = 5  # 0.1 s selects with nothing to read after the CLI exited before calling it closed

Report = Callable[[str, dict], bool]  # (command_id, {"status", "output"?, "error"?}) -> the cloud took it


@dataclass(frozen=True)
class ProviderCli:
    argv: tuple[str, ...]
    hosts: tuple[str, ...]  # the login URL must be https on one of these (or a subdomain)
    env: Mapping[str, str] = field(default_factory=dict)
    token: re.Pattern | None = None  # a long-lived token the CLI prints, kept on this machine
    done: re.Pattern | None = None  # output after which a CLI that stays open has finished logging in

    @property
    def command(self) -> str:
        return " ".join(self.argv)


PROVIDER_CLIS: dict[str, ProviderCli] = {
    # Prints an authorize URL and "Paste code here if prompted >", then the one-year OAuth token.
    "anthropic": ProviderCli(("claude", "setup-token"), ("claude.ai", "claude.com", "anthropic.com"),
                             token=re.compile(r"sk-ant-oat\d+-[A-Za-z0-9_-]{16,}")),
    # RFC 8628-style: a verification URL and a one-time code; the CLI polls and writes ~/.codex/auth.json.
    "openai": ProviderCli(("codex", "login", "--device-auth"), ("openai.com", "chatgpt.com")),
    # Without a browser it prints a URL and asks for the authorization code, then writes ~/.gemini/.
    "google": ProviderCli(("gemini",), ("google.com",), env={"NO_BROWSER": "true"},
                          done=re.compile(r"(?i)authentication (succeeded|successful)|type your message")),
}

_ANSI_MOVE = re.compile(r"\x1b\[[0-9;]*[CG]")  # cursor moves TUIs print instead of spaces
_ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_URL = re.compile(r"https://[^\s<>\"'`]+")
_USER_CODE = re.compile(r"(?i)one-time code[^\n]*\n\s*([A-Za-z0-9]{3,}(?:-[A-Za-z0-9]{3,})+)\b")
_CODE_PROMPT = re.compile(r"(?i)paste (the )?(authorization )?code|enter the authorization code")


def clean(raw: str) -> str:
    """Terminal output as plain text: escapes removed (column moves become spaces), CR/LF to newlines."""
    text = _ANSI.sub("", _ANSI_MOVE.sub(" ", raw))
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class Prompt:
    url: str
    user_code: str | None
    needs_code: bool

    def output(self) -> dict:
        out = {"stage": "awaiting_user", "url": self.url, "needs_code": self.needs_code}
        if self.user_code:
            out["user_code"] = self.user_code
        return out


def parse_prompt(text: str, hosts: tuple[str, ...]) -> Prompt | None:
    """The login prompt once the CLI has printed all of it: an https URL on one of the provider's hosts,
    plus a user code to enter there or a prompt asking for a code to paste back; else ``None``."""
    url = next((u for u in _URL.findall(text) if _allowed_url(u, hosts)), None)
    if url is None:
        return None
    code_match = _USER_CODE.search(text)
    user_code = code_match.group(1) if code_match and len(code_match.group(1)) <= 32 else None
    needs_code = bool(_CODE_PROMPT.search(text))
    if not user_code and not needs_code:
        return None  # the URL alone is not the whole prompt yet
    return Prompt(url, user_code, needs_code)


def _allowed_url(url: str, hosts: tuple[str, ...]) -> bool:
    url = url.rstrip(".,;)")
    if len(url) > MAX_URL_LENGTH or not url.isprintable():
        return False
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    return any(host == h or host.endswith("." + h) for h in hosts)


def credentials_path(home: Path, provider: str) -> Path:
    return Path(home) / "credentials" / f"{provider}.json"


def load_token(home: Path, provider: str) -> str | None:
    """The token a login on this machine saved (``None`` when there is none or it cannot be read)."""
    try:
        data = json.loads(credentials_path(home, provider).read_text())
    except (OSError, ValueError):
        return None
    token = data.get("token") if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


class LoginRunner:
    """One ``provider_login`` command: start with :meth:`start`; :meth:`submit_code` and :meth:`cancel`
    come from later commands. Reports ``running`` once with the prompt, then exactly one final status."""

    def __init__(self, *, command_id: str, login_id: str, provider: str, report: Report, home: Path,
                 timeout: float = LOGIN_TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic,
                 env: Mapping[str, str] | None = None,
                 log: Callable[..., None] = lambda event, **fields: None) -> None:
        self.command_id, self.login_id, self.provider = command_id, login_id, provider
        self.report, self.home, self.timeout, self.clock, self.log = report, Path(home), timeout, clock, log
        self.env = dict(os.environ if env is None else env)
        self._codes: queue.Queue[str] = queue.Queue()
        self._cancelled = threading.Event()
        self._cancel_error = {"code": "LOGIN_CANCELLED", "message": "the login was cancelled"}
        self.thread: threading.Thread | None = None
        self.finished = threading.Event()
        self.outcome: str | None = None  # succeeded | failed, once finished

    def start(self) -> "LoginRunner":
        self.thread = threading.Thread(target=self.run, name=f"login-{self.login_id}", daemon=True)
        self.thread.start()
        return self

    def submit_code(self, code: str) -> None:
        self._codes.put(code)

    def cancel(self, code: str = "LOGIN_CANCELLED", message: str = "the login was cancelled") -> None:
        self._cancel_error = {"code": code, "message": message}
        self._cancelled.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    # -- the login itself ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            status, output, error = self._login()
        except Exception as exc:  # never let a login thread die silently: the dashboard would wait forever
            self.log("login_error", login_id=self.login_id, error=type(exc).__name__)
            status, output, error = "failed", None, {"code": "LOGIN_FAILED", "message": "the login could not run"}
        body: dict = {"status": status}
        if output is not None:
            body["output"] = output
        if error is not None:
            body["error"] = error
        self.outcome = status
        self.log("login_finished", login_id=self.login_id, provider=self.provider, status=status,
                 code=(error or {}).get("code"))
        try:
            self.report(self.command_id, body)
        finally:
            self.finished.set()

    def _login(self) -> tuple[str, dict | None, dict | None]:
        spec = PROVIDER_CLIS.get(self.provider)
        if spec is None:
            return "failed", None, {"code": "PROVIDER_NOT_SUPPORTED",
                                    "message": f"this machine cannot log in to {self.provider}"}
        env = {**self.env, **spec.env}
        env.setdefault("TERM", "xterm-256color")
        executable = shutil.which(spec.argv[0], path=env.get("PATH"))
        if executable is None:
            return "failed", None, {"code": "CLI_NOT_INSTALLED",
                                    "message": f"{spec.argv[0]} is not installed on this machine (not on PATH)"}
        self.log("login_started", login_id=self.login_id, provider=self.provider, cli=spec.command)
        master, slave = os.openpty()
        try:
            _configure_terminal(slave)
            proc = subprocess.Popen(
                [executable, *spec.argv[1:]], stdin=slave, stdout=slave, stderr=slave, env=env,
                cwd=str(self.home), start_new_session=True, close_fds=True,
            )
        except OSError:
            os.close(master)
            os.close(slave)
            return "failed", None, {"code": "LOGIN_FAILED", "message": f"{spec.argv[0]} could not be started"}
        os.close(slave)
        try:
            return self._drive(proc, master, spec)
        finally:
            _stop(proc)
            os.close(master)

    def _drive(self, proc: subprocess.Popen, master: int, spec: ProviderCli) -> tuple[str, dict | None, dict | None]:
        deadline = self.clock() + self.timeout
        raw, text = "", ""
        prompt: Prompt | None = None
        code_sent = False
        pending_code: str | None = None
        closed = False
        quiet_after_exit = 0
        while True:
            if self._cancelled.is_set():
                return "failed", None, dict(self._cancel_error)
            if self.clock() >= deadline:
                return "failed", None, {"code": "LOGIN_TIMEOUT", "message": "the login was not completed in 15 minutes"}
            if not closed:
                exited = proc.poll() is not None
                ready, _, _ = select.select([master], [], [], 0.1)
                if ready:
                    try:
                        chunk = os.read(master, 65536)
                    except OSError:  # EIO: every copy of the terminal's other side is closed
                        chunk = b""
                    if chunk:
                        raw = (raw + chunk.decode("utf-8", "replace"))[-MAX_OUTPUT_CHARS:]
                        text = clean(raw)
                    else:
                        closed = True
                elif exited:
                    # Exited and nothing to read for a while: done, though a child of its may still hold
                    # the terminal open. A while, not one select: the kernel passes the last output on late.
                    quiet_after_exit += 1
                    closed = quiet_after_exit >= EXIT_QUIET_POLLS
            if prompt is None:
                prompt = parse_prompt(text, spec.hosts)
                if prompt is not None:
                    self.log("login_awaiting_user", login_id=self.login_id, needs_code=prompt.needs_code,
                             user_code=bool(prompt.user_code))
                    if not self.report(self.command_id, {"status": "running", "output": prompt.output()}):
                        # Nobody will see the prompt (the command is gone, or the cloud unreachable): stop.
                        return "failed", None, {"code": "LOGIN_FAILED", "message": "the prompt could not be relayed"}
            if pending_code is None and not code_sent:
                try:
                    pending_code = self._codes.get_nowait()
                except queue.Empty:
                    pass
            if pending_code is not None and prompt is not None and prompt.needs_code and not closed:
                _write_all(master, pending_code.encode() + b"\r")
                pending_code, code_sent = None, True
                self.log("login_code_entered", login_id=self.login_id)
            if spec.done is not None and code_sent and spec.done.search(text):
                return self._succeeded(spec, text)  # the CLI stays open (an interactive app): we are done
            if closed:
                returncode = proc.poll()
                if returncode is None:  # it closed the terminal but has not exited yet
                    time.sleep(0.05)
                    continue
                if returncode != 0:
                    return "failed", None, {"code": "LOGIN_FAILED",
                                            "message": f"{spec.command} exited with status {returncode}"}
                return self._succeeded(spec, text)

    def _succeeded(self, spec: ProviderCli, text: str) -> tuple[str, dict | None, dict | None]:
        if spec.token is not None:
            match = spec.token.search(text)
            if match is None:
                return "failed", None, {"code": "LOGIN_FAILED",
                                        "message": f"{spec.command} finished without printing a token"}
            record = {"provider": self.provider, "kind": "oauth_token", "token": match.group(0),
                      "source": spec.command, "created_at": int(time.time())}
            cfg.ensure_dir(self.home)
            cfg.write_private(credentials_path(self.home, self.provider), (json.dumps(record) + "\n").encode())
        return "succeeded", {}, None


def _configure_terminal(fd: int) -> None:
    """A wide window (no wrapped URLs) and no echo (the pasted code is not printed back to us)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, TERMINAL_COLUMNS, 0, 0))
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _stop(proc: subprocess.Popen) -> None:
    """Stop the CLI and anything it started (it leads its own session, hence its own process group)."""
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, STOP_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
