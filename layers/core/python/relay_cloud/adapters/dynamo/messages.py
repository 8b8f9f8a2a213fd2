"""DynamoDB repository of cross-machine messages (docs/design/daemon-messaging.md, "Messages").

A daemon's inbox is the partition ``INBOX#<daemon_id>``: its pending messages (``MSG#<message_id>``, so a
Query reads them in send order) and a counter (``COUNTER``) whose conditional ADD enforces the cap. The
counter moves only in the same transaction as the messages it counts (send, ack, purge of expired ones),
so the one thing that makes it drift is TTL deleting messages behind its back: it can only be too high,
never too low, and ``recount`` heals it.
"""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException
from pynamodb.transactions import TransactWrite

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import DaemonItem, InboxCounterItem, MessageItem
from relay_cloud.adapters.dynamo.transactions import commit
from relay_cloud.domain.errors import DependencyUnavailable
from relay_cloud.domain.messages import (
    INBOX_FULL,
    LEASE_SECONDS,
    NO_TARGET,
    RECEIVE_SCAN_LIMIT,
    RECOUNT_INTERVAL_SECONDS,
    SENT,
    Message,
)

REMOVE_BATCH = 50  # deletes per transaction, plus the counter's update
TRANSACTION_ATTEMPTS = 3  # a transaction cancelled by a concurrent one on the same counter is retried
RECEIVE_PAGE_SIZE = 100  # items per Query page: a receive of a few messages does not read a megabyte

# Positions in the send transaction (pynamodb sends condition checks, then puts, then updates).
_TARGET, _MESSAGE, _COUNTER = 0, 1, 2


def _write(build) -> set[int]:
    return commit(build, attempts=TRANSACTION_ATTEMPTS, busy_message="The inbox is busy, please retry")


def _counter(daemon_id: str) -> InboxCounterItem:
    return InboxCounterItem(keys.inbox_pk(daemon_id), keys.INBOX_COUNTER_SK)


def _counter_add(delta: int) -> list:
    # UpdateItem may create the counter, and pynamodb's defaults apply only to puts: name its type.
    return [InboxCounterItem.pending.add(delta), InboxCounterItem.type.set("INBOX_COUNTER")]


def _message(item: MessageItem, daemon_id: str) -> Message:
    return Message(
        message_id=item.message_id,
        from_daemon_id=item.from_daemon_id,
        from_agent=item.from_agent,
        to_daemon_id=daemon_id,
        to_agent=item.to_agent,
        body=item.body,
        sent_at=int(item.sent_at),
        expires_at=int(item.expires_at),
        deliveries=int(item.deliveries or 0),
        lease_until=int(item.lease_until) if item.lease_until is not None else None,
    )


class MessageRepository:
    def send(self, message: Message, *, owner_id: str, cap: int) -> str:
        """One transaction: the target is a daemon of ``owner_id`` with a key that was not revoked
        (ConditionCheck), the message is new, and the inbox counter is below ``cap`` (ADD 1).
        Returns SENT, NO_TARGET (whatever else failed too) or INBOX_FULL."""
        item = MessageItem(
            keys.inbox_pk(message.to_daemon_id), keys.message_sk(message.message_id),
            message_id=message.message_id, from_daemon_id=message.from_daemon_id, from_agent=message.from_agent,
            to_agent=message.to_agent, body=message.body, sent_at=message.sent_at, deliveries=0,
            expires_at=message.expires_at,
        )

        def build(tx: TransactWrite) -> None:
            tx.condition_check(DaemonItem, keys.daemon_pk(message.to_daemon_id), keys.DAEMON_SK,
                               condition=(DaemonItem.user_id == owner_id) & DaemonItem.key_hash.exists()
                               & DaemonItem.revoked_at.does_not_exist())
            tx.save(item, condition=MessageItem.pk.does_not_exist())
            tx.update(_counter(message.to_daemon_id), actions=_counter_add(1),
                      condition=InboxCounterItem.pending.does_not_exist() | (InboxCounterItem.pending < cap))

        failed = _write(build)
        if not failed:
            return SENT
        if _TARGET in failed:
            return NO_TARGET
        if _COUNTER in failed:
            return INBOX_FULL
        # Only the message's own condition: its id (80 random bits) is taken. Never in practice.
        raise DependencyUnavailable("Could not store the message, please retry", code="DATABASE_UNAVAILABLE")

    def recount(self, daemon_id: str, *, now: int, min_interval: int = RECOUNT_INTERVAL_SECONDS) -> bool:
        """Heal a counter left high by TTL deletions: count the inbox's live messages (purging the expired
        ones met, with the counter) and reset the counter to that, on condition that it still holds what
        was read (a send, ack or purge meanwhile leaves it as it is: never below the truth). At most once
        per ``min_interval`` per inbox; False when this inbox was recounted more recently."""
        counter = _counter(daemon_id)
        with translated("update"):
            try:
                # Claim this minute's recount and read the counter in one write. ADD 0 makes ``pending``
                # exist, so the reset can always compare with it.
                counter.update(actions=[InboxCounterItem.recounted_at.set(now), *_counter_add(0)],
                               condition=InboxCounterItem.recounted_at.does_not_exist()
                               | (InboxCounterItem.recounted_at <= now - min_interval))
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise
        read = int(counter.pending)
        live, expired = 0, []
        with translated("query"):
            for item in MessageItem.query(keys.inbox_pk(daemon_id), MessageItem.sk.startswith(keys.MESSAGE_PREFIX),
                                          consistent_read=True,
                                          attributes_to_get=[MessageItem.message_id, MessageItem.expires_at]):
                if item.expires_at <= now:
                    expired.append(item.message_id)
                else:
                    live += 1
        purged = len(self._remove(daemon_id, expired, MessageItem.pk.exists()))
        with translated("update"):
            try:
                _counter(daemon_id).update(actions=[InboxCounterItem.pending.set(live)],
                                           condition=InboxCounterItem.pending == read - purged)
            except PynamoDBException as exc:
                if not is_condition_failure(exc):
                    raise
        return True

    def receive(self, daemon_id: str, *, now: int, limit: int, lease_seconds: int = LEASE_SECONDS,
                scan_limit: int = RECEIVE_SCAN_LIMIT) -> list[Message]:
        """Up to ``limit`` messages of the daemon's own inbox, oldest first, each leased to this call for
        ``lease_seconds`` by a conditional UpdateItem (so two receivers never hold one lease). Messages
        leased to someone else are skipped; expired ones met on the way are purged instead of returned.
        Reads at most ``scan_limit`` items."""
        inbox = keys.inbox_pk(daemon_id)
        picked: list[Message] = []
        expired: list[str] = []
        with translated("query"):
            items = MessageItem.query(inbox, MessageItem.sk.startswith(keys.MESSAGE_PREFIX), consistent_read=True,
                                      limit=scan_limit, page_size=min(scan_limit, RECEIVE_PAGE_SIZE))
            for item in items:
                if item.expires_at <= now:
                    expired.append(item.message_id)
                elif item.lease_until is None or item.lease_until <= now:
                    leased = self._lease(inbox, item.sk, now=now, lease_seconds=lease_seconds)
                    if leased is not None:
                        picked.append(_message(leased, daemon_id))
                        if len(picked) >= limit:
                            break
        if expired:
            self._remove(daemon_id, expired, MessageItem.pk.exists())
        return picked

    def _lease(self, inbox: str, sk: str, *, now: int, lease_seconds: int) -> MessageItem | None:
        """The message leased until ``now + lease_seconds`` (delivery count + 1), as stored afterwards;
        None when it was acked, expired or leased by another receiver since it was read."""
        item = MessageItem(inbox, sk)
        with translated("update"):
            try:
                item.update(  # ReturnValues ALL_NEW: pynamodb loads the whole message into ``item``
                    actions=[MessageItem.lease_until.set(now + lease_seconds), MessageItem.deliveries.add(1)],
                    condition=MessageItem.pk.exists() & (MessageItem.expires_at > now)
                    & (MessageItem.lease_until.does_not_exist() | (MessageItem.lease_until <= now)),
                )
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return None
                raise
        return item

    def ack(self, daemon_id: str, message_ids: list[str], *, now: int) -> tuple[list[str], list[str]]:
        """Delete acknowledged messages of the daemon's own inbox (ids must be distinct). Returns
        (acked, unknown) in the order given: unknown ids were already acked, have expired, or are not in
        this inbox at all (another daemon's messages look exactly like ids that never existed)."""
        removed = self._remove(daemon_id, message_ids, MessageItem.pk.exists() & (MessageItem.expires_at > now))
        return ([i for i in message_ids if i in removed], [i for i in message_ids if i not in removed])

    def _remove(self, daemon_id: str, message_ids: list[str], condition) -> set[str]:
        """Delete messages on ``condition`` in transactions of up to 50 deletes plus the counter's
        ``ADD pending -k``; ids whose condition failed are dropped and the rest retried. The ids removed."""
        inbox, removed = keys.inbox_pk(daemon_id), set()
        for start in range(0, len(message_ids), REMOVE_BATCH):
            batch = message_ids[start:start + REMOVE_BATCH]
            while batch:
                def build(tx: TransactWrite, batch=batch) -> None:
                    for message_id in batch:  # positions 0..k-1 (deletes go before updates)
                        tx.delete(MessageItem(inbox, keys.message_sk(message_id)), condition=condition)
                    tx.update(_counter(daemon_id), actions=_counter_add(-len(batch)))

                failed = _write(build)
                if not failed:
                    removed.update(batch)
                    break
                if not any(index < len(batch) for index in failed):  # only deletes carry a condition
                    raise DependencyUnavailable("Could not remove messages, please retry", code="DATABASE_UNAVAILABLE")
                batch = [message_id for index, message_id in enumerate(batch) if index not in failed]
        return removed
