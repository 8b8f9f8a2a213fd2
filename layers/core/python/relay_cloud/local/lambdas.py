"""Run the project's Lambda handlers inside moto's simple Lambda backend (local runtime only).

moto executes Step Functions state machines for real, but its Lambda backend without Docker
(``moto.awslambda_simple``) answers every invoke by echoing the payload. ``install()`` wraps
``LambdaSimpleBackend.invoke`` so that an invoke of a *registered* function (by name or ARN) imports the
handler named in ``functions.manifest`` lazily, calls it with the JSON payload and a Lambda-like context,
and answers its JSON result. A handler that raises is answered the way Lambda does: payload
``{"errorType": <exception class name>, "errorMessage": ...}`` and the response header
``x-amz-function-error: Unhandled``; moto's Step Functions then names the task's error after
``errorType``, so a state's ``Retry``/``Catch`` on ``["UpstreamUnavailable"]`` matches as in AWS.
Unregistered functions keep moto's default behaviour.

The handler runs in the moto server's request thread, in this process: its boto3/pynamodb calls go
back to the same moto through ``AWS_ENDPOINT_URL`` set by the local stack.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping

log = logging.getLogger("relay_cloud.local.lambdas")

FUNCTION_PREFIX = "relay-cloud-"
MAX_ERROR_MESSAGE = 256
GENERIC_ERROR_MESSAGE = "The function failed; see its logs"

_lock = threading.Lock()
_original_invoke = None
_registry: dict[str, "_Registered"] = {}


def function_name(spec_name: str) -> str:
    """The local (and deployed-by-convention) Lambda name of a manifest function."""
    return f"{FUNCTION_PREFIX}{spec_name}"


def manifest_registry() -> dict[str, tuple[str, int, int]]:
    """{function name: (handler, memory_mb, timeout_s)} for every function of ``functions.manifest``."""
    from relay_cloud.local.repo import ensure_functions_importable

    ensure_functions_importable()
    from functions.manifest import FUNCTIONS

    return {function_name(spec.name): (spec.handler, spec.memory_mb, spec.timeout_s) for spec in FUNCTIONS}


class _Registered:
    def __init__(self, name: str, handler: str, memory_mb: int = 512, timeout_s: int = 30) -> None:
        module, _, attribute = handler.rpartition(".")
        if not module or not attribute:
            raise ValueError(f"handler {handler!r} is not 'module.function'")
        self.name = name
        self.handler = handler
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self._module, self._attribute = module, attribute
        self._callable = None
        # A Lambda instance handles one event at a time; Powertools keeps per-invocation state globally.
        self.instance_lock = threading.Lock()

    def callable(self):
        if self._callable is None:
            self._callable = getattr(importlib.import_module(self._module), self._attribute)
        return self._callable


class LambdaContext:
    """What the Lambda runtime passes as ``context`` (the attributes Powertools reads)."""

    def __init__(self, registered: _Registered, arn: str) -> None:
        self.function_name = registered.name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = registered.memory_mb
        self.invoked_function_arn = arn
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{registered.name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + registered.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _name_of(function_name_or_arn: str) -> str:
    """``NAME``, ``NAME:qualifier``, ``arn:aws:lambda:region:account:function:NAME[:qualifier]`` → NAME."""
    if function_name_or_arn.startswith("arn:"):
        parts = function_name_or_arn.split(":")
        return parts[6] if len(parts) > 6 else function_name_or_arn
    return function_name_or_arn.split(":", 1)[0]


def safe_error_message(exc: BaseException) -> str:
    """Our typed errors carry messages written to be public (never a secret); anything else may carry
    whatever it was built from (a URL with a code, a token), so only a generic sentence goes out."""
    from relay_cloud.domain.errors import RelayError

    if isinstance(exc, RelayError):
        return str(exc.message)[:MAX_ERROR_MESSAGE]
    return GENERIC_ERROR_MESSAGE


def _payload(body) -> object:
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    if not body:
        return {}
    return json.loads(body)


def invoke_registered(registered: _Registered, arn: str, body, response_headers: dict) -> bytes:
    """Call the handler as the Lambda runtime would; errors become Lambda's Unhandled error payload."""
    try:
        event = _payload(body)
        handler = registered.callable()
        with registered.instance_lock:
            result = handler(event, LambdaContext(registered, arn))
        return json.dumps(result, separators=(",", ":")).encode("utf-8")
    except Exception as exc:  # noqa: BLE001 - every failure of a function is an Unhandled function error
        log.warning(json.dumps({"msg": "local function failed", "function": registered.name,
                                "error": type(exc).__name__}))
        response_headers["x-amz-function-error"] = "Unhandled"
        error = {"errorType": type(exc).__name__, "errorMessage": safe_error_message(exc)}
        return json.dumps(error, separators=(",", ":")).encode("utf-8")


def _invoke(self, function_name, qualifier, body, headers, response_headers):
    registered = _registry.get(_name_of(str(function_name)))
    if registered is None:
        return _original_invoke(self, function_name, qualifier, body, headers, response_headers)
    # As in AWS, only a function that exists can be invoked (UnknownFunctionException → 404 otherwise).
    function = self.get_function(registered.name, qualifier)
    return invoke_registered(registered, function.function_arn, body, response_headers)


def register(name: str, handler: str, *, memory_mb: int = 512, timeout_s: int = 30) -> None:
    with _lock:
        _registry[name] = _Registered(name, handler, memory_mb, timeout_s)


def registered() -> dict[str, str]:
    """{function name: handler} currently registered."""
    return {name: entry.handler for name, entry in _registry.items()}


def installed() -> bool:
    return _original_invoke is not None


def install(registry: Mapping[str, str | tuple[str, int, int]] | None = None) -> None:
    """Register handlers (default: every function of the manifest) and wrap moto's simple backend.

    Idempotent; ``uninstall()`` restores moto's own ``invoke`` and forgets the registrations."""
    global _original_invoke
    from moto.awslambda_simple.models import LambdaSimpleBackend

    entries = manifest_registry() if registry is None else registry
    with _lock:
        for name, entry in entries.items():
            handler, memory_mb, timeout_s = (entry, 512, 30) if isinstance(entry, str) else entry
            _registry[name] = _Registered(name, handler, memory_mb, timeout_s)
        if _original_invoke is None:
            _original_invoke = LambdaSimpleBackend.invoke
            LambdaSimpleBackend.invoke = _invoke


def uninstall() -> None:
    global _original_invoke
    from moto.awslambda_simple.models import LambdaSimpleBackend

    with _lock:
        if _original_invoke is not None:
            LambdaSimpleBackend.invoke = _original_invoke
            _original_invoke = None
        _registry.clear()
