"""The API-key validation sandboxes over HTTP on the running local stack: Anthropic, OpenAI and Google
model lists with valid, malformed, missing and revoked keys, each provider's error shape, and faults."""

from __future__ import annotations

import pytest

from relay_cloud.sandbox.model_lists import AnthropicSandbox, GoogleSandbox, OpenAISandbox

ANTHROPIC, OPENAI, GOOGLE = "/_sandbox/anthropic", "/_sandbox/openai", "/_sandbox/google"
VERSION = {"anthropic-version": "2023-06-01"}


@pytest.fixture(autouse=True)
def _clear_faults(local_stack):
    for name in ("anthropic", "openai", "google"):
        local_stack.sandboxes[name]._clear_faults(None)
    yield
    for name in ("anthropic", "openai", "google"):
        local_stack.sandboxes[name]._clear_faults(None)


def anthropic(http, key, **headers):
    return http.get(f"{ANTHROPIC}/v1/models", headers={"x-api-key": key, **VERSION, **headers} if key else VERSION)


def openai(http, key):
    return http.get(f"{OPENAI}/v1/models", headers={"Authorization": f"Bearer {key}"} if key else {})


def google(http, key, *, in_query=False):
    if in_query:
        return http.get(f"{GOOGLE}/v1beta/models", params={"key": key})
    return http.get(f"{GOOGLE}/v1beta/models", headers={"x-goog-api-key": key} if key else {})


def test_stack_points_the_cloud_at_the_sandboxes(local_stack):
    for name in ("ANTHROPIC", "OPENAI", "GOOGLE"):
        assert local_stack.env[f"RELAY_{name}_API_URL"] == f"{local_stack.url}/_sandbox/{name.lower()}"
    from relay_cloud import config

    settings = config.settings()
    assert settings.anthropic_api_url == f"{local_stack.url}{ANTHROPIC}"
    assert settings.openai_api_url == f"{local_stack.url}{OPENAI}"
    assert settings.google_api_url == f"{local_stack.url}{GOOGLE}"


# -- Anthropic ---------------------------------------------------------------------------------------


def test_anthropic_lists_models_for_a_valid_key(http):
    response = anthropic(http, AnthropicSandbox.example_key())
    assert response.status_code == 200 and response.headers["request-id"].startswith("req_")
    body = response.json()
    assert set(body) == {"data", "has_more", "first_id", "last_id"}
    assert body["data"] and all(m["type"] == "model" and set(m) == {"type", "id", "display_name", "created_at"}
                                for m in body["data"])
    assert body["first_id"] == body["data"][0]["id"] and body["last_id"] == body["data"][-1]["id"]
    assert body["has_more"] is False


def test_anthropic_pagination(http):
    key = AnthropicSandbox.example_key()
    first = http.get(f"{ANTHROPIC}/v1/models", params={"limit": 2}, headers={"x-api-key": key, **VERSION}).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    rest = http.get(f"{ANTHROPIC}/v1/models", params={"after_id": first["last_id"], "limit": 100},
                    headers={"x-api-key": key, **VERSION}).json()
    assert rest["has_more"] is False and first["last_id"] not in [m["id"] for m in rest["data"]]
    one = http.get(f"{ANTHROPIC}/v1/models/{first['first_id']}", headers={"x-api-key": key, **VERSION})
    assert one.status_code == 200 and one.json()["id"] == first["first_id"]


@pytest.mark.parametrize("key", [
    "sk-ant-short",
    "sk-" + "a" * 50,  # an OpenAI-shaped key
    "AIza" + "b" * 35,
    "sk-ant-api03-" + "c" * 30 + " x",  # a character real keys never have
])
def test_anthropic_rejects_malformed_keys(http, key):
    response = anthropic(http, key)
    assert response.status_code == 401
    assert response.json() == {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}


def test_anthropic_requires_the_headers(http):
    missing_key = anthropic(http, None)
    assert missing_key.status_code == 401 and missing_key.json()["error"]["type"] == "authentication_error"
    no_version = http.get(f"{ANTHROPIC}/v1/models", headers={"x-api-key": AnthropicSandbox.example_key()})
    assert no_version.status_code == 400 and no_version.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_revoked_key(http):
    key = AnthropicSandbox.example_key()
    assert anthropic(http, key).status_code == 200
    revoked = http.post(f"{ANTHROPIC}/keys/revoke", json={"key": key})
    assert revoked.status_code == 200 and revoked.json() == {"revoked": True}
    response = anthropic(http, key)
    assert response.status_code == 401 and response.json()["error"]["message"] == "invalid x-api-key"
    assert key not in response.text
    assert anthropic(http, AnthropicSandbox.example_key()).status_code == 200
    assert http.post(f"{ANTHROPIC}/keys/revoke", json={}).status_code == 400


# -- OpenAI ------------------------------------------------------------------------------------------


def test_openai_lists_models_for_a_valid_key(http):
    for key in (OpenAISandbox.example_key(), "sk-" + "A1_-" * 10):
        response = openai(http, key)
        assert response.status_code == 200
        body = response.json()
        assert body["object"] == "list" and body["data"]
        assert all(set(m) == {"id", "object", "created", "owned_by"} and m["object"] == "model" for m in body["data"])
        assert all(isinstance(m["created"], int) for m in body["data"])


@pytest.mark.parametrize("key", ["sk-short", "pk-" + "a" * 50, "sk-ant-api03-" + "a" * 60])
def test_openai_rejects_malformed_keys(http, key):
    response = openai(http, key)
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] is None and error["code"] == "invalid_api_key"
    assert key not in response.text


def test_openai_missing_key_and_revoked_key(http):
    missing = openai(http, None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] is None
    key = OpenAISandbox.example_key()
    assert openai(http, key).status_code == 200
    http.post(f"{OPENAI}/keys/revoke", json={"key": key})
    assert openai(http, key).json()["error"]["code"] == "invalid_api_key"


def test_openai_single_model(http):
    key = OpenAISandbox.example_key()
    assert http.get(f"{OPENAI}/v1/models/gpt-4o", headers={"Authorization": f"Bearer {key}"}).json()["id"] == "gpt-4o"
    missing = http.get(f"{OPENAI}/v1/models/gpt-0", headers={"Authorization": f"Bearer {key}"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


# -- Google ------------------------------------------------------------------------------------------


def test_google_lists_models_with_header_or_query_key(http):
    key = GoogleSandbox.example_key()
    assert len(key) == 39
    for response in (google(http, key), google(http, key, in_query=True)):
        assert response.status_code == 200
        models = response.json()["models"]
        assert models and all(m["name"].startswith("models/") and m["displayName"] for m in models)
        assert any(m["name"].startswith("models/gemini-") for m in models)


def test_google_pagination(http):
    key = GoogleSandbox.example_key()
    first = http.get(f"{GOOGLE}/v1beta/models", params={"pageSize": 2}, headers={"x-goog-api-key": key}).json()
    assert len(first["models"]) == 2 and first["nextPageToken"]
    second = http.get(f"{GOOGLE}/v1beta/models", params={"pageSize": 2, "pageToken": first["nextPageToken"]},
                      headers={"x-goog-api-key": key}).json()
    assert {m["name"] for m in second["models"]}.isdisjoint({m["name"] for m in first["models"]})


@pytest.mark.parametrize("key", ["AIza" + "a" * 34, "AIza" + "a" * 36, "BIza" + "a" * 35, "sk-ant-" + "a" * 40])
def test_google_rejects_malformed_keys(http, key):
    response = google(http, key)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "API key not valid. Please pass a valid API key."
    info = error["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" and info["reason"] == "API_KEY_INVALID"


def test_google_missing_and_revoked_key(http):
    missing = google(http, None)
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"
    key = GoogleSandbox.example_key()
    assert google(http, key).status_code == 200
    http.post(f"{GOOGLE}/keys/revoke", json={"key": key})
    assert google(http, key, in_query=True).json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"


# -- faults ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix,call,key", [
    (ANTHROPIC, anthropic, AnthropicSandbox.example_key),
    (OPENAI, openai, OpenAISandbox.example_key),
    (GOOGLE, google, GoogleSandbox.example_key),
])
def test_faults_make_the_upstream_unreachable_then_recover(http, prefix, call, key):
    valid = key()
    queued = http.post(f"{prefix}/_faults", json={"path_contains": "/models", "status": 503, "count": 2})
    assert queued.status_code == 201
    # Control paths are never faulted, even by a fault that matches everything.
    http.post(f"{prefix}/_faults", json={"path_contains": "", "status": 500, "count": 1})
    assert http.post(f"{prefix}/keys/revoke", json={"key": key()}).status_code == 200
    statuses = [call(http, valid).status_code for _ in range(4)]
    assert statuses == [503, 503, 500, 200]


def test_delay_fault(http):
    import time

    http.post(f"{OPENAI}/_faults", json={"path_contains": "/v1/models", "delay_ms": 250})
    started = time.perf_counter()
    assert openai(http, OpenAISandbox.example_key()).status_code == 200
    assert time.perf_counter() - started >= 0.25
