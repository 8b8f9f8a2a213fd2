"""Cross-machine messages on moto and on DynamoDB Local, through the service over the real repository:
the send transaction (target check, cap, size), leases and redelivery, acks, expiry and purging, the
recount that heals a counter TTL left high, tenancy, and account deletion of inboxes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.accounts import UserRepository
from relay_cloud.adapters.dynamo.daemons import DaemonRepository
from relay_cloud.adapters.dynamo.messages import MessageRepository
from relay_cloud.adapters.dynamo.models import CommandResultItem, DaemonItem, InboxCounterItem, Item, MessageItem
from relay_cloud.domain.auth import User
from relay_cloud.domain.daemons import DaemonPrincipal
from relay_cloud.domain.errors import NotFound, RateLimited
from relay_cloud.domain.messages import MAX_PENDING, MessageTooLarge
from relay_cloud.services.messages import MessageService
from tests.fakes import Clock

NOW = 1_800_000_000
A1, A2, A3 = "dmn_" + "a1" * 16, "dmn_" + "a2" * 16, "dmn_" + "a3" * 16  # owner usr_a
B1 = "dmn_" + "b1" * 16  # owner usr_b


def link(daemon_id: str, user_id: str, *, keyed: bool = True) -> DaemonPrincipal:
    DaemonItem(keys.daemon_pk(daemon_id), keys.DAEMON_SK, daemon_id=daemon_id, user_id=user_id, name="laptop",
               machine_id="m-" + daemon_id[-4:], public_key="A" * 43, key_hash="h" * 64 if keyed else None,
               allowed_providers=[], linked_at=NOW - 100, agents=[], gsi1pk=keys.owner_gsi_pk(user_id),
               gsi1sk=keys.daemon_gsi_sk(NOW - 100, daemon_id)).save()
    return DaemonPrincipal(daemon_id, user_id)


@pytest.fixture
def fleet(backend):
    return {"a1": link(A1, "usr_a"), "a2": link(A2, "usr_a"), "b1": link(B1, "usr_b")}


def service(clock: Clock | None = None, **kwargs) -> MessageService:
    return MessageService(MessageRepository(), clock=clock or Clock(NOW), **kwargs)


def to(daemon_id: str, body=None, agent="worker", **extra) -> dict:
    return {"to": {"daemon_id": daemon_id, "agent": agent}, "body": {"text": "hi"} if body is None else body, **extra}


def pending(daemon_id: str) -> int | None:
    try:
        return int(InboxCounterItem.get(keys.inbox_pk(daemon_id), keys.INBOX_COUNTER_SK, consistent_read=True).pending)
    except InboxCounterItem.DoesNotExist:
        return None


def stored_ids(daemon_id: str) -> list[str]:
    return [item.message_id for item in MessageItem.query(
        keys.inbox_pk(daemon_id), MessageItem.sk.startswith(keys.MESSAGE_PREFIX), consistent_read=True)]


def ttl_deletes(daemon_id: str, message_id: str) -> None:
    """What DynamoDB's TTL does (moto and DynamoDB Local never do): the item goes, the counter stays."""
    MessageItem(keys.inbox_pk(daemon_id), keys.message_sk(message_id)).delete()


def test_send_receive_ack_round_trip(fleet):
    messages = service()
    sent = messages.send(fleet["a1"], to(A2, {"text": "héllo", "n": [1, 2.5, None]}, from_agent="planner"))
    assert sent["message_id"].startswith("msg_") and sent["expires_at"] == NOW + 86400
    assert pending(A2) == 1 and stored_ids(A2) == [sent["message_id"]]

    assert messages.receive(fleet["a1"], {}) == {"messages": []}  # the sender's own inbox is empty
    assert messages.receive(fleet["a2"], {"limit": "10"}) == {"messages": [{
        "message_id": sent["message_id"],
        "from": {"daemon_id": A1, "agent": "planner"},
        "to": {"daemon_id": A2, "agent": "worker"},
        "body": {"text": "héllo", "n": [1, 2.5, None]},
        "sent_at": NOW,
        "expires_at": NOW + 86400,
        "delivery_count": 1,
        "lease_expires_at": NOW + 60,
    }]}

    assert messages.ack(fleet["a2"], {"message_ids": [sent["message_id"]]}) == {
        "acked": [sent["message_id"]], "unknown": []}
    assert stored_ids(A2) == [] and pending(A2) == 0
    assert messages.ack(fleet["a2"], {"message_ids": [sent["message_id"]]}) == {
        "acked": [], "unknown": [sent["message_id"]]}  # acking twice is harmless
    assert pending(A2) == 0


def test_a_daemon_may_message_itself_and_messages_come_in_send_order(fleet):
    clock = Clock(NOW)
    messages = service(clock)
    ids = []
    for n in range(3):
        ids.append(messages.send(fleet["a1"], to(A1, n))["message_id"])
        clock.advance(0.002)
    received = messages.receive(fleet["a1"], {"limit": "2"})["messages"]
    assert [m["message_id"] for m in received] == ids[:2] and [m["body"] for m in received] == [0, 1]
    assert [m["message_id"] for m in messages.receive(fleet["a1"], {})["messages"]] == ids[2:]


def test_a_body_of_exactly_64_kib_is_stored_and_one_byte_more_is_refused(fleet):
    messages = service()
    exactly = "x" * (65536 - 2)  # the compact JSON adds the two quotes
    sent = messages.send(fleet["a1"], to(A2, exactly))
    assert messages.receive(fleet["a2"], {})["messages"][0]["body"] == exactly
    with pytest.raises(MessageTooLarge) as err:
        messages.send(fleet["a1"], to(A2, exactly + "x"))
    assert err.value.status == 413 and err.value.code == "MESSAGE_TOO_LARGE"
    assert stored_ids(A2) == [sent["message_id"]] and pending(A2) == 1


def test_the_inbox_cap_refuses_the_next_message(fleet):
    messages = service(inbox_cap=3)
    for _ in range(3):
        messages.send(fleet["a1"], to(A2))
    with pytest.raises(RateLimited) as err:
        messages.send(fleet["a1"], to(A2))
    assert err.value.status == 429 and err.value.code == "INBOX_FULL"
    assert pending(A2) == 3 and len(stored_ids(A2)) == 3  # the recount found the counter right
    messages.ack(fleet["a2"], {"message_ids": stored_ids(A2)[:1]})
    messages.send(fleet["a1"], to(A2))  # room again
    assert pending(A2) == 3


def test_the_real_cap_is_1000_pending_messages(fleet):
    InboxCounterItem(keys.inbox_pk(A2), keys.INBOX_COUNTER_SK, pending=MAX_PENDING, recounted_at=NOW).save()
    with pytest.raises(RateLimited) as err:
        service().send(fleet["a1"], to(A2))  # recounted this minute already: no recount, refused
    assert err.value.code == "INBOX_FULL" and MAX_PENDING == 1000
    assert stored_ids(A2) == [] and pending(A2) == 1000
    InboxCounterItem(keys.inbox_pk(A2), keys.INBOX_COUNTER_SK, pending=MAX_PENDING - 1, recounted_at=NOW).save()
    service().send(fleet["a1"], to(A2))
    assert pending(A2) == 1000


def test_a_recount_heals_a_counter_left_high_by_ttl_deletions(fleet):
    # The real cap: the counter says 1,000 but TTL has taken every message (never recounted before).
    InboxCounterItem(keys.inbox_pk(A2), keys.INBOX_COUNTER_SK, pending=MAX_PENDING).save()
    sent = service().send(fleet["a1"], to(A2))
    assert pending(A2) == 1 and stored_ids(A2) == [sent["message_id"]]


def test_recounts_happen_at_most_once_a_minute_per_inbox(fleet):
    clock = Clock(NOW)
    messages = service(clock, inbox_cap=3)
    ids = [messages.send(fleet["a1"], to(A2))["message_id"] for _ in range(3)]
    ttl_deletes(A2, ids[0])
    messages.send(fleet["a1"], to(A2))  # full by the counter; the recount finds 2 live, then it fits
    assert pending(A2) == 3
    ttl_deletes(A2, ids[1])
    clock.advance(30)
    with pytest.raises(RateLimited):
        messages.send(fleet["a1"], to(A2))  # recounted 30 s ago: refused without reading the inbox
    clock.advance(30)
    messages.send(fleet["a1"], to(A2))
    assert pending(A2) == 3 and len(stored_ids(A2)) == 3


def test_an_unacked_message_is_delivered_again_after_its_lease_with_the_same_id(fleet):
    clock = Clock(NOW)
    messages = service(clock)
    sent = messages.send(fleet["a1"], to(A2))
    first = messages.receive(fleet["a2"], {})["messages"]
    assert [(m["message_id"], m["delivery_count"]) for m in first] == [(sent["message_id"], 1)]
    clock.advance(59)
    assert messages.receive(fleet["a2"], {})["messages"] == []  # still leased
    clock.advance(1)
    again = messages.receive(fleet["a2"], {})["messages"]
    assert [(m["message_id"], m["delivery_count"], m["lease_expires_at"]) for m in again] == [
        (sent["message_id"], 2, NOW + 120)]
    assert messages.ack(fleet["a2"], {"message_ids": [sent["message_id"]]})["acked"] == [sent["message_id"]]
    clock.advance(3600)
    assert messages.receive(fleet["a2"], {})["messages"] == []


def test_a_leased_message_is_not_handed_to_a_second_receiver(fleet):
    messages = service()
    sent = messages.send(fleet["a1"], to(A2))["message_id"]
    assert [m["message_id"] for m in messages.receive(fleet["a2"], {})["messages"]] == [sent]
    assert messages.receive(fleet["a2"], {})["messages"] == []  # the same instant, another receiver


def test_concurrent_receivers_never_lease_the_same_message(fleet, request):
    if request.node.callspec.params["backend"] == "moto":
        pytest.skip("moto evaluates a condition and applies the update without a lock: racing threads both "
                    "pass it (DynamoDB, and DynamoDB Local, apply conditional writes atomically)")
    messages = service()
    sent = {messages.send(fleet["a1"], to(A2, n))["message_id"] for n in range(20)}
    with ThreadPoolExecutor(max_workers=8) as pool:
        batches = list(pool.map(lambda _: messages.receive(fleet["a2"], {"limit": "5"})["messages"], range(8)))
    received = [m["message_id"] for batch in batches for m in batch]
    assert len(received) == len(set(received)) == 20 and set(received) == sent
    assert all(m["delivery_count"] == 1 for batch in batches for m in batch)


def test_acks_span_several_transactions_and_report_unknown_ids(fleet):
    messages = service()
    ids = [messages.send(fleet["a1"], to(A2, n))["message_id"] for n in range(60)]
    never = ["msg_" + "0" * 32, "msg_" + "f" * 32]
    asked = ids[:30] + never[:1] + ids[30:] + never[1:]  # an unknown id inside each transaction of 50
    result = messages.ack(fleet["a2"], {"message_ids": asked})
    assert result == {"acked": ids, "unknown": never}
    assert stored_ids(A2) == [] and pending(A2) == 0


def test_expired_messages_are_never_delivered_and_are_purged_with_the_counter(fleet):
    clock = Clock(NOW)
    messages = service(clock)
    old = messages.send(fleet["a1"], to(A2, "old"))["message_id"]
    clock.advance(3600)
    fresh = messages.send(fleet["a1"], to(A2, "fresh"))["message_id"]
    clock.advance(86400 - 3600)  # the first has just expired, the second has an hour left
    assert messages.ack(fleet["a2"], {"message_ids": [old]}) == {"acked": [], "unknown": [old]}
    assert [m["message_id"] for m in messages.receive(fleet["a2"], {})["messages"]] == [fresh]
    assert stored_ids(A2) == [fresh] and pending(A2) == 1
    clock.advance(3600)
    assert messages.receive(fleet["a2"], {})["messages"] == []  # expired: never delivered again
    assert stored_ids(A2) == [] and pending(A2) == 0


@pytest.mark.parametrize("target", ["foreign", "revoked", "keyless", "unknown"])
def test_only_a_linked_unrevoked_daemon_of_the_same_owner_is_a_target(fleet, target):
    target_id = {"foreign": B1, "revoked": A2, "keyless": A3, "unknown": "dmn_" + "0" * 32}[target]
    if target == "revoked":
        assert DaemonRepository().revoke(A2, user_id="usr_a", now=NOW)
    if target == "keyless":  # approved in the dashboard, token never exchanged
        link(A3, "usr_a", keyed=False)
    with pytest.raises(NotFound) as err:
        service().send(fleet["a1"], to(target_id))
    assert err.value.status == 404 and err.value.code == "DAEMON_NOT_FOUND"
    assert stored_ids(target_id) == [] and pending(target_id) is None


def test_no_owner_ever_reads_or_acks_another_owners_messages(fleet):
    messages = service()
    mine = messages.send(fleet["a1"], to(A2))["message_id"]
    theirs = messages.send(fleet["b1"], to(B1))["message_id"]
    assert messages.receive(fleet["b1"], {})["messages"][0]["message_id"] == theirs
    assert messages.ack(fleet["b1"], {"message_ids": [mine]}) == {"acked": [], "unknown": [mine]}
    assert messages.ack(fleet["a1"], {"message_ids": [mine, theirs]}) == {"acked": [], "unknown": [mine, theirs]}
    assert stored_ids(A2) == [mine] and pending(A2) == 1  # only A2, the target, may take it
    assert [m["message_id"] for m in messages.receive(fleet["a2"], {})["messages"]] == [mine]
    assert messages.receive(fleet["a1"], {})["messages"] == []


def test_account_deletion_removes_every_daemons_partition_and_inbox(fleet):
    messages = service()
    messages.send(fleet["a1"], to(A2))
    messages.send(fleet["a2"], to(A1))
    messages.send(fleet["b1"], to(B1))
    CommandResultItem(keys.daemon_pk(A1), keys.command_result_sk("cmd_1"), command_id="cmd_1",
                      command_type="provider_login", status="succeeded", finished_at=NOW, expires_at=NOW + 600).save()
    users = UserRepository()
    owned = list(users.account_items(User("usr_a", 7, "octo", None, None, None, "free", NOW)))
    assert len(owned) == len(set(owned))  # a batch delete refuses the same key twice
    users.delete_items(owned)
    for daemon_id in (A1, A2):
        for pk in (keys.daemon_pk(daemon_id), keys.inbox_pk(daemon_id)):
            assert list(Item.query(pk, consistent_read=True)) == []
    assert DaemonRepository().get(B1) is not None and len(stored_ids(B1)) == 1 and pending(B1) == 1
