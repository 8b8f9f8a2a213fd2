"""The local API Gateway adapter: genuine HTTP API v2.0 events in, API Gateway's response rules out,
and the running local stack serving the API, the static site and nothing outside web/."""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import httpx
import pytest

from functions.manifest import ScheduleSpec
from relay_cloud.local.gateway import Gateway, build_event, map_result, match_route
from relay_cloud.local.server import LocalServer, StaticSite

# -- the event builder -------------------------------------------------------------------------------


def test_event_is_payload_v2_with_lower_cased_headers_and_cookies_split_out():
    event = build_event(
        "get",
        "/api/auth/github/callback?code=abc&state=xyz&tag=a&tag=b",
        [
            ("Host", "127.0.0.1:8787"),
            ("User-Agent", "pytest"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("Cookie", "relay_session=s1; relay_prelogin=p1"),
            ("Cookie", "theme=dark"),
        ],
        route_key="ANY /api/auth/{proxy+}",
        path_parameters={"proxy": "github/callback"},
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /api/auth/{proxy+}"
    assert event["rawPath"] == "/api/auth/github/callback"
    assert event["rawQueryString"] == "code=abc&state=xyz&tag=a&tag=b"
    assert event["queryStringParameters"] == {"code": "abc", "state": "xyz", "tag": "a,b"}
    assert event["cookies"] == ["relay_session=s1", "relay_prelogin=p1", "theme=dark"]
    assert "cookie" not in event["headers"]
    assert all(name == name.lower() for name in event["headers"])
    assert event["headers"]["x-forwarded-for"] == "10.0.0.1,10.0.0.2"
    assert event["pathParameters"] == {"proxy": "github/callback"}
    assert event["isBase64Encoded"] is False and "body" not in event
    ctx = event["requestContext"]
    assert ctx["http"] == {
        "method": "GET", "path": "/api/auth/github/callback", "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1", "userAgent": "pytest",
    }
    assert ctx["routeKey"] == "ANY /api/auth/{proxy+}" and ctx["stage"] == "$default"
    assert ctx["domainName"] == "127.0.0.1:8787" and ctx["accountId"] and ctx["apiId"]
    assert ctx["requestId"] and abs(ctx["timeEpoch"] / 1000 - time.time()) < 5 and ctx["time"]


def test_event_omits_cookies_and_query_parameters_when_there_are_none():
    event = build_event("GET", "/health", {"Host": "localhost"})
    assert "cookies" not in event and "queryStringParameters" not in event and "pathParameters" not in event
    assert event["rawQueryString"] == ""


def test_text_bodies_stay_text_and_binary_bodies_are_base64():
    as_json = build_event("POST", "/api/x", {"Content-Type": "application/json"}, b'{"a":1}')
    assert as_json["body"] == '{"a":1}' and as_json["isBase64Encoded"] is False
    form = build_event("POST", "/api/x", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1&b=%20")
    assert form["body"] == "a=1&b=%20" and form["isBase64Encoded"] is False
    binary = bytes(range(256))
    raw = build_event("POST", "/api/x", {"Content-Type": "application/octet-stream"}, binary)
    assert raw["isBase64Encoded"] is True and base64.b64decode(raw["body"]) == binary


def test_route_keys_are_chosen_like_api_gateway():
    assert match_route("GET", "/health").route_key == "GET /health"
    plan = match_route("GET", "/api/billing/plans/pro")
    assert plan.route_key == "GET /api/billing/plans/{tier}" and plan.path_parameters == {"tier": "pro"}
    assert match_route("GET", "/api/billing/plans").route_key == "GET /api/billing/plans"
    greedy = match_route("POST", "/api/auth/logout")
    assert greedy.route_key == "ANY /api/auth/{proxy+}" and greedy.path_parameters == {"proxy": "logout"}
    assert match_route("POST", "/api/billing/plans") is None
    assert match_route("GET", "/api/nowhere") is None


# -- the response mapper -----------------------------------------------------------------------------


def test_result_with_status_maps_headers_cookies_and_base64_body():
    response = map_result({
        "statusCode": 302,
        "headers": {"Location": "/dashboard", "Content-Type": "image/png"},
        "cookies": ["a=1; Path=/; HttpOnly", "b=2; Path=/"],
        "body": base64.b64encode(b"\x89PNG").decode(),
        "isBase64Encoded": True,
    })
    assert response.status == 302
    assert ("Location", "/dashboard") in response.headers
    assert [v for k, v in response.headers if k == "Set-Cookie"] == ["a=1; Path=/; HttpOnly", "b=2; Path=/"]
    assert response.body == b"\x89PNG"


def test_result_without_status_code_is_json_with_200():
    response = map_result({"hello": "world"})
    assert response.status == 200
    assert dict(response.headers)["Content-Type"] == "application/json"
    assert json.loads(response.body) == {"hello": "world"}
    assert map_result("plain").body == b'"plain"'


def test_gateway_answers_unknown_routes_with_a_json_404():
    response = Gateway().handle("GET", "/api/does-not-exist", [("Host", "localhost")])
    assert response.status == 404
    assert json.loads(response.body) == {"error": "No such route", "code": "NOT_FOUND"}


def test_access_log_has_one_json_line_without_query_string_headers_or_cookies(caplog):
    caplog.set_level(logging.INFO, logger="relay_cloud.local.access")
    Gateway().handle(
        "GET", "/api/billing/plans?code=SECRETCODE123&state=SECRETSTATE456",
        [("Host", "localhost"), ("Authorization", "Bearer SECRETBEARER789"), ("Cookie", "relay_session=SECRETCOOKIE")],
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "relay_cloud.local.access"]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["path"] == "/api/billing/plans" and entry["status"] == 200
    assert entry["route_key"] == "GET /api/billing/plans" and entry["function"] == "billing"
    everything = caplog.text
    for secret in ("SECRETCODE123", "SECRETSTATE456", "SECRETBEARER789", "SECRETCOOKIE", "code="):
        assert secret not in everything


def test_access_log_redacts_tokens_in_paths(caplog):
    caplog.set_level(logging.INFO, logger="relay_cloud.local.access")
    Gateway().handle("POST", "/api/invites/token/INVITESECRET/accept", [("Host", "localhost")])
    assert "INVITESECRET" not in caplog.text


# -- static files ------------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path):
    web = tmp_path / "web"
    (web / "assets").mkdir(parents=True)
    (web / "index.html").write_text("<h1>home</h1>")
    (web / "pricing.html").write_text("<h1>pricing</h1>")
    (web / "dashboard.html").write_text("<h1>dashboard</h1>")
    (web / "assets" / "app.js").write_text("console.log(1)")
    (web / "assets" / "style.css").write_text("body{}")
    (web / "assets" / "logo.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside web")
    return StaticSite(web)


def test_static_routes(site):
    assert site.serve("GET", "/")[2] == b"<h1>home</h1>"
    assert site.serve("GET", "/pricing")[2] == b"<h1>pricing</h1>"
    assert site.serve("GET", "/dashboard")[2] == b"<h1>dashboard</h1>"
    assert site.serve("GET", "/dashboard/workspaces/ws_1")[2] == b"<h1>dashboard</h1>"
    types = {path: dict(site.serve("GET", path)[1])["Content-Type"] for path in
             ("/", "/assets/app.js", "/assets/style.css", "/assets/logo.svg")}
    assert types == {
        "/": "text/html; charset=utf-8", "/assets/app.js": "text/javascript; charset=utf-8",
        "/assets/style.css": "text/css; charset=utf-8", "/assets/logo.svg": "image/svg+xml",
    }


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt",
    "/assets", "/assets/", "/nope", "/..%2fsecret.txt", "//etc/passwd",
])
def test_static_refuses_traversal_listings_and_unknown_paths(site, path):
    status, headers, body = site.serve("GET", path)
    assert status == 404 and b"outside web" not in body
    assert dict(headers)["Content-Type"].startswith("text/html")


def test_static_only_reads(site):
    assert site.serve("POST", "/")[0] == 405


def _raw_get(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_server_refuses_raw_traversal_targets(site):
    server = LocalServer(0, web_dir=site.root)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for target in ("/../pyproject.toml", "/../secret.txt", "/assets/../../secret.txt", "//secret.txt"):
            reply = _raw_get(server.port, target)
            assert reply.startswith(b"HTTP/1.1 404"), target
            assert b"outside web" not in reply
        assert _raw_get(server.port, "/").split(b"\r\n\r\n", 1)[1] == b"<h1>home</h1>"
    finally:
        server.shutdown()
        server.server_close()


# -- through the running stack -----------------------------------------------------------------------


def test_health(http):
    response = http.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["x-content-type-options"] == "nosniff"


def test_plan_catalog(http):
    response = http.get("/api/billing/plans")
    assert response.status_code == 200
    assert len(response.json()["plans"]) == 4
    missing = http.get("/api/billing/plans/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "PLAN_NOT_FOUND"


def test_concurrent_requests_to_different_functions_each_see_their_own_event(local_stack):
    """Powertools keeps the current event on a class shared by every function of the process; a request
    must never be answered from another's event (a daemon's POST once read a concurrent GET's empty body)."""
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": "relay-cloud-cli",
             "device_code": "no-such-device-code"}

    def post_body(_):  # daemons function: answers from the JSON body, invalid_request without it
        with httpx.Client(base_url=local_stack.url, timeout=30) as client:
            return [client.post("/api/daemons/link/token", json=grant).json().get("error") for _ in range(15)]

    def get_without_body(_):  # meta and billing functions, no body at all
        with httpx.Client(base_url=local_stack.url, timeout=30) as client:
            return [client.get(path).status_code for _ in range(15) for path in ("/health", "/api/billing/plans")]

    with ThreadPoolExecutor(8) as pool:
        posts = [pool.submit(post_body, i) for i in range(4)]
        gets = [pool.submit(get_without_body, i) for i in range(4)]
        answers = [error for future in posts for error in future.result()]
        statuses = {status for future in gets for status in future.result()}
    assert answers == ["invalid_grant"] * 60
    assert statuses == {200}


def test_unknown_api_route_is_json_404(http):
    response = http.get("/api/nothing/here")
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND"


def test_root_serves_html(http):
    response = http.get("/")
    assert response.headers["content-type"].startswith("text/html")
    assert response.status_code in (200, 404)  # 404 page until web/index.html exists
    assert b"<html" in response.content.lower() or b"<!doctype" in response.content.lower()


def test_running_stack_refuses_traversal(local_stack, http):
    for target in ("/../pyproject.toml", "/%2e%2e/pyproject.toml", "/assets/..%2f..%2fpyproject.toml"):
        reply = _raw_get(int(local_stack.url.rsplit(":", 1)[1]), target)
        assert reply.startswith(b"HTTP/1.1 404"), target
        assert b"[build-system]" not in reply


def test_stack_environment_points_at_moto_and_the_sandbox(local_stack):
    env = local_stack.env
    assert env["AWS_ENDPOINT_URL"] == local_stack.moto_url and env["RELAY_ENV"] == "local"
    assert env["RELAY_PUBLIC_URL"] == local_stack.url
    assert env["RELAY_GITHUB_OAUTH_URL"] == env["RELAY_GITHUB_API_URL"] == f"{local_stack.url}/_sandbox/github"
    from moto.core.config import default_user_config

    assert default_user_config["stepfunctions"]["execute_state_machine"] is True
    assert default_user_config["lambda"]["use_docker"] is False


def test_ttl_reaper_deletes_expired_items(local_stack, http):
    client = boto3.client("dynamodb", endpoint_url=local_stack.moto_url, region_name="us-east-1")
    table = local_stack.env["RELAY_TABLE_NAME"]
    now = int(time.time())
    client.put_item(TableName=table, Item={"pk": {"S": "REAPER#1"}, "sk": {"S": "old"}, "expires_at": {"N": str(now - 10)}})
    client.put_item(TableName=table, Item={"pk": {"S": "REAPER#1"}, "sk": {"S": "new"}, "expires_at": {"N": str(now + 600)}})
    client.put_item(TableName=table, Item={"pk": {"S": "REAPER#1"}, "sk": {"S": "forever"}})
    assert local_stack.ticker.reap_expired() >= 1
    left = client.query(TableName=table, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "REAPER#1"}})
    assert sorted(item["sk"]["S"] for item in left["Items"]) == ["forever", "new"]


def test_ticker_runs_a_schedule_with_an_eventbridge_event():
    from relay_cloud.local.ticker import Ticker

    seen = []
    import types
    import sys

    module = types.ModuleType("relay_test_schedule_target")
    module.handler = lambda event, context: seen.append((event, context.function_name)) or "done"
    sys.modules[module.__name__] = module
    try:
        ticker = Ticker(schedules=(ScheduleSpec("sweep", 5, "relay_test_schedule_target.handler"),))
        assert ticker.run_schedule("sweep", "relay_test_schedule_target.handler") == "done"
    finally:
        del sys.modules[module.__name__]
    event, _name = seen[0]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"][0].endswith(":rule/relay-cloud-sweep")


def test_sandboxes_are_refused_outside_local(monkeypatch):
    from relay_cloud.local.stack import LocalStack, LocalStackError

    monkeypatch.setenv("RELAY_ENV", "production")
    with pytest.raises(LocalStackError, match="local only"):
        LocalStack(port=0).start()


def test_no_sandbox_needs_real_github_credentials(monkeypatch):
    from relay_cloud.local.stack import LocalStack, LocalStackError

    monkeypatch.delenv("RELAY_ENV", raising=False)
    monkeypatch.delenv("RELAY_GITHUB_CLIENT_ID", raising=False)
    monkeypatch.delenv("RELAY_GITHUB_CLIENT_SECRET", raising=False)
    with pytest.raises(LocalStackError, match="RELAY_GITHUB_CLIENT_ID"):
        LocalStack(port=0, sandbox=False).start()
