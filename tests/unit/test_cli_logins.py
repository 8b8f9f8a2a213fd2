"""The provider login runner against the stand-in CLIs in tests/standins (what ``claude setup-token``,
``codex login --device-auth`` and ``gemini`` print), each in a real pseudo-terminal: the prompt is parsed
from coloured TUI output, the pasted code reaches the CLI, the Claude token stays on this machine (0600)
and in no report, and every failure is an error code with a short message of our own."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from relay_cloud.cli import logins

STANDINS = Path(__file__).resolve().parents[1] / "standins"


class Reports:
    """The cloud's side of the reports; ``accept=False`` plays a cloud that refuses them (the command gone)."""

    def __init__(self, accept: bool = True) -> None:
        self.items: list[tuple[str, dict]] = []
        self.prompted = threading.Event()
        self.accept = accept

    def __call__(self, command_id: str, body: dict) -> bool:
        self.items.append((command_id, json.loads(json.dumps(body))))
        if body["status"] == "running":
            self.prompted.set()
        return self.accept

    def text(self) -> str:
        return json.dumps(self.items)


def runner(provider: str, home: Path, reports: Reports, *, path: str | None = None, timeout: float = 30,
           **env) -> logins.LoginRunner:
    environment = dict(os.environ, PATH=path if path is not None else f"{STANDINS}{os.pathsep}{os.environ['PATH']}",
                       **env)
    return logins.LoginRunner(command_id="cmd_1", login_id="login_1", provider=provider, report=reports,
                              home=home, env=environment, timeout=timeout)


def prompted_then_finished(run: logins.LoginRunner, reports: Reports, code: str | None = None) -> None:
    run.start()
    assert reports.prompted.wait(20), reports.items
    if code is not None:
        run.submit_code(code)
    assert run.wait(20), "the login did not finish"


def test_claude_setup_token_relays_the_url_takes_the_code_and_keeps_the_token_on_the_machine(tmp_path):
    reports = Reports()
    run = runner("anthropic", tmp_path, reports, STANDIN_EXPECT_CODE="pasted-code#state")
    prompted_then_finished(run, reports, "pasted-code#state")

    (_, running), (_, final) = reports.items
    assert running["status"] == "running"
    prompt = running["output"]
    assert set(prompt) == {"stage", "url", "needs_code"} and prompt["stage"] == "awaiting_user"
    assert prompt["needs_code"] is True
    assert prompt["url"].startswith("https://claude.ai/oauth/authorize?code=true&client_id=")
    assert "\x1b" not in prompt["url"] and "&state=" in prompt["url"]
    assert final == {"status": "succeeded", "output": {}}

    saved = tmp_path / "credentials" / "anthropic.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    token = json.loads(saved.read_text())["token"]
    assert token.startswith("sk-ant-oat01-") and len(token) > 60
    assert logins.load_token(tmp_path, "anthropic") == token
    assert token not in reports.text() and "sk-ant" not in reports.text()


def test_codex_device_auth_relays_the_url_and_user_code_and_needs_no_code(tmp_path):
    reports = Reports()
    prompted_then_finished(runner("openai", tmp_path, reports, STANDIN_DELAY="0.3"), reports)
    (_, running), (_, final) = reports.items
    assert running["output"]["url"] == "https://auth.openai.com/codex/device"
    assert running["output"]["needs_code"] is False
    user_code = running["output"]["user_code"]
    assert len(user_code) == 10 and user_code[4] == "-" and user_code.replace("-", "").isalnum()
    assert final == {"status": "succeeded", "output": {}}
    assert not (tmp_path / "credentials").exists()  # codex keeps its own auth file


def test_gemini_runs_with_no_browser_and_takes_the_pasted_code(tmp_path):
    reports = Reports()
    prompted_then_finished(runner("google", tmp_path, reports), reports, "4/0Ab-authorization-code")
    (_, running), (_, final) = reports.items
    assert running["output"]["needs_code"] is True and "user_code" not in running["output"]
    assert running["output"]["url"].startswith("https://accounts.google.com/o/oauth2/v2/auth?")
    assert final == {"status": "succeeded", "output": {}}


def test_a_cli_not_on_path_is_cli_not_installed(tmp_path):
    reports = Reports()
    run = runner("anthropic", tmp_path, reports, path=str(tmp_path / "empty-bin"))
    run.start()
    assert run.wait(10)
    assert reports.items == [("cmd_1", {"status": "failed", "error": {
        "code": "CLI_NOT_INSTALLED", "message": "claude is not installed on this machine (not on PATH)"}})]


@pytest.mark.parametrize("provider,code", [("anthropic", "a-code"), ("openai", None), ("google", "g-code")])
def test_a_cli_that_fails_is_login_failed_with_a_short_reason_and_no_output(tmp_path, provider, code):
    reports = Reports()
    prompted_then_finished(runner(provider, tmp_path, reports, STANDIN_FAIL="1", STANDIN_DELAY="0.2"), reports, code)
    _, final = reports.items[-1]
    assert final["status"] == "failed" and final["error"]["code"] == "LOGIN_FAILED"
    assert final["error"]["message"].endswith("exited with status 1")
    for printed in ("OAuth error", "Error logging in", "Failed to authenticate", "Paste code", "one-time code"):
        assert printed not in reports.text()  # none of the CLI's own text
    assert not (tmp_path / "credentials").exists()


def test_a_wrong_code_fails_the_claude_login_and_keeps_nothing(tmp_path):
    reports = Reports()
    run = runner("anthropic", tmp_path, reports, STANDIN_EXPECT_CODE="right")
    prompted_then_finished(run, reports, "wrong")
    assert reports.items[-1][1]["error"]["code"] == "LOGIN_FAILED"
    assert logins.load_token(tmp_path, "anthropic") is None


def test_cancel_stops_the_cli_and_reports_login_cancelled(tmp_path):
    reports = Reports()
    run = runner("anthropic", tmp_path, reports)
    run.start()
    assert reports.prompted.wait(20)
    run.cancel()
    assert run.wait(15)
    assert reports.items[-1][1] == {"status": "failed", "error": {"code": "LOGIN_CANCELLED",
                                                                "message": "the login was cancelled"}}


def test_a_prompt_the_cloud_refuses_stops_the_cli_at_once(tmp_path):
    reports = Reports(accept=False)  # e.g. the login command expired: nobody would ever see the prompt
    run = runner("anthropic", tmp_path, reports)  # its own timeout is 30 s: finishing within 15 is not it
    run.start()
    assert run.wait(15)
    assert [body["status"] for _, body in reports.items] == ["running", "failed"]
    assert reports.items[-1][1]["error"] == {"code": "LOGIN_FAILED", "message": "the prompt could not be relayed"}
    assert logins.load_token(tmp_path, "anthropic") is None


def test_a_login_not_completed_in_time_is_login_timeout(tmp_path):
    reports = Reports()
    run = runner("anthropic", tmp_path, reports, timeout=1.5)
    started = time.monotonic()
    run.start()
    assert run.wait(15)
    assert time.monotonic() - started < 10
    assert [body["status"] for _, body in reports.items] == ["running", "failed"]
    assert reports.items[-1][1]["error"]["code"] == "LOGIN_TIMEOUT"


def test_an_unknown_provider_is_refused(tmp_path):
    reports = Reports()
    run = runner("github", tmp_path, reports)
    run.start()
    assert run.wait(5)
    assert reports.items[0][1]["error"]["code"] == "PROVIDER_NOT_SUPPORTED"


def test_prompt_parsing_strips_escapes_and_accepts_only_the_providers_https_hosts():
    hosts = logins.PROVIDER_CLIS["anthropic"].hosts
    tui = ("\x1b[2GBrowser\x1b[10Gdidn't open?\r\n\x1b]8;id=a;https://claude.ai/oauth/authorize?x=1\x07"
           "\x1b[38;5;246mhttps://claude.ai/oauth/authorize?x=1\x1b[39m\x1b]8;;\x07\r\nPaste code here if prompted > ")
    text = logins.clean(tui)
    assert "Browser didn't open?" in text
    assert logins.parse_prompt(text, hosts) == logins.Prompt("https://claude.ai/oauth/authorize?x=1", None, True)
    # http, a look-alike host and a URL without its prompt are not relayed
    assert logins.parse_prompt("http://claude.ai/oauth/authorize\nPaste code here if prompted >", hosts) is None
    assert logins.parse_prompt("https://claude.ai.evil.example/x\nPaste code here if prompted >", hosts) is None
    assert logins.parse_prompt("https://claude.ai/oauth/authorize?x=1\n", hosts) is None
    codex = logins.clean("2. Enter this one-time code \x1b[90m(expires in 15 minutes)\x1b[0m\r\n"
                         "   \x1b[94mABCD-EFGHJ\x1b[0m\r\n https://auth.openai.com/codex/device\r\n")
    assert logins.parse_prompt(codex, logins.PROVIDER_CLIS["openai"].hosts) == logins.Prompt(
        "https://auth.openai.com/codex/device", "ABCD-EFGHJ", False)
