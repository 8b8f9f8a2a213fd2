"""Cross-machine messages between the daemons of one owner (SPEC C4; docs/design/daemon-messaging.md,
"Messages"): send to (daemon, agent), receive with a one-minute lease, ack by id. At-least-once: what is
not acked within its lease is delivered again with the same id; the receiver de-duplicates.

Message bodies are the users' data: stored and returned, never logged or put in an error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from relay_cloud.domain.daemons import DaemonPrincipal
from relay_cloud.domain.errors import NotFound, RateLimited
from relay_cloud.domain.messages import (
    INBOX_FULL,
    MAX_PENDING,
    MESSAGE_TTL_SECONDS,
    NO_TARGET,
    Message,
    message_view,
    new_message_id,
    validate_ack,
    validate_receive,
    validate_send,
)


@dataclass
class MessageService:
    messages: object
    clock: Callable[[], float] = time.time
    inbox_cap: int = MAX_PENDING  # tests lower it; production keeps the contract's 1,000

    def send(self, caller: DaemonPrincipal, body: dict) -> dict:
        """POST /api/daemons/messages -> the 201 body ``{message_id, expires_at}``."""
        wanted = validate_send(body)
        clock = self.clock()
        now = int(clock)
        message = Message(
            message_id=new_message_id(int(clock * 1000)), from_daemon_id=caller.daemon_id,
            from_agent=wanted.from_agent, to_daemon_id=wanted.to_daemon_id, to_agent=wanted.to_agent,
            body=wanted.body, sent_at=now, expires_at=now + MESSAGE_TTL_SECONDS,
        )
        outcome = self.messages.send(message, owner_id=caller.user_id, cap=self.inbox_cap)
        # The counter cannot see TTL deletions: before refusing, recount (at most once a minute per
        # inbox) and try once more.
        if outcome == INBOX_FULL and self.messages.recount(message.to_daemon_id, now=now):
            outcome = self.messages.send(message, owner_id=caller.user_id, cap=self.inbox_cap)
        if outcome == NO_TARGET:  # unknown, not linked yet, revoked, or another owner's: all look the same
            raise NotFound("No such machine", code="DAEMON_NOT_FOUND")
        if outcome == INBOX_FULL:
            raise RateLimited(f"The machine's inbox holds {self.inbox_cap} unacknowledged messages; retry later",
                              code="INBOX_FULL")
        return {"message_id": message.message_id, "expires_at": message.expires_at}

    def receive(self, caller: DaemonPrincipal, params: dict | None) -> dict:
        """GET /api/daemons/messages?limit= -> the caller's own pending messages, each leased for a minute."""
        limit = validate_receive(params)
        messages = self.messages.receive(caller.daemon_id, now=int(self.clock()), limit=limit)
        return {"messages": [message_view(message) for message in messages]}

    def ack(self, caller: DaemonPrincipal, body: dict) -> dict:
        """POST /api/daemons/messages/ack -> ``{"acked": [...], "unknown": [...]}``."""
        message_ids = validate_ack(body)
        acked, unknown = self.messages.ack(caller.daemon_id, message_ids, now=int(self.clock()))
        return {"acked": acked, "unknown": unknown}
