"""Daemon linking's data tier on moto and on DynamoDB Local: the user-code guard, one decision per
request, a single key exchange, revocation only by the owner, and the failed-lookup counter."""

from __future__ import annotations

import pytest

from relay_cloud.adapters.dynamo.daemons import DaemonRepository, LinkRepository
from relay_cloud.adapters.dynamo.rate_limits import RateLimiter
from relay_cloud.domain.daemons import PENDING, Daemon, LinkRequest
from relay_cloud.domain.errors import Conflict
from relay_cloud.services.daemons import LOOKUP_SCOPE

NOW = 1_800_000_000


def request(device_hash="dh-1", user_code="BCDFGHJK") -> LinkRequest:
    return LinkRequest(device_hash=device_hash, user_code=user_code, client_id="relay-cloud-cli", machine_id="m-1",
                       name="laptop", public_key="A" * 43, requesting_ip="127.0.0.1", status=PENDING, user_id=None,
                       allowed_providers=(), daemon_id=None, interval=5, last_polled_at=None, created_at=NOW)


def daemon(daemon_id="dmn_1", user_id="usr_a") -> Daemon:
    return Daemon(daemon_id=daemon_id, user_id=user_id, name="laptop", machine_id="m-1", public_key="A" * 43,
                  key_hash=None, allowed_providers=("anthropic",), linked_at=NOW)


def test_user_codes_are_unique_and_expire(backend):
    links = LinkRepository()
    links.create(request())
    with pytest.raises(Conflict):
        links.create(request(device_hash="dh-2"))  # same user code: the caller retries with a new one
    assert links.device_hash_for("BCDFGHJK", NOW) == "dh-1"
    assert links.device_hash_for("BCDFGHJK", NOW + 600) is None
    assert links.get("dh-2") is None


def test_one_decision_one_exchange(backend):
    links, daemons = LinkRepository(), DaemonRepository()
    links.create(request())
    links.approve("dh-1", daemon(), now=NOW + 1)
    with pytest.raises(Conflict):
        links.approve("dh-1", daemon("dmn_2"), now=NOW + 2)
    assert not links.deny("dh-1", user_id="usr_a", now=NOW + 2)
    assert daemons.get("dmn_2") is None
    assert links.exchange("dh-1", "dmn_1", "hash-1", now=NOW + 3)
    assert not links.exchange("dh-1", "dmn_1", "hash-2", now=NOW + 4)  # the device code is spent
    assert daemons.get("dmn_1").key_hash == "hash-1"


def test_an_expired_request_cannot_be_approved_or_exchanged(backend):
    links = LinkRepository()
    links.create(request())
    with pytest.raises(Conflict):
        links.approve("dh-1", daemon(), now=NOW + 600)
    assert DaemonRepository().get("dmn_1") is None


def test_only_the_owner_revokes_and_the_owner_index_lists(backend):
    links, daemons = LinkRepository(), DaemonRepository()
    links.create(request())
    links.approve("dh-1", daemon(), now=NOW + 1)
    links.exchange("dh-1", "dmn_1", "hash-1", now=NOW + 2)
    assert [d.daemon_id for d in daemons.owned_by("usr_a")] == ["dmn_1"]
    assert not daemons.revoke("dmn_1", user_id="usr_b", now=NOW + 3)
    assert daemons.revoke("dmn_1", user_id="usr_a", now=NOW + 3)
    assert not daemons.revoke("dmn_1", user_id="usr_a", now=NOW + 4)
    assert daemons.get("dmn_1").revoked_at == NOW + 3


def test_failed_lookups_stop_at_the_limit_and_are_read_per_window(backend):
    """The service counts failed user-code lookups with the rate limiter and reads the count before
    every lookup."""
    limiter = RateLimiter()
    assert limiter.count(LOOKUP_SCOPE, "usr_a", window_seconds=600, now=NOW) == 0
    assert all(limiter.hit(LOOKUP_SCOPE, "usr_a", limit=3, window_seconds=600, now=NOW) for _ in range(3))
    assert not limiter.hit(LOOKUP_SCOPE, "usr_a", limit=3, window_seconds=600, now=NOW + 599)
    assert limiter.count(LOOKUP_SCOPE, "usr_a", window_seconds=600, now=NOW + 599) == 3
    assert limiter.count(LOOKUP_SCOPE, "usr_b", window_seconds=600, now=NOW) == 0  # per user
    assert limiter.count(LOOKUP_SCOPE, "usr_a", window_seconds=600, now=NOW + 600) == 0  # the next window
