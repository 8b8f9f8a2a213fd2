"""Message rules without I/O: ids that sort in send order, the 64 KiB limit on the compact JSON, and
validation of send, receive and ack input (each refusal names its field)."""

from __future__ import annotations

import pytest

from relay_cloud.domain.errors import ValidationFailed
from relay_cloud.domain.messages import (
    DEFAULT_RECEIVE_LIMIT,
    LEASE_SECONDS,
    MAX_BODY_BYTES,
    MAX_PENDING,
    MESSAGE_ID_PATTERN,
    MESSAGE_TTL_SECONDS,
    Message,
    MessageTooLarge,
    message_view,
    new_message_id,
    validate_ack,
    validate_receive,
    validate_send,
)

TARGET = "dmn_" + "0123456789abcdef" * 2


def send(body=..., **overrides) -> dict:
    payload = {"to": {"daemon_id": TARGET, "agent": "worker"}, "body": {"text": "hi"} if body is ... else body}
    payload.update(overrides)
    return payload


def field_of(payload) -> str:
    with pytest.raises(ValidationFailed) as err:
        validate_send(payload)
    assert err.value.code == "VALIDATION_FAILED"
    return err.value.details["field"]


def test_the_contract_constants():
    assert (MAX_BODY_BYTES, MAX_PENDING, MESSAGE_TTL_SECONDS, LEASE_SECONDS) == (65536, 1000, 86400, 60)


def test_message_ids_carry_the_send_time_and_sort_in_send_order():
    first, second = new_message_id(1_800_000_000_000), new_message_id(1_800_000_000_001)
    assert MESSAGE_ID_PATTERN.fullmatch(first) and len(first) == 4 + 12 + 20
    assert int(first[4:16], 16) == 1_800_000_000_000
    assert first < second
    assert len({new_message_id(1) for _ in range(100)}) == 100  # the random part tells same-ms ids apart


def test_a_valid_send_is_reduced_to_the_compact_json_of_its_body():
    wanted = validate_send(send({"b": [1, 2], "a": "é"}, from_agent="planner", extra="ignored"))
    assert (wanted.to_daemon_id, wanted.to_agent, wanted.from_agent) == (TARGET, "worker", "planner")
    assert wanted.body == '{"b":[1,2],"a":"é"}'
    assert validate_send(send(False)).body == "false" and validate_send(send("")).body == '""'
    assert validate_send(send()).from_agent is None


def test_the_body_limit_counts_utf8_bytes_of_the_compact_json():
    assert validate_send(send("x" * (MAX_BODY_BYTES - 2))).body  # the two quotes make exactly 65,536 bytes
    with pytest.raises(MessageTooLarge) as err:
        validate_send(send("x" * (MAX_BODY_BYTES - 1)))
    assert err.value.status == 413 and err.value.body()["code"] == "MESSAGE_TOO_LARGE"
    assert err.value.details == {"field": "body", "max_bytes": MAX_BODY_BYTES}
    assert validate_send(send("é" * ((MAX_BODY_BYTES - 2) // 2))).body  # 2 bytes a character
    with pytest.raises(MessageTooLarge):
        validate_send(send("é" * ((MAX_BODY_BYTES - 2) // 2) + "x"))
    big_list = {"k": ["v"] * 20000}  # 80 KB compact
    with pytest.raises(MessageTooLarge):
        validate_send(send(big_list))


@pytest.mark.parametrize("payload, field", [
    ({"body": 1}, "to"),
    (send(to="dmn_x"), "to"),
    (send(to={"agent": "worker"}), "to.daemon_id"),
    (send(to={"daemon_id": "DMN_" + "0" * 32, "agent": "worker"}), "to.daemon_id"),
    (send(to={"daemon_id": TARGET}), "to.agent"),
    (send(to={"daemon_id": TARGET, "agent": "a b"}), "to.agent"),
    (send(to={"daemon_id": TARGET, "agent": "a" * 65}), "to.agent"),
    (send(from_agent=""), "from_agent"),
    (send(from_agent=7), "from_agent"),
    ({"to": {"daemon_id": TARGET, "agent": "worker"}}, "body"),
    (send(None), "body"),
    (send(float("nan")), "body"),
    (send({"x": float("inf")}), "body"),
    (send("\ud800"), "body"),  # JSON may carry an unpaired surrogate; UTF-8 cannot
])
def test_bad_send_input_names_its_field(payload, field):
    assert field_of(payload) == field


@pytest.mark.parametrize("params, limit", [(None, DEFAULT_RECEIVE_LIMIT), ({}, 50), ({"limit": "1"}, 1),
                                           ({"limit": "100"}, 100), ({"other": "x", "limit": "7"}, 7)])
def test_receive_limits(params, limit):
    assert validate_receive(params) == limit


@pytest.mark.parametrize("raw", ["0", "101", "-1", "5.0", " 5", "", "abc", "1000", "١"])
def test_bad_receive_limits(raw):
    with pytest.raises(ValidationFailed) as err:
        validate_receive({"limit": raw})
    assert err.value.details["field"] == "limit"


def test_acks_take_1_to_100_ids_and_drop_repeats():
    one, two = "msg_" + "1" * 32, "msg_" + "2" * 32
    assert validate_ack({"message_ids": [two, one, two]}) == [two, one]
    assert len(validate_ack({"message_ids": ["msg_" + f"{n:032x}" for n in range(100)]})) == 100
    for bad, field in [({}, "message_ids"), ({"message_ids": []}, "message_ids"), ({"message_ids": one}, "message_ids"),
                       ({"message_ids": [one] * 101}, "message_ids"), ({"message_ids": [one, 5]}, "message_ids[1]"),
                       ({"message_ids": ["msg_" + "G" * 32]}, "message_ids[0]")]:
        with pytest.raises(ValidationFailed) as err:
            validate_ack(bad)
        assert err.value.details["field"] == field


def test_the_view_of_a_message():
    message = Message("msg_" + "1" * 32, "dmn_from", None, "dmn_to", "worker", '{"a":1}', 10, 10 + 86400, 2, 70)
    assert message_view(message) == {
        "message_id": "msg_" + "1" * 32, "from": {"daemon_id": "dmn_from", "agent": None},
        "to": {"daemon_id": "dmn_to", "agent": "worker"}, "body": {"a": 1}, "sent_at": 10,
        "expires_at": 86410, "delivery_count": 2, "lease_expires_at": 70,
    }
    assert not message.expired(86409) and message.expired(86410)
