"""Cross-machine messages between the daemons of one owner (SPEC C4; docs/design/daemon-messaging.md,
"Messages"): the limits, message ids, and validation of send / receive / ack input. No I/O.

Delivery is at-least-once: a received message is leased for a minute and delivered again (same id, higher
delivery count) unless acked; the receiving daemon de-duplicates by id.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from relay_cloud.domain.daemons import DAEMON_ID_PATTERN, is_agent_name
from relay_cloud.domain.errors import RelayError, ValidationFailed

MAX_BODY_BYTES = 64 * 1024  # of the body's compact JSON, UTF-8
MAX_PENDING = 1_000  # messages waiting in one daemon's inbox (the counter's cap)
MESSAGE_TTL_SECONDS = 24 * 3600  # both the TTL and the expiry reads apply
LEASE_SECONDS = 60  # a received message is not handed out again before this, unless acked
DEFAULT_RECEIVE_LIMIT = 50
MAX_RECEIVE_LIMIT = 100
RECEIVE_SCAN_LIMIT = 1_000  # items one receive reads at most (leased and expired ones are skipped)
MAX_ACK_IDS = 100
RECOUNT_INTERVAL_SECONDS = 60  # an inbox's counter is recounted at most this often

# What the store answers to a send (the service turns the last two into 404 and 429).
SENT, NO_TARGET, INBOX_FULL = "sent", "no_target", "inbox_full"

MESSAGE_ID_PATTERN = re.compile(r"msg_[0-9a-f]{32}")


class MessageTooLarge(RelayError):
    status = 413
    code = "MESSAGE_TOO_LARGE"


def new_message_id(now_ms: int) -> str:
    """'msg_' + 12 hex of the send time in ms + 20 random hex: ids sort in send order (the inbox is read
    in id order) and cannot be guessed."""
    return f"msg_{now_ms:012x}{secrets.token_hex(10)}"


@dataclass(frozen=True)
class Message:
    message_id: str
    from_daemon_id: str
    from_agent: str | None
    to_daemon_id: str
    to_agent: str
    body: str  # the compact JSON of what was sent
    sent_at: int
    expires_at: int
    deliveries: int = 0
    lease_until: int | None = None

    def expired(self, now: int) -> bool:
        return now >= self.expires_at


def message_view(message: Message) -> dict:
    """A message as GET /api/daemons/messages returns it."""
    return {
        "message_id": message.message_id,
        "from": {"daemon_id": message.from_daemon_id, "agent": message.from_agent},
        "to": {"daemon_id": message.to_daemon_id, "agent": message.to_agent},
        "body": json.loads(message.body),
        "sent_at": message.sent_at,
        "expires_at": message.expires_at,
        "delivery_count": message.deliveries,
        "lease_expires_at": message.lease_until,
    }


# -- input ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SendInput:
    to_daemon_id: str
    to_agent: str
    from_agent: str | None
    body: str  # compact JSON, at most MAX_BODY_BYTES in UTF-8


def _invalid(message: str, field: str) -> ValidationFailed:
    return ValidationFailed(message, field=field)


def _agent(value: object, field: str) -> str:
    if not is_agent_name(value):
        raise _invalid("Agent names are 1-64 characters of A-Z a-z 0-9 . _ -", field)
    return value


def compact_json(value: object) -> str:
    """The compact JSON of a message body; ValidationFailed when it is not JSON that can be stored
    (NaN or Infinity, unpaired surrogates, nesting too deep to encode)."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")  # a lone surrogate (JSON allows "\\ud800") cannot be stored as UTF-8
    except (ValueError, TypeError, RecursionError):
        raise _invalid("body must be JSON of finite numbers and valid Unicode text", "body") from None
    return text


def validate_send(payload: dict) -> SendInput:
    """``{"to": {"daemon_id", "agent"}, "from_agent"?, "body": <any JSON but null>}``."""
    to = payload.get("to")
    if not isinstance(to, dict):
        raise _invalid('to must be {"daemon_id", "agent"}', "to")
    daemon_id = to.get("daemon_id")
    if not isinstance(daemon_id, str) or not DAEMON_ID_PATTERN.fullmatch(daemon_id):
        raise _invalid("to.daemon_id must be a daemon id (dmn_...)", "to.daemon_id")
    to_agent = _agent(to.get("agent"), "to.agent")
    from_agent = payload.get("from_agent")
    if from_agent is not None:
        from_agent = _agent(from_agent, "from_agent")
    if payload.get("body") is None:  # absent, or null: nothing to deliver
        raise _invalid("body is required (any JSON value but null)", "body")
    body = compact_json(payload["body"])
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise MessageTooLarge(f"A message body is at most {MAX_BODY_BYTES} bytes of compact JSON",
                              field="body", max_bytes=MAX_BODY_BYTES)
    return SendInput(daemon_id, to_agent, from_agent, body)


def validate_receive(params: dict | None) -> int:
    """The ``limit`` of a receive: 1-100, default 50 (other query parameters are ignored)."""
    raw = (params or {}).get("limit")
    if raw is None:
        return DEFAULT_RECEIVE_LIMIT
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9]{1,3}", raw) or not 1 <= int(raw) <= MAX_RECEIVE_LIMIT:
        raise _invalid(f"limit must be an integer from 1 to {MAX_RECEIVE_LIMIT}", "limit")
    return int(raw)


def validate_ack(payload: dict) -> list[str]:
    """``{"message_ids": [1..100 message ids]}`` -> the ids without repeats, in the order given."""
    ids = payload.get("message_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ACK_IDS:
        raise _invalid(f"message_ids must be a list of 1 to {MAX_ACK_IDS} message ids", "message_ids")
    for index, message_id in enumerate(ids):
        if not isinstance(message_id, str) or not MESSAGE_ID_PATTERN.fullmatch(message_id):
            raise _invalid("Each message id is msg_ and 32 hex digits", f"message_ids[{index}]")
    return list(dict.fromkeys(ids))
