"""API-key validation sandboxes: the model-list endpoints of Anthropic, OpenAI and Google Gemini.

The cloud checks a pasted API key with a non-billable model-list call (SPEC C2). These fakes follow each
provider's documented path, authentication header, list shape and error body:

    /_sandbox/anthropic   GET /v1/models[/{model_id}]   x-api-key + anthropic-version headers;
                          {"data": [{"type": "model", "id", "display_name", "created_at"}], "has_more",
                          "first_id", "last_id"}; limit (1-1000, default 20), before_id, after_id.
                          Bad key → 401 {"type": "error", "error": {"type": "authentication_error",
                          "message": "invalid x-api-key"}}
    /_sandbox/openai      GET /v1/models[/{model}]      Authorization: Bearer;
                          {"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}.
                          Bad key → 401 {"error": {"message", "type": "invalid_request_error",
                          "param": null, "code": "invalid_api_key"}}
    /_sandbox/google      GET /v1beta/models[/{model}]  x-goog-api-key header or ?key=;
                          {"models": [{"name": "models/gemini-...", "displayName", ...}], "nextPageToken"};
                          pageSize (default 50, max 1000), pageToken.
                          Bad key → 400 {"error": {"code": 400, "message": "API key not valid. Please pass a
                          valid API key.", "status": "INVALID_ARGUMENT", "details": [{"@type":
                          "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", ...}]}}

WHICH KEYS ARE VALID. A key is valid when it has the provider's real prefix and length, uses only the
characters real keys use (ASCII letters, digits, ``-`` and ``_``), and has not been revoked through the
control surface:

    anthropic   starts with "sk-ant-", at least 40 characters
    openai      starts with "sk-" (but not "sk-ant-", an Anthropic key), at least 40 characters
    google      "AIza" followed by exactly 35 characters (39 in all)

``<Sandbox>.example_key()`` makes a fresh valid key. No response ever echoes a key, not even masked.

Sandbox control surface (never faulted), per sandbox:
    POST /keys/revoke   {"key"}: that key is invalid from now on (as if deleted in the provider console)
    POST /_faults       the shared fault injection, e.g. {"path_contains": "/models", "status": 503}
"""

from __future__ import annotations

import abc
import re
import secrets
import string
import threading

from relay_cloud.sandbox.base import Request, Response, Sandbox, json_response

_KEY_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_URLSAFE = string.ascii_letters + string.digits + "-_"


def _request_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


class KeyCheckingSandbox(Sandbox, abc.ABC):
    """A provider whose API authenticates with an API key that the sandbox can revoke."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._revoked: set[str] = set()
        self.requests = 0  # authenticated-or-not calls to the model list, for tests
        self.route("POST", "/keys/revoke", self.revoke_key, control=True)

    @abc.abstractmethod
    def key_shape_ok(self, key: str) -> bool:
        """Whether the key has the provider's real prefix and length."""

    def key_valid(self, key: str | None) -> bool:
        if not key or not _KEY_CHARS.match(key) or not self.key_shape_ok(key):
            return False
        with self._lock:
            return key not in self._revoked

    def revoke(self, key: str) -> None:
        with self._lock:
            self._revoked.add(key)

    def revoke_key(self, request: Request) -> Response:
        data = request.json()
        key = data.get("key") if isinstance(data, dict) else None
        if not isinstance(key, str) or not key:
            return json_response({"message": "key is required"}, 400)
        self.revoke(key)
        return json_response({"revoked": True})

    def _count(self) -> None:
        with self._lock:
            self.requests += 1


# -- Anthropic --------------------------------------------------------------------------------------

ANTHROPIC_MODELS = (
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    ("claude-opus-4-20250514", "Claude Opus 4", "2025-05-22T00:00:00Z"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z"),
    ("claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", "2025-02-24T00:00:00Z"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
    ("claude-3-haiku-20240307", "Claude Haiku 3", "2024-03-07T00:00:00Z"),
)


class AnthropicSandbox(KeyCheckingSandbox):
    name = "anthropic"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/v1/models", self.list_models)
        self.route("GET", "/v1/models/{model_id}", self.get_model)

    @staticmethod
    def example_key() -> str:
        return "sk-ant-api03-" + "".join(secrets.choice(_URLSAFE) for _ in range(93)) + "AA"

    def key_shape_ok(self, key: str) -> bool:
        return key.startswith("sk-ant-") and len(key) >= 40

    @staticmethod
    def _error(status: int, kind: str, message: str) -> Response:
        return json_response({"type": "error", "error": {"type": kind, "message": message}}, status,
                             [("request-id", _request_id("req_"))])

    def _auth(self, request: Request) -> Response | None:
        self._count()
        key = request.headers.get("x-api-key")
        if not key:
            return self._error(401, "authentication_error", "x-api-key header is required")
        if not self.key_valid(key):
            return self._error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return self._error(400, "invalid_request_error", "anthropic-version: header is required")
        return None

    @staticmethod
    def _model(entry) -> dict:
        model_id, display_name, created_at = entry
        return {"type": "model", "id": model_id, "display_name": display_name, "created_at": created_at}

    def list_models(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        try:
            limit = int(request.arg("limit", "20") or 20)
        except ValueError:
            return self._error(400, "invalid_request_error", "limit: Input should be a valid integer")
        if not 1 <= limit <= 1000:
            return self._error(400, "invalid_request_error", "limit: Input should be between 1 and 1000")
        ids = [m[0] for m in ANTHROPIC_MODELS]
        models = list(ANTHROPIC_MODELS)
        after, before = request.arg("after_id"), request.arg("before_id")
        if after and before:
            return self._error(400, "invalid_request_error", "Only one of before_id and after_id may be given")
        if after:
            if after not in ids:
                return self._error(400, "invalid_request_error", "after_id: invalid model id")
            page = models[ids.index(after) + 1:][:limit]
            has_more = ids.index(after) + 1 + limit < len(models)
        elif before:
            if before not in ids:
                return self._error(400, "invalid_request_error", "before_id: invalid model id")
            start = max(0, ids.index(before) - limit)
            page = models[start:ids.index(before)]
            has_more = start > 0
        else:
            page, has_more = models[:limit], limit < len(models)
        data = [self._model(m) for m in page]
        return json_response({
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }, headers=[("request-id", _request_id("req_"))])

    def get_model(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        for entry in ANTHROPIC_MODELS:
            if entry[0] == request.params["model_id"]:
                return json_response(self._model(entry))
        return self._error(404, "not_found_error", f"model: {request.params['model_id']}")


# -- OpenAI -----------------------------------------------------------------------------------------

OPENAI_MODELS = (
    ("gpt-5", 1754425777, "system"),
    ("gpt-5-mini", 1754425928, "system"),
    ("gpt-5-codex", 1757527818, "system"),
    ("gpt-4.1", 1744316542, "system"),
    ("gpt-4o", 1715367049, "system"),
    ("gpt-4o-mini", 1721172741, "system"),
    ("o3", 1744225308, "system"),
    ("o4-mini", 1744225351, "system"),
    ("text-embedding-3-small", 1705948997, "system"),
)


class OpenAISandbox(KeyCheckingSandbox):
    name = "openai"

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", "/v1/models", self.list_models)
        self.route("GET", "/v1/models/{model}", self.get_model)

    @staticmethod
    def example_key() -> str:
        return "sk-proj-" + "".join(secrets.choice(_URLSAFE) for _ in range(156))

    def key_shape_ok(self, key: str) -> bool:
        return key.startswith("sk-") and not key.startswith("sk-ant-") and len(key) >= 40

    @staticmethod
    def _error(status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> Response:
        return json_response({"error": {"message": message, "type": kind, "param": param, "code": code}}, status,
                             [("x-request-id", _request_id("req_"))])

    def _auth(self, request: Request) -> Response | None:
        self._count()
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return self._error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
                "username) if you're accessing the API from your browser and are prompted for a username and "
                "password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            )
        if not self.key_valid(key.strip()):
            # OpenAI echoes a masked key here; the sandbox echoes none (nothing secret in responses).
            return self._error(
                401,
                "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return None

    @staticmethod
    def _model(entry) -> dict:
        model_id, created, owned_by = entry
        return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}

    def list_models(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        return json_response({"object": "list", "data": [self._model(m) for m in OPENAI_MODELS]},
                             headers=[("x-request-id", _request_id("req_"))])

    def get_model(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        for entry in OPENAI_MODELS:
            if entry[0] == request.params["model"]:
                return json_response(self._model(entry))
        return self._error(404, f"The model '{request.params['model']}' does not exist", code="model_not_found",
                           param="model")


# -- Google Gemini ----------------------------------------------------------------------------------

GOOGLE_MODELS = (
    ("gemini-2.5-pro", "Gemini 2.5 Pro", "Stable release (June 17th, 2025) of Gemini 2.5 Pro", "2.5", 1048576, 65536),
    ("gemini-2.5-flash", "Gemini 2.5 Flash", "Stable version of Gemini 2.5 Flash", "001", 1048576, 65536),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", "Stable version of Gemini 2.5 Flash-Lite", "001", 1048576, 65536),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", "Gemini 2.0 Flash", "2.0", 1048576, 8192),
    ("gemini-2.0-flash-lite", "Gemini 2.0 Flash-Lite", "Gemini 2.0 Flash-Lite", "2.0", 1048576, 8192),
    ("text-embedding-004", "Text Embedding 004", "Obtain a distributed representation of a text.", "004", 2048, 1),
)


class GoogleSandbox(KeyCheckingSandbox):
    name = "google"

    def __init__(self) -> None:
        super().__init__()
        for version in ("v1beta", "v1"):
            self.route("GET", f"/{version}/models", self.list_models)
            self.route("GET", f"/{version}/models/{{model}}", self.get_model)

    @staticmethod
    def example_key() -> str:
        return "AIza" + "".join(secrets.choice(_URLSAFE) for _ in range(35))

    def key_shape_ok(self, key: str) -> bool:
        return key.startswith("AIza") and len(key) == 39

    @staticmethod
    def _error(code: int, message: str, status: str, details: list | None = None) -> Response:
        error = {"code": code, "message": message, "status": status}
        if details is not None:
            error["details"] = details
        return json_response({"error": error}, code)

    def _auth(self, request: Request) -> Response | None:
        self._count()
        key = request.headers.get("x-goog-api-key") or request.arg("key")
        if not key:
            return self._error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). Please use "
                "API Key or other form of API consumer identity to call this API.",
                "PERMISSION_DENIED",
            )
        if not self.key_valid(key):
            return self._error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": "API key not valid. Please pass a valid API key.",
                },
            ])
        return None

    @staticmethod
    def _model(entry) -> dict:
        model_id, display_name, description, version, input_limit, output_limit = entry
        model = {
            "name": f"models/{model_id}",
            "version": version,
            "displayName": display_name,
            "description": description,
            "inputTokenLimit": input_limit,
            "outputTokenLimit": output_limit,
        }
        if model_id.startswith("gemini"):
            model |= {
                "supportedGenerationMethods": ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"],
                "temperature": 1,
                "topP": 0.95,
                "topK": 64,
                "maxTemperature": 2,
                "thinking": model_id.startswith("gemini-2.5"),
            }
        else:
            model["supportedGenerationMethods"] = ["embedContent"]
        return model

    def list_models(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        try:
            size = int(request.arg("pageSize", "50") or 50)
            start = int(request.arg("pageToken", "0") or 0)
        except ValueError:
            return self._error(400, "Invalid pageSize or pageToken.", "INVALID_ARGUMENT")
        size, start = min(max(size, 1), 1000), max(start, 0)
        page = GOOGLE_MODELS[start:start + size]
        body: dict = {"models": [self._model(m) for m in page]}
        if start + size < len(GOOGLE_MODELS):
            body["nextPageToken"] = str(start + size)
        return json_response(body)

    def get_model(self, request: Request) -> Response:
        denied = self._auth(request)
        if denied:
            return denied
        for entry in GOOGLE_MODELS:
            if entry[0] == request.params["model"]:
                return json_response(self._model(entry))
        return self._error(404, f"models/{request.params['model']} is not found for API version v1beta, or is not "
                           "supported for generateContent.", "NOT_FOUND")

