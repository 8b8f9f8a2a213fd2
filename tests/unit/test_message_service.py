"""The message service with an in-memory store and a controllable clock: what a send stores and answers,
404 for targets outside the owner's live machines, the 429 after a recount (and the retry a recount
allows), receive limits, leases and redelivery, acks."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from relay_cloud.domain.daemons import DaemonPrincipal
from relay_cloud.domain.errors import NotFound, RateLimited, ValidationFailed
from relay_cloud.domain.messages import INBOX_FULL, NO_TARGET, SENT, MessageTooLarge
from relay_cloud.services.messages import MessageService
from tests.fakes import Clock

NOW = 1_800_000_000
A1, A2, B1 = ("dmn_" + c * 32 for c in "12b")
ME, MY_OTHER, THEM = DaemonPrincipal(A1, "usr_a"), DaemonPrincipal(A2, "usr_a"), DaemonPrincipal(B1, "usr_b")


class FakeMessages:
    """The message store's conditions, in memory (the counter drifts only when a test deletes behind it,
    as TTL does)."""

    def __init__(self):
        self.daemons = {A1: ("usr_a", True), A2: ("usr_a", True), B1: ("usr_b", True)}  # id -> (owner, active)
        self.inboxes: dict[str, dict] = {}
        self.counters: dict[str, int] = {}
        self.recounted_at: dict[str, int] = {}

    def send(self, message, *, owner_id, cap):
        target = message.to_daemon_id
        if self.daemons.get(target) != (owner_id, True):
            return NO_TARGET
        if self.counters.get(target, 0) >= cap:
            return INBOX_FULL
        self.inboxes.setdefault(target, {})[message.message_id] = message
        self.counters[target] = self.counters.get(target, 0) + 1
        return SENT

    def recount(self, daemon_id, *, now):
        if now - self.recounted_at.get(daemon_id, 0) < 60:
            return False
        self.recounted_at[daemon_id] = now
        self.counters[daemon_id] = sum(not m.expired(now) for m in self.inboxes.get(daemon_id, {}).values())
        return True

    def receive(self, daemon_id, *, now, limit):
        inbox, picked = self.inboxes.get(daemon_id, {}), []
        for message_id in sorted(inbox):
            message = inbox[message_id]
            if message.expired(now) or (message.lease_until is not None and message.lease_until > now):
                continue
            inbox[message_id] = replace(message, deliveries=message.deliveries + 1, lease_until=now + 60)
            picked.append(inbox[message_id])
            if len(picked) == limit:
                break
        return picked

    def ack(self, daemon_id, message_ids, *, now):
        inbox = self.inboxes.get(daemon_id, {})
        acked = [i for i in message_ids if i in inbox and not inbox[i].expired(now)]
        for message_id in acked:
            del inbox[message_id]
        self.counters[daemon_id] = self.counters.get(daemon_id, 0) - len(acked)
        return acked, [i for i in message_ids if i not in acked]


@pytest.fixture
def store():
    return FakeMessages()


@pytest.fixture
def clock():
    return Clock(NOW + 0.123)


@pytest.fixture
def messages(store, clock):
    return MessageService(store, clock=clock, inbox_cap=3)


def to(daemon_id, body="hi", agent="worker", **extra):
    return {"to": {"daemon_id": daemon_id, "agent": agent}, "body": body, **extra}


def test_a_send_stores_the_message_from_the_caller_and_answers_its_id(messages, store):
    sent = messages.send(ME, to(A2, {"x": [1, 2]}, from_agent="planner"))
    assert sent == {"message_id": sent["message_id"], "expires_at": NOW + 86400}
    assert int(sent["message_id"][4:16], 16) == (NOW * 1000 + 123)  # the send time in ms
    stored = store.inboxes[A2][sent["message_id"]]
    assert (stored.from_daemon_id, stored.from_agent, stored.to_daemon_id, stored.to_agent) == (A1, "planner", A2, "worker")
    assert json.loads(stored.body) == {"x": [1, 2]} and stored.body == '{"x":[1,2]}'
    assert (stored.sent_at, stored.expires_at, stored.deliveries) == (NOW, NOW + 86400, 0)


def test_sending_to_itself_is_allowed(messages, store):
    sent = messages.send(ME, to(A1))
    assert sent["message_id"] in store.inboxes[A1]


@pytest.mark.parametrize("target", [B1, "dmn_" + "0" * 32])
def test_another_owners_or_an_unknown_machine_is_not_found(messages, store, target):
    with pytest.raises(NotFound) as err:
        messages.send(ME, to(target))
    assert err.value.code == "DAEMON_NOT_FOUND"
    assert store.inboxes == {}


def test_a_revoked_machine_is_not_found(messages, store):
    store.daemons[A2] = ("usr_a", False)
    with pytest.raises(NotFound):
        messages.send(ME, to(A2))


def test_bad_input_is_refused_before_anything_is_stored(messages, store):
    with pytest.raises(ValidationFailed) as err:
        messages.send(ME, to(A2, agent="no spaces"))
    assert err.value.details["field"] == "to.agent"
    with pytest.raises(MessageTooLarge):
        messages.send(ME, to(A2, "x" * 65536))
    assert store.inboxes == {}


def test_a_full_inbox_is_429_after_a_recount_that_found_it_full(messages, store, clock):
    for _ in range(3):
        messages.send(ME, to(A2))
    with pytest.raises(RateLimited) as err:
        messages.send(ME, to(A2))
    assert err.value.status == 429 and err.value.code == "INBOX_FULL"
    assert store.recounted_at == {A2: NOW} and len(store.inboxes[A2]) == 3


def test_a_recount_that_heals_the_counter_lets_the_send_through(messages, store, clock):
    ids = [messages.send(ME, to(A2))["message_id"] for _ in range(3)]
    del store.inboxes[A2][ids[0]]  # TTL took it; the counter still says 3
    sent = messages.send(ME, to(A2))
    assert sent["message_id"] in store.inboxes[A2] and store.counters[A2] == 3
    del store.inboxes[A2][ids[1]]
    clock.advance(59)
    with pytest.raises(RateLimited):
        messages.send(ME, to(A2))  # the last recount was less than a minute ago
    clock.advance(1)
    messages.send(ME, to(A2))
    assert len(store.inboxes[A2]) == 3


def test_receive_gives_the_callers_own_messages_with_a_lease(messages, store, clock):
    sent = messages.send(MY_OTHER, to(A1, [1], from_agent="planner"))
    messages.send(THEM, to(B1))
    assert messages.receive(ME, None) == {"messages": [{
        "message_id": sent["message_id"], "from": {"daemon_id": A2, "agent": "planner"},
        "to": {"daemon_id": A1, "agent": "worker"}, "body": [1], "sent_at": NOW, "expires_at": NOW + 86400,
        "delivery_count": 1, "lease_expires_at": NOW + 60,
    }]}
    assert messages.receive(ME, {}) == {"messages": []}  # leased
    clock.advance(60)
    assert [m["delivery_count"] for m in messages.receive(ME, {})["messages"]] == [2]


def test_receive_limits(store, clock):
    messages = MessageService(store, clock=clock)  # the real cap
    for n in range(60):
        messages.send(MY_OTHER, to(A1, n))
        clock.advance(0.001)
    assert len(messages.receive(ME, {})["messages"]) == 50
    assert [m["body"] for m in messages.receive(ME, {"limit": "5"})["messages"]] == [50, 51, 52, 53, 54]
    with pytest.raises(ValidationFailed) as err:
        messages.receive(ME, {"limit": "101"})
    assert err.value.details["field"] == "limit"


def test_ack_answers_acked_and_unknown(messages, store):
    mine = messages.send(MY_OTHER, to(A1))["message_id"]
    theirs = messages.send(THEM, to(B1))["message_id"]
    never = "msg_" + "0" * 32
    assert messages.ack(ME, {"message_ids": [mine, theirs, never, mine]}) == {
        "acked": [mine], "unknown": [theirs, never]}
    assert store.inboxes[A1] == {} and theirs in store.inboxes[B1]
    with pytest.raises(ValidationFailed):
        messages.ack(ME, {"message_ids": []})
