"""``relay-cloud link | unlink | status`` against respx-mocked endpoints, with an injected clock and sleep
so every RFC 8628 outcome runs instantly."""

from __future__ import annotations

import base64
import io
import os
import stat
from urllib.parse import parse_qs

import httpx
import pytest

from relay_cloud.cli import config as cfg
from relay_cloud.cli import link, status, unlink
from relay_cloud.cli.main import build_parser

CLOUD = "http://127.0.0.1:8787"
DEVICE = f"{CLOUD}/api/daemons/link/device"
TOKEN = f"{CLOUD}/api/daemons/link/token"
SELF = f"{CLOUD}/api/daemons/self"
AGENTS = f"{CLOUD}/api/daemons/agents"
KEY = "rly_d_abc123_S3CRETS3CRETS3CRET"
DEVICE_CODE = "DEVICECODE-0123456789"


class FakeClock:
    """``sleep`` advances ``now``; the waits are recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def device_answer(**overrides) -> dict:
    answer = {
        "device_code": DEVICE_CODE, "user_code": "BCDF-GHJK",
        "verification_uri": f"{CLOUD}/dashboard/link",
        "verification_uri_complete": f"{CLOUD}/dashboard/link?user_code=BCDF-GHJK",
        "expires_in": 600, "interval": 5,
    }
    answer.update(overrides)
    return answer


def oauth_error(code: str, status_code: int = 400) -> httpx.Response:
    return httpx.Response(status_code, json={"error": code, "error_description": f"{code} described"})


def granted() -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": KEY, "token_type": "Bearer", "daemon_id": "d_abc123", "scope": "daemon"},
        headers={"Cache-Control": "no-store"},
    )


def auth(**overrides) -> link.DeviceAuthorization:
    values = dict(device_code=DEVICE_CODE, user_code="BCDF-GHJK", verification_uri=f"{CLOUD}/dashboard/link",
                  verification_uri_complete="", expires_in=600, interval=5)
    values.update(overrides)
    return link.DeviceAuthorization(**values)


def poll(respx_mock, responses, **auth_overrides):
    clock = FakeClock()
    route = respx_mock.post(TOKEN).mock(side_effect=responses)
    with httpx.Client(base_url=CLOUD) as http:
        try:
            result = link.poll_for_key(http, auth(**auth_overrides), sleep=clock.sleep, clock=clock)
        except link.LinkError as exc:
            result = exc
    return result, clock, route


# --- the device request ---------------------------------------------------------------------------------


def test_device_request_sends_the_contracts_fields(respx_mock):
    route = respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=device_answer()))
    private, public = link.generate_key_pair()
    with httpx.Client(base_url=CLOUD) as http:
        answer = link.request_device_code(http, machine_id="m-1", name="laptop", public_key=public)
    assert answer.user_code == "BCDF-GHJK" and answer.interval == 5 and answer.expires_in == 600
    assert DEVICE_CODE not in repr(answer)
    form = parse_qs(route.calls.last.request.content.decode())
    assert form == {"client_id": ["relay-cloud-cli"], "machine_id": ["m-1"], "name": ["laptop"],
                    "public_key": [public]}
    assert "=" not in public and len(base64.urlsafe_b64decode(public + "=")) == 32
    assert len(base64.urlsafe_b64decode(private + "=")) == 32 and private != public


def test_device_request_errors_are_clear(respx_mock):
    respx_mock.post(DEVICE).mock(return_value=oauth_error("invalid_request"))
    with httpx.Client(base_url=CLOUD) as http, pytest.raises(link.LinkError, match="invalid_request"):
        link.request_device_code(http, machine_id="m-1", name="laptop", public_key="x")
    respx_mock.post(DEVICE).mock(side_effect=httpx.ConnectError("refused"))
    with httpx.Client(base_url=CLOUD) as http, pytest.raises(link.LinkError, match="cannot reach"):
        link.request_device_code(http, machine_id="m-1", name="laptop", public_key="x")
    respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json={"user_code": "X"}))
    with httpx.Client(base_url=CLOUD) as http, pytest.raises(link.LinkError, match="unexpected"):
        link.request_device_code(http, machine_id="m-1", name="laptop", public_key="x")


def test_missing_interval_defaults_to_five_seconds(respx_mock):
    body = device_answer()
    del body["interval"]
    respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=body))
    with httpx.Client(base_url=CLOUD) as http:
        assert link.request_device_code(http, machine_id="m", name="n", public_key="p").interval == 5


# --- polling (RFC 8628 §3.4–3.5) ------------------------------------------------------------------------


def test_pending_then_granted_waits_the_interval_before_every_poll(respx_mock):
    result, clock, route = poll(respx_mock, [oauth_error("authorization_pending")] * 2 + [granted()])
    assert result == link.LinkedKey(daemon_id="d_abc123", api_key=KEY)
    assert KEY not in repr(result)
    assert clock.sleeps == [5, 5, 5]
    form = parse_qs(route.calls.last.request.content.decode())
    assert form == {"grant_type": ["urn:ietf:params:oauth:grant-type:device_code"],
                    "device_code": [DEVICE_CODE], "client_id": ["relay-cloud-cli"]}


def test_slow_down_adds_five_seconds_to_this_and_every_later_poll(respx_mock):
    responses = [oauth_error("authorization_pending"), oauth_error("slow_down"), oauth_error("authorization_pending"),
                 oauth_error("slow_down"), oauth_error("authorization_pending"), oauth_error("authorization_pending"),
                 granted()]
    result, clock, _ = poll(respx_mock, responses)
    assert isinstance(result, link.LinkedKey)
    assert clock.sleeps == [5, 5, 10, 10, 15, 15, 15]


def test_the_server_interval_is_honoured(respx_mock):
    _, clock, _ = poll(respx_mock, [oauth_error("authorization_pending"), granted()], interval=8)
    assert clock.sleeps == [8, 8]


@pytest.mark.parametrize(("code", "message"), [
    ("access_denied", "denied"),
    ("expired_token", "expired"),
    ("invalid_grant", "invalid_grant"),
    ("unsupported_grant_type", "unsupported_grant_type"),
    ("invalid_client", "invalid_client"),
])
def test_terminal_errors_stop_polling(respx_mock, code, message):
    result, clock, route = poll(respx_mock, [oauth_error("authorization_pending"), oauth_error(code)])
    assert isinstance(result, link.LinkError) and message in str(result)
    assert route.call_count == 2


def test_an_unexpected_status_stops_with_the_status(respx_mock):
    result, _, route = poll(respx_mock, [httpx.Response(500, text="boom")])
    assert isinstance(result, link.LinkError) and "HTTP 500" in str(result)
    assert route.call_count == 1


def test_network_errors_back_off_exponentially_then_recover(respx_mock):
    responses = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.Response(503),
                 oauth_error("authorization_pending"), granted()]
    result, clock, _ = poll(respx_mock, responses)
    assert isinstance(result, link.LinkedKey)
    # interval, then 2x, 4x, 8x after three consecutive failures; a real answer resets to the interval
    assert clock.sleeps == [5, 10, 20, 40, 5]


def test_the_backoff_is_capped(respx_mock):
    responses = [httpx.ConnectError("refused")] * 6 + [granted()]
    _, clock, _ = poll(respx_mock, responses)
    assert clock.sleeps == [5, 10, 20, 40, 60, 60, 60]


def test_network_errors_are_retried_until_the_code_expires(respx_mock):
    result, clock, route = poll(respx_mock, httpx.ConnectError("refused"), expires_in=100)
    assert isinstance(result, link.LinkError) and "expired" in str(result)
    assert sum(clock.sleeps) == pytest.approx(100)  # never waits past the expiry
    assert route.call_count == 4  # at 5, 15, 35, 75 s; the next wait ends at the expiry


def test_pending_until_expiry_stops_without_polling_after_it(respx_mock):
    result, clock, route = poll(respx_mock, lambda request: oauth_error("authorization_pending"), expires_in=12)
    assert isinstance(result, link.LinkError) and "expired" in str(result)
    assert clock.sleeps == [5, 5, 2]
    assert route.call_count == 2


@pytest.mark.parametrize("body", [
    {"access_token": KEY},
    {"access_token": "rly_other_S3CRET", "daemon_id": "d_abc123"},
    {"access_token": "rly_d_abc123_", "daemon_id": "d_abc123"},
    ["not", "an", "object"],
])
def test_a_malformed_grant_is_refused(respx_mock, body):
    result, _, _ = poll(respx_mock, [httpx.Response(200, json=body)])
    assert isinstance(result, link.LinkError)


# --- link as a command ----------------------------------------------------------------------------------


def run_link(tmp_path, *, out=None, **kwargs):
    clock = FakeClock()
    out = out if out is not None else io.StringIO()
    err = io.StringIO()
    code = link.run(cloud=kwargs.pop("cloud", CLOUD), home=tmp_path / "home", out=out, err=err,
                    sleep=kwargs.pop("sleep", clock.sleep), clock=clock, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_link_shows_the_code_and_saves_a_private_config(respx_mock, tmp_path):
    respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=device_answer()))
    respx_mock.post(TOKEN).mock(side_effect=[oauth_error("authorization_pending"), granted()])
    code, out, err = run_link(tmp_path, name="laptop")
    assert code == 0, err
    assert "BCDF-GHJK" in out and f"{CLOUD}/dashboard/link" in out
    assert "Linked laptop as d_abc123" in out
    saved = cfg.load(tmp_path / "home")
    assert saved.api_key == KEY and saved.daemon_id == "d_abc123" and saved.name == "laptop"
    assert saved.cloud_url == CLOUD and saved.machine_id
    assert stat.S_IMODE(os.stat(tmp_path / "home" / "config.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "home").st_mode) == 0o700
    assert KEY not in out + err and saved.private_key not in out + err
    assert "S3CRET" not in out + err
    # the public key sent matches the private key stored
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    sent = parse_qs(respx_mock.calls[0].request.content.decode())["public_key"][0]
    private = X25519PrivateKey.from_private_bytes(base64.urlsafe_b64decode(saved.private_key + "="))
    assert link.b64url(private.public_key().public_bytes_raw()) == sent


def test_link_prints_a_qr_code_only_on_a_tty(respx_mock, tmp_path):
    respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=device_answer()))
    respx_mock.post(TOKEN).mock(return_value=granted())
    _, tty_out, _ = run_link(tmp_path / "a", out=TTY(), name="laptop")
    assert "█" in tty_out and "\033[1mBCDF-GHJK" in tty_out
    _, no_qr, _ = run_link(tmp_path / "b", out=TTY(), name="laptop", qr=False)
    assert "█" not in no_qr
    _, piped, _ = run_link(tmp_path / "c", name="laptop")
    assert "█" not in piped and "\033[" not in piped


def test_link_defaults_the_name_to_the_hostname(respx_mock, tmp_path, monkeypatch):
    monkeypatch.setattr(link.socket, "gethostname", lambda: "devbox.example.com")
    route = respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=device_answer()))
    respx_mock.post(TOKEN).mock(return_value=granted())
    assert run_link(tmp_path)[0] == 0
    assert parse_qs(route.calls.last.request.content.decode())["name"] == ["devbox"]


def test_link_refuses_to_overwrite_an_existing_link_without_force(respx_mock, tmp_path):
    respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=device_answer()))
    respx_mock.post(TOKEN).mock(return_value=granted())
    assert run_link(tmp_path, name="laptop")[0] == 0
    before = (tmp_path / "home" / "config.json").read_bytes()
    calls = len(respx_mock.calls)

    code, _, err = run_link(tmp_path, name="other")
    assert code == 1 and "already linked as laptop (d_abc123)" in err and "--force" in err
    assert len(respx_mock.calls) == calls  # nothing sent
    assert (tmp_path / "home" / "config.json").read_bytes() == before

    respx_mock.post(TOKEN).mock(return_value=httpx.Response(200, json={
        "access_token": "rly_d_new_N3WS3CRET", "token_type": "Bearer", "daemon_id": "d_new", "scope": "daemon"}))
    code, out, _ = run_link(tmp_path, name="other", force=True)
    assert code == 0
    assert "stays linked on the server" in out and "d_abc123" in out
    assert not any(call.request.method == "DELETE" for call in respx_mock.calls)  # the old one is not unlinked
    assert cfg.load(tmp_path / "home").daemon_id == "d_new"


@pytest.mark.parametrize(("outcome", "message"), [("access_denied", "denied"), ("expired_token", "expired")])
def test_link_failures_exit_1_and_save_nothing(respx_mock, tmp_path, outcome, message):
    respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=device_answer()))
    respx_mock.post(TOKEN).mock(return_value=oauth_error(outcome))
    code, _, err = run_link(tmp_path, name="laptop")
    assert code == 1 and message in err
    assert cfg.load(tmp_path / "home") is None


def test_link_reports_network_retries_on_stderr(respx_mock, tmp_path):
    respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=device_answer()))
    respx_mock.post(TOKEN).mock(side_effect=[httpx.ConnectError("refused"), granted()])
    code, _, err = run_link(tmp_path, name="laptop")
    assert code == 0 and "retrying in 10 s" in err


def test_ctrl_c_while_waiting_exits_130_cleanly(respx_mock, tmp_path):
    respx_mock.post(DEVICE).mock(return_value=httpx.Response(200, json=device_answer()))

    def interrupted(seconds):
        raise KeyboardInterrupt

    code, _, err = run_link(tmp_path, name="laptop", sleep=interrupted)
    assert code == 130 and "cancelled" in err and "Traceback" not in err
    assert cfg.load(tmp_path / "home") is None


@pytest.mark.parametrize(("cloud", "ok"), [
    ("http://127.0.0.1:8787/", True), ("http://localhost:9000", True), ("https://relay.example.com", True),
    ("http://relay.example.com", False), ("ftp://127.0.0.1", False), ("https://u:p@relay.example.com", False),
])
def test_cloud_url_validation(cloud, ok):
    from relay_cloud.cli._http import CloudURLError, normalize_cloud_url

    if ok:
        assert not normalize_cloud_url(cloud).endswith("/")
    else:
        with pytest.raises(CloudURLError):
            normalize_cloud_url(cloud)


def test_cloud_defaults_to_relay_cloud_url(monkeypatch):
    from relay_cloud.cli._http import default_cloud_url

    monkeypatch.delenv("RELAY_CLOUD_URL", raising=False)
    assert default_cloud_url() == "http://127.0.0.1:8787"
    monkeypatch.setenv("RELAY_CLOUD_URL", "https://relay.example.com")
    assert default_cloud_url() == "https://relay.example.com"


def test_bad_name_and_plain_http_are_refused_before_any_request(respx_mock, tmp_path):
    code, _, err = run_link(tmp_path, name="x" * 65)
    assert code == 1 and "--name" in err
    code, _, err = run_link(tmp_path, name="laptop", cloud="http://relay.example.com")
    assert code == 1 and "https" in err
    assert not respx_mock.calls


def test_parser_wires_the_verbs():
    parser = build_parser()
    args = parser.parse_args(["link", "--cloud", CLOUD, "--name", "laptop", "--no-qr", "--force"])
    assert (args.cloud, args.name, args.qr, args.force) == (CLOUD, "laptop", False, True)
    assert parser.parse_args(["link"]).qr is True
    assert parser.parse_args(["unlink"]).handler.__name__ == "_unlink"
    assert parser.parse_args(["status"]).handler.__name__ == "_status"


# --- unlink and status ----------------------------------------------------------------------------------


@pytest.fixture
def linked_home(tmp_path):
    home = tmp_path / "home"
    cfg.save(cfg.Config(cloud_url=CLOUD, daemon_id="d_abc123", api_key=KEY, machine_id="m-1", name="laptop",
                        private_key="UFJJVkFURQ"), home)
    return home


def test_unlink_revokes_then_deletes(respx_mock, linked_home):
    route = respx_mock.delete(SELF).mock(return_value=httpx.Response(204))
    out, err = io.StringIO(), io.StringIO()
    assert unlink.run(home=linked_home, out=out, err=err) == 0
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert "Unlinked laptop (d_abc123)" in out.getvalue()
    assert cfg.load(linked_home) is None


def test_unlink_of_an_already_revoked_key_deletes_and_says_so(respx_mock, linked_home):
    respx_mock.delete(SELF).mock(return_value=httpx.Response(401, json={"error": "revoked",
                                                                        "code": "DAEMON_KEY_REVOKED"}))
    out = io.StringIO()
    assert unlink.run(home=linked_home, out=out, err=io.StringIO()) == 0
    assert "already revoked" in out.getvalue()
    assert cfg.load(linked_home) is None


@pytest.mark.parametrize("answer", [httpx.ConnectError("refused"), httpx.Response(500), httpx.Response(404)])
def test_unlink_keeps_the_config_when_the_cloud_did_not_revoke(respx_mock, linked_home, answer):
    respx_mock.delete(SELF).mock(side_effect=[answer])
    err = io.StringIO()
    assert unlink.run(home=linked_home, out=io.StringIO(), err=err) == 1
    assert "unchanged" in err.getvalue()
    assert cfg.load(linked_home) is not None


def test_unlink_when_not_linked(tmp_path, respx_mock):
    err = io.StringIO()
    assert unlink.run(home=tmp_path, out=io.StringIO(), err=err) == 1
    assert "not linked" in err.getvalue() and not respx_mock.calls


def test_status_accepted(respx_mock, linked_home):
    route = respx_mock.get(AGENTS).mock(return_value=httpx.Response(200, json={"daemons": [
        {"daemon_id": "d_abc123", "name": "laptop", "presence": "online", "agents": [{"name": "a"}]},
        {"daemon_id": "d_2", "name": "desk", "presence": "offline", "agents": []},
    ]}))
    out = io.StringIO()
    assert status.run(home=linked_home, out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    for expected in (CLOUD, "d_abc123", "laptop", "m-1", "accepted (2 machines, 1 agent)"):
        assert expected in text
    assert KEY not in text and "S3CRET" not in text
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert [call.request.method for call in respx_mock.calls] == ["GET"]  # read-only


def test_status_revoked(respx_mock, linked_home):
    respx_mock.get(AGENTS).mock(return_value=httpx.Response(401, json={"error": "x", "code": "DAEMON_KEY_REVOKED"}))
    out = io.StringIO()
    assert status.run(home=linked_home, out=out, err=io.StringIO()) == 1
    assert "revoked or unknown — run relay-cloud link" in out.getvalue()
    assert cfg.load(linked_home) is not None  # status never changes anything


@pytest.mark.parametrize("answer", [httpx.ConnectError("refused"), httpx.Response(503)])
def test_status_unknown_when_the_cloud_cannot_answer(respx_mock, linked_home, answer):
    respx_mock.get(AGENTS).mock(side_effect=[answer])
    out = io.StringIO()
    assert status.run(home=linked_home, out=out, err=io.StringIO()) == 1
    assert "unknown" in out.getvalue()


def test_status_not_linked(tmp_path, respx_mock):
    out = io.StringIO()
    assert status.run(home=tmp_path, out=out, err=io.StringIO()) == 1
    assert "Not linked" in out.getvalue() and not respx_mock.calls


def test_status_warns_about_a_readable_config(respx_mock, linked_home):
    respx_mock.get(AGENTS).mock(return_value=httpx.Response(200, json={"daemons": []}))
    os.chmod(linked_home / "config.json", 0o644)
    err = io.StringIO()
    assert status.run(home=linked_home, out=io.StringIO(), err=err) == 0
    assert "readable by other users" in err.getvalue()
