"""Commands the cloud queues for a daemon (docs/design/daemon-messaging.md): ids, types, limits, and
the validation of a daemon's result report. No I/O."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from relay_cloud.domain.errors import ValidationFailed

PROVIDER_LOGIN = "provider_login"  # args {login_id, provider}
PROVIDER_LOGIN_CODE = "provider_login_code"  # args {login_id, sealed}
PROVIDER_LOGIN_CANCEL = "provider_login_cancel"  # args {login_id}
COMMAND_TYPES = frozenset({PROVIDER_LOGIN, PROVIDER_LOGIN_CODE, PROVIDER_LOGIN_CANCEL})

MAX_QUEUED = 32  # live commands per daemon (they ride in the daemon item, returned by every heartbeat)
MAX_OUTPUT_BYTES = 8 * 1024  # compact JSON of a report's output
MAX_ERROR_MESSAGE = 512
DEFAULT_TTL_SECONDS = 600
MAX_TTL_SECONDS = 3600
RESULT_RETENTION_SECONDS = 7 * 24 * 3600  # a finished command's result (what makes reports idempotent)

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
FINAL_STATUSES = frozenset({SUCCEEDED, FAILED})
REPORT_STATUSES = frozenset({RUNNING}) | FINAL_STATUSES

COMMAND_ID_PATTERN = re.compile(r"cmd_[0-9a-f]{32}")
_ERROR_CODE = re.compile(r"[A-Z0-9_]{1,64}")


def new_command_id(now_ms: int) -> str:
    """'cmd_' + 12 hex of the enqueue time in ms + 20 random hex: ids sort in enqueue order."""
    return f"cmd_{now_ms:012x}{secrets.token_hex(10)}"


def new_command(type_: str, args: dict, *, now_ms: int, ttl_seconds: int) -> dict:
    """The queued entry: ``{command_id, type, args, created_at, expires_at}`` (seconds)."""
    if type_ not in COMMAND_TYPES:
        raise ValidationFailed("Unknown command type", field="type")
    if not isinstance(args, dict):
        raise ValidationFailed("args must be an object", field="args")
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or not 0 < ttl_seconds <= MAX_TTL_SECONDS:
        raise ValidationFailed(f"ttl_seconds must be 1-{MAX_TTL_SECONDS}", field="ttl_seconds")
    created_at = now_ms // 1000
    return {"command_id": new_command_id(now_ms), "type": type_, "args": dict(args), "created_at": created_at,
            "expires_at": created_at + ttl_seconds}


def live(command: dict, now: int) -> bool:
    return int(command.get("expires_at", 0)) > now


MAX_OUTPUT_DEPTH = 16  # DynamoDB refuses documents nested deeper than 32 levels (the entry adds some)


def _storable(value: object, depth: int) -> bool:
    """Whether DynamoDB can store the JSON value as a document: bounded nesting, numbers of at most 38
    significant digits (a report it refuses would fail as a 500 and be retried forever)."""
    if isinstance(value, dict):
        return depth > 0 and all(_storable(v, depth - 1) for v in value.values())
    if isinstance(value, list):
        return depth > 0 and all(_storable(v, depth - 1) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return len(repr(abs(value)).split("e")[0].replace(".", "").strip("0")) <= 38 and abs(value) < 1e125


@dataclass(frozen=True)
class Report:
    status: str
    output: dict | None
    error: dict | None  # {"code", "message"}; only with status failed


def validate_report(body: object) -> Report:
    """``{"status": running|succeeded|failed, "output"?: object (<= 8 KiB compact JSON),
    "error"?: {"code": <= 64 [A-Z0-9_], "message"?: <= 512}}``; the error only on a failed report."""
    if not isinstance(body, dict):
        raise ValidationFailed("The body must be a JSON object", field="body")
    status = body.get("status")
    if status not in REPORT_STATUSES:
        raise ValidationFailed("status must be running, succeeded or failed", field="status")
    output = body.get("output")
    if output is not None:
        if not isinstance(output, dict):
            raise ValidationFailed("output must be an object", field="output")
        try:
            size = len(json.dumps(output, separators=(",", ":"), allow_nan=False).encode())
        except ValueError:
            raise ValidationFailed("output must be plain JSON (no NaN or infinity)", field="output") from None
        if size > MAX_OUTPUT_BYTES:
            raise ValidationFailed(f"output must be at most {MAX_OUTPUT_BYTES} bytes of compact JSON",
                                   field="output")
        if not _storable(output, MAX_OUTPUT_DEPTH):
            raise ValidationFailed(f"output must nest at most {MAX_OUTPUT_DEPTH} levels and hold numbers of at "
                                   "most 38 digits", field="output")
    error = body.get("error")
    if error is not None:
        if status != FAILED:
            raise ValidationFailed("error is only reported with status failed", field="error")
        if not isinstance(error, dict) or not isinstance(error.get("code"), str) or not _ERROR_CODE.fullmatch(
                error["code"]):
            raise ValidationFailed("error.code must be 1-64 characters of A-Z 0-9 _", field="error.code")
        message = error.get("message", "")
        if not isinstance(message, str) or len(message) > MAX_ERROR_MESSAGE:
            raise ValidationFailed(f"error.message must be at most {MAX_ERROR_MESSAGE} characters",
                                   field="error.message")
        error = {"code": error["code"], "message": message}
    return Report(status, output, error)
