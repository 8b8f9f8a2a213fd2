"""Daemon linking with fakes and a controllable clock: the RFC 8628 endpoints (pending, slow_down per
device code, denied, expiry, single exchange, client and grant checks), the dashboard's decision and its
attempt limit, listing with presence, unlinking, and daemon-key authentication."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from relay_cloud.domain.auth import Principal
from relay_cloud.domain.daemons import (
    APPROVED,
    CONSUMED,
    DENIED,
    DEVICE_GRANT_TYPE,
    PENDING,
    DaemonPrincipal,
    DeviceGrantError,
    parse_daemon_key,
    sha256_hex,
)
from relay_cloud.domain.errors import Conflict, NotFound, RateLimited, Unauthenticated, ValidationFailed
from relay_cloud.domain.providers import Registry, built_in_providers
from relay_cloud.services.daemons import DaemonService
from tests.fakes import Clock, FakeAudit, FakeLimiter

ME = Principal("usr_me", "sid", "csrf")
OTHER = Principal("usr_other", "sid2", "csrf2")
PUBLIC_KEY = base64.urlsafe_b64encode(bytes(range(32))).rstrip(b"=").decode()
DEVICE = {"client_id": "relay-cloud-cli", "machine_id": "laptop-1", "name": "My laptop", "public_key": PUBLIC_KEY}
TTL = 600


class FakeLinks:
    """The link repository's conditions, in memory."""

    def __init__(self):
        self.requests, self.guards = {}, {}
        self.daemons = None  # the FakeDaemons the exchange writes to
        self.taken_codes = set()  # user codes that collide once (another live request holds them)

    def create(self, request):
        if request.user_code in self.taken_codes:
            self.taken_codes.discard(request.user_code)
            raise Conflict("taken", code="USER_CODE_TAKEN")
        assert request.user_code not in self.guards and request.device_hash not in self.requests
        self.requests[request.device_hash] = request
        self.guards[request.user_code] = (request.device_hash, request.expires_at)

    def get(self, device_hash):
        return self.requests.get(device_hash)

    def device_hash_for(self, user_code, now):
        guard = self.guards.get(user_code)
        return guard[0] if guard and guard[1] > now else None

    def record_poll(self, device_hash, *, previous_polled_at, now, interval):
        request = self.requests[device_hash]
        if request.status != PENDING or request.last_polled_at != previous_polled_at:
            return False
        self.requests[device_hash] = replace(request, last_polled_at=now, interval=interval)
        return True

    def deny(self, device_hash, *, user_id, now):
        request = self.requests[device_hash]
        if request.status != PENDING or request.expired(now):
            return False
        self.requests[device_hash] = replace(request, status=DENIED, user_id=user_id)
        return True

    def approve(self, device_hash, daemon, *, now):
        request = self.requests[device_hash]
        if request.status != PENDING or request.expired(now):
            raise Conflict("decided", code="LINK_REQUEST_DECIDED")
        self.requests[device_hash] = replace(request, status=APPROVED, user_id=daemon.user_id,
                                             daemon_id=daemon.daemon_id, allowed_providers=daemon.allowed_providers)
        self.daemons.items[daemon.daemon_id] = daemon

    def exchange(self, device_hash, daemon_id, key_hash, *, now):
        request, daemon = self.requests.get(device_hash), self.daemons.items.get(daemon_id)
        if (request is None or request.status != APPROVED or request.daemon_id != daemon_id or request.expired(now)
                or daemon is None or daemon.key_hash or daemon.revoked_at is not None):
            return False
        self.requests[device_hash] = replace(request, status=CONSUMED)
        self.daemons.items[daemon_id] = replace(daemon, key_hash=key_hash)
        return True


class FakeDaemons:
    def __init__(self):
        self.items = {}
        self.gets = 0
        self.heartbeats = 0
        self.metrics, self.commands = {}, {}

    def get(self, daemon_id):
        self.gets += 1
        return self.items.get(daemon_id)

    def owned_by(self, user_id):
        return sorted((d for d in self.items.values() if d.user_id == user_id), key=lambda d: d.linked_at)

    def heartbeat(self, daemon_id, *, key_hash, now, agents, metrics):
        """The conditional UpdateItem: key hash matches and not revoked; None when it does not."""
        self.heartbeats += 1
        daemon = self.items.get(daemon_id)
        if daemon is None or daemon.key_hash != key_hash or daemon.revoked_at is not None:
            return None
        self.items[daemon_id] = replace(daemon, last_seen_at=now, agents=tuple(agents))
        self.metrics[daemon_id] = metrics
        return list(self.commands.get(daemon_id, []))

    def revoke(self, daemon_id, *, user_id, now):
        daemon = self.items.get(daemon_id)
        if daemon is None or daemon.user_id != user_id or daemon.revoked_at is not None:
            return False
        self.items[daemon_id] = replace(daemon, revoked_at=now)
        return True


@pytest.fixture
def clock():
    return Clock(1_800_000_000)


@pytest.fixture
def service(clock):
    links, daemons = FakeLinks(), FakeDaemons()
    links.daemons = daemons
    registry = Registry(built_in_providers(anthropic_url="https://a.test", openai_url="https://o.test",
                                           google_url="https://g.test", github_oauth_url="https://gh.test",
                                           github_client_id="cid", github_client_secret=""))
    return DaemonService(links=links, daemons=daemons, audit=FakeAudit(), registry=registry,
                         public_url="https://relay.test", clock=clock)


@pytest.fixture
def limited(service):
    """The service with its rate limits on: link requests per address, failed lookups per user."""
    service.limiter = FakeLimiter()
    return service


def grant(device_code, **extra):
    return {"grant_type": DEVICE_GRANT_TYPE, "device_code": device_code, "client_id": "relay-cloud-cli", **extra}


def oauth_error(call) -> tuple[int, str]:
    with pytest.raises(DeviceGrantError) as raised:
        call()
    return raised.value.status, raised.value.body()["error"]


def link(service, clock, principal=ME, **body) -> tuple[dict, dict]:
    started = service.device_authorization(DEVICE, requesting_ip="203.0.113.9")
    approved = service.approve(principal, started["user_code"], body)
    return started, approved


def test_device_authorization_answers_rfc8628_and_stores_only_the_hash(service):
    started = service.device_authorization({**DEVICE, "scope": "daemon"}, requesting_ip="203.0.113.9")
    assert set(started) == {"device_code", "user_code", "verification_uri", "verification_uri_complete",
                            "expires_in", "interval"}
    assert started["expires_in"] == 600 and started["interval"] == 5
    assert started["verification_uri"] == "https://relay.test/dashboard/link"
    assert started["verification_uri_complete"] == f"https://relay.test/dashboard/link?user_code={started['user_code']}"
    assert len(started["user_code"]) == 9 and started["user_code"][4] == "-"
    stored = service.links.requests[sha256_hex(started["device_code"])]
    assert started["device_code"] not in repr(service.links.requests) + repr(service.links.guards)
    assert stored.user_code == started["user_code"].replace("-", "") and stored.requesting_ip == "203.0.113.9"


def test_a_taken_user_code_is_retried_with_a_new_one(service):
    codes = iter(["BCDFGHJK", "BCDFGHJK", "LMNPQRST"])
    service.user_codes = lambda: next(codes)
    service.links.taken_codes.add("BCDFGHJK")
    assert service.device_authorization(DEVICE, requesting_ip=None)["user_code"] == "BCDF-GHJK"
    service.links.taken_codes.add("BCDFGHJK")  # now live: the next request must get another code
    assert service.device_authorization(DEVICE, requesting_ip=None)["user_code"] == "LMNP-QRST"


def test_device_authorization_rejects_bad_clients_and_input(service):
    assert oauth_error(lambda: service.device_authorization({**DEVICE, "client_id": "evil"}, requesting_ip=None)) == (
        401, "invalid_client")
    assert oauth_error(lambda: service.device_authorization({k: v for k, v in DEVICE.items() if k != "client_id"},
                                                            requesting_ip=None)) == (401, "invalid_client")
    assert oauth_error(lambda: service.device_authorization({**DEVICE, "scope": "admin"}, requesting_ip=None)) == (
        400, "invalid_scope")
    assert oauth_error(lambda: service.device_authorization({**DEVICE, "public_key": "short"}, requesting_ip=None)) == (
        400, "invalid_request")
    assert service.links.requests == {}


def test_pending_then_slow_down_grows_the_interval_of_this_device_code_only(service, clock):
    first = service.device_authorization(DEVICE, requesting_ip=None)["device_code"]
    second = service.device_authorization(DEVICE, requesting_ip=None)["device_code"]
    assert oauth_error(lambda: service.token(grant(first))) == (400, "authorization_pending")
    clock.advance(4)
    assert oauth_error(lambda: service.token(grant(first))) == (400, "slow_down")
    assert service.links.get(sha256_hex(first)).interval == 10
    assert service.links.get(sha256_hex(second)).interval == 5
    clock.advance(9)  # 9 s after the last poll: still faster than the new interval of 10
    assert oauth_error(lambda: service.token(grant(first))) == (400, "slow_down")
    assert service.links.get(sha256_hex(first)).interval == 15
    clock.advance(15)
    assert oauth_error(lambda: service.token(grant(first))) == (400, "authorization_pending")
    assert service.links.get(sha256_hex(first)).interval == 15
    assert oauth_error(lambda: service.token(grant(second))) == (400, "authorization_pending")


def test_approve_then_exactly_one_exchange_and_the_key_authenticates(service, clock):
    started, approved = link(service, clock, allowed_providers=["anthropic", "github", "anthropic"])
    assert set(approved) == {"daemon_id", "name", "machine_id"} and approved["name"] == "My laptop"
    daemon = service.daemons.items[approved["daemon_id"]]
    assert daemon.allowed_providers == ("anthropic", "github") and daemon.key_hash is None
    assert service.list(ME) == {"daemons": []}  # no key yet: not linked

    token = service.token(grant(started["device_code"]))
    assert token["token_type"] == "Bearer" and token["scope"] == "daemon"
    assert token["daemon_id"] == approved["daemon_id"]
    parsed = parse_daemon_key(token["access_token"])
    assert parsed.daemon_id == approved["daemon_id"]
    assert service.daemons.items[parsed.daemon_id].key_hash == sha256_hex(parsed.secret)
    assert service.links.get(sha256_hex(started["device_code"])).status == CONSUMED

    assert oauth_error(lambda: service.token(grant(started["device_code"]))) == (400, "invalid_grant")
    gets = service.daemons.gets
    assert service.authenticate(f"Bearer {token['access_token']}") == DaemonPrincipal(
        parsed.daemon_id, ME.user_id, PUBLIC_KEY, ("anthropic", "github"))
    assert service.daemons.gets == gets + 1  # one read per authentication
    actions = [e["action"] for e in service.audit.events]
    assert actions == ["daemon.link"] and token["access_token"] not in repr(service.audit.events)


def test_denied_and_expired_and_unknown_codes(service, clock):
    denied = service.device_authorization(DEVICE, requesting_ip=None)
    service.deny(ME, denied["user_code"])
    assert oauth_error(lambda: service.token(grant(denied["device_code"]))) == (400, "access_denied")
    assert oauth_error(lambda: service.token(grant("no-such-code"))) == (400, "invalid_grant")

    waiting = service.device_authorization(DEVICE, requesting_ip=None)
    clock.advance(TTL)
    assert oauth_error(lambda: service.token(grant(waiting["device_code"]))) == (400, "expired_token")
    assert oauth_error(lambda: service.token(grant(denied["device_code"]))) == (400, "expired_token")
    with pytest.raises(NotFound):
        service.approve(ME, waiting["user_code"], {})


def test_approved_but_not_exchanged_before_expiry_is_expired(service, clock):
    started, _ = link(service, clock)
    clock.advance(TTL)
    assert oauth_error(lambda: service.token(grant(started["device_code"]))) == (400, "expired_token")


def test_token_request_checks(service):
    code = service.device_authorization(DEVICE, requesting_ip=None)["device_code"]
    assert oauth_error(lambda: service.token(grant(code, grant_type="authorization_code"))) == (
        400, "unsupported_grant_type")
    assert oauth_error(lambda: service.token({k: v for k, v in grant(code).items() if k != "grant_type"})) == (
        400, "invalid_request")
    assert oauth_error(lambda: service.token(grant(code, client_id="other"))) == (400, "invalid_client")
    assert oauth_error(lambda: service.token({"grant_type": DEVICE_GRANT_TYPE, "client_id": "relay-cloud-cli"})) == (
        400, "invalid_request")


def test_decisions_belong_to_the_decider_and_others_see_404(service, clock):
    started = service.device_authorization(DEVICE, requesting_ip="203.0.113.9")
    code = started["user_code"]
    view = service.lookup(OTHER, code.lower().replace("-", ""))  # pending: anyone holding the code may look
    assert view == {"user_code": code, "machine_id": "laptop-1", "name": "My laptop", "requesting_ip": "203.0.113.9",
                    "requested_at": int(clock()), "expires_at": int(clock()) + TTL, "status": "pending"}
    service.approve(ME, code, {})
    assert service.lookup(ME, code)["status"] == "approved"
    for call in (lambda: service.lookup(OTHER, code), lambda: service.approve(OTHER, code, {}),
                 lambda: service.deny(OTHER, code)):
        with pytest.raises(NotFound) as raised:
            call()
        assert raised.value.code == "LINK_REQUEST_NOT_FOUND"
    for call in (lambda: service.approve(ME, code, {}), lambda: service.deny(ME, code)):
        with pytest.raises(Conflict) as raised:
            call()
        assert raised.value.code == "LINK_REQUEST_DECIDED"


def test_approve_validates_allowed_providers(service):
    code = service.device_authorization(DEVICE, requesting_ip=None)["user_code"]
    for body in ({"allowed_providers": "anthropic"}, {"allowed_providers": [1]}, {"allowed_providers": ["nope"]}):
        with pytest.raises(ValidationFailed):
            service.approve(ME, code, body)
    assert service.lookup(ME, code)["status"] == "pending"


def test_failed_lookups_are_limited_per_user_per_window(limited, clock):
    code = limited.device_authorization(DEVICE, requesting_ip=None)["user_code"]
    for guess in range(10):
        with pytest.raises(NotFound):
            limited.lookup(ME, "ZZZZ-ZZZ" + "BCDFGHJKLM"[guess])
    for call in (lambda: limited.lookup(ME, "ZZZZ-ZZZZ"), lambda: limited.lookup(ME, code),
                 lambda: limited.approve(ME, code, {}), lambda: limited.deny(ME, "garbage")):
        with pytest.raises(RateLimited) as raised:
            call()
        assert raised.value.status == 429 and raised.value.code == "RATE_LIMITED"
    assert limited.lookup(OTHER, code)["status"] == "pending"  # per user
    clock.advance(600)
    with pytest.raises(NotFound):  # a new window (the code has expired meanwhile)
        limited.lookup(ME, code)


def test_listing_presence_and_agents_follow_the_clock(service, clock):
    started, approved = link(service, clock)
    key = service.token(grant(started["device_code"]))["access_token"]
    linked_at = int(clock())
    service.daemons.items[approved["daemon_id"]] = replace(service.daemons.items[approved["daemon_id"]],
                                                           last_seen_at=linked_at)
    listing = service.list(ME)["daemons"]
    assert listing == [{"daemon_id": approved["daemon_id"], "name": "My laptop", "machine_id": "laptop-1",
                        "linked_at": linked_at, "last_seen_at": linked_at, "presence": "online", "agents": [],
                        "allowed_providers": [], "heartbeat_interval_s": 15}]
    clock.advance(25)
    assert service.list(ME)["daemons"][0]["presence"] == "stale"
    clock.advance(10)
    caller = service.authenticate(f"Bearer {key}")
    assert service.agents(caller) == {"daemons": [{"daemon_id": approved["daemon_id"], "name": "My laptop",
                                                   "presence": "offline", "agents": []}]}
    assert service.list(OTHER) == {"daemons": []}


def test_relinking_the_same_machine_creates_a_second_daemon(service, clock):
    first, a = link(service, clock)
    service.token(grant(first["device_code"]))
    clock.advance(60)
    second, b = link(service, clock)
    service.token(grant(second["device_code"]))
    assert a["daemon_id"] != b["daemon_id"]
    assert [d["daemon_id"] for d in service.list(ME)["daemons"]] == [a["daemon_id"], b["daemon_id"]]


def test_unlink_from_the_dashboard_and_from_the_cli(service, clock):
    first, a = link(service, clock)
    key_a = service.token(grant(first["device_code"]))["access_token"]
    second, b = link(service, clock)
    key_b = service.token(grant(second["device_code"]))["access_token"]

    with pytest.raises(NotFound):
        service.unlink(OTHER, a["daemon_id"])
    with pytest.raises(NotFound):
        service.unlink(ME, "not-an-id")
    service.unlink(ME, a["daemon_id"])
    with pytest.raises(Unauthenticated) as raised:
        service.authenticate(f"Bearer {key_a}")
    assert raised.value.code == "DAEMON_KEY_REVOKED"
    with pytest.raises(NotFound):
        service.unlink(ME, a["daemon_id"])

    caller = service.authenticate(f"Bearer {key_b}")
    service.unlink_self(caller)
    with pytest.raises(Unauthenticated) as raised:
        service.authenticate(f"Bearer {key_b}")
    assert raised.value.code == "DAEMON_KEY_REVOKED"
    assert service.list(ME) == {"daemons": []}
    assert [e["action"] for e in service.audit.events].count("daemon.unlink") == 2


def test_unlinked_before_the_exchange_never_gets_a_key(service, clock):
    started, approved = link(service, clock)
    service.unlink(ME, approved["daemon_id"])
    assert oauth_error(lambda: service.token(grant(started["device_code"]))) == (400, "invalid_grant")


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Basic cmx5Og==", "Bearer rly_nope", "Bearer rly_dmn_" + "0" * 32 + "_" + "a" * 43,
])
def test_bad_daemon_keys_are_invalid(service, header):
    with pytest.raises(Unauthenticated) as raised:
        service.authenticate(header)
    assert raised.value.status == 401 and raised.value.code == "DAEMON_KEY_INVALID"


def test_a_wrong_secret_for_a_real_daemon_is_invalid(service, clock):
    started, approved = link(service, clock)
    key = service.token(grant(started["device_code"]))["access_token"]
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthenticated) as raised:
        service.authenticate(f"Bearer {forged}")
    assert raised.value.code == "DAEMON_KEY_INVALID"


# -- heartbeat (one conditional write; the key is verified by the write) -----------------------------

def linked_key(service, clock, principal=ME) -> tuple[str, str]:
    started, approved = link(service, clock, principal)
    return approved["daemon_id"], service.token(grant(started["device_code"]))["access_token"]


def claim_of(key: str):
    from relay_cloud.domain.daemons import daemon_key_claim

    return daemon_key_claim(f"Bearer {key}")


def test_a_heartbeat_records_presence_and_replaces_the_inventory(service, clock):
    daemon_id, key = linked_key(service, clock)
    assert service.list(ME)["daemons"][0]["presence"] == "offline"  # never seen
    gets = service.daemons.gets
    reply = service.heartbeat(claim_of(key), {
        "agents": [{"name": "claude-1", "provider": "anthropic", "status": "running", "pid": 4242},
                   {"name": "codex.2", "status": "idle"}, {"name": "g_3"}],
        "metrics": {"cpu": 0.25, "load.1m": 3}})
    assert reply == {"commands": [], "heartbeat_interval_s": 15}
    assert service.daemons.gets == gets and service.daemons.heartbeats == 1  # no read, one write
    listed = service.list(ME)["daemons"][0]
    assert listed["presence"] == "online" and listed["last_seen_at"] == int(clock())
    assert [a["name"] for a in listed["agents"]] == ["claude-1", "codex.2", "g_3"]
    assert listed["agents"][0] == {"name": "claude-1", "provider": "anthropic", "status": "running", "pid": 4242}
    assert service.daemons.metrics[daemon_id] == {"cpu": 0.25, "load.1m": 3}

    clock.advance(15)
    service.heartbeat(claim_of(key), {"agents": [{"name": "codex.2", "status": "stopped", "extra": "dropped"}]})
    caller = service.authenticate(f"Bearer {key}")
    assert service.agents(caller)["daemons"][0]["agents"] == [{"name": "codex.2", "status": "stopped"}]  # replaced
    assert service.daemons.metrics[daemon_id] == {}
    clock.advance(25)
    assert service.list(ME)["daemons"][0]["presence"] == "stale"
    clock.advance(10)
    assert service.list(ME)["daemons"][0]["presence"] == "offline"
    service.heartbeat(claim_of(key), {"agents": []})
    listed = service.list(ME)["daemons"][0]
    assert (listed["presence"], listed["agents"], listed["last_seen_at"]) == ("online", [], int(clock()))


def test_a_heartbeat_returns_queued_commands(service, clock):
    daemon_id, key = linked_key(service, clock)
    service.daemons.commands[daemon_id] = [{"id": "cmd_1"}]
    assert service.heartbeat(claim_of(key), {"agents": []})["commands"] == [{"id": "cmd_1"}]


@pytest.mark.parametrize("body", [
    {}, {"agents": None}, {"agents": "claude"}, {"agents": [{"name": f"a{n}"} for n in range(101)]},
    {"agents": ["claude"]}, {"agents": [{}]}, {"agents": [{"name": ""}]}, {"agents": [{"name": "a" * 65}]},
    {"agents": [{"name": "has space"}]}, {"agents": [{"name": "a/b"}]}, {"agents": [{"name": 7}]},
    {"agents": [{"name": "a"}, {"name": "a"}]}, {"agents": [{"name": "a", "provider": "p" * 33}]},
    {"agents": [{"name": "a", "provider": 1}]}, {"agents": [{"name": "a", "status": "zombie"}]},
    {"agents": [{"name": "a", "pid": "12"}]}, {"agents": [{"name": "a", "pid": True}]},
    {"agents": [{"name": "a", "pid": -1}]}, {"agents": [{"name": "a", "pid": 1.5}]},
    {"agents": [], "metrics": []}, {"agents": [], "metrics": {"cpu": "high"}}, {"agents": [], "metrics": {"ok": True}},
    {"agents": [], "metrics": {"x": float("nan")}}, {"agents": [], "metrics": {"x": 1e16}},
    {"agents": [], "metrics": {"bad key": 1}}, {"agents": [], "metrics": {f"m{n}": n for n in range(33)}},
])
def test_heartbeat_input_is_validated_before_anything_is_written(service, clock, body):
    _, key = linked_key(service, clock)
    with pytest.raises(ValidationFailed) as raised:
        service.heartbeat(claim_of(key), body)
    assert raised.value.status == 400 and raised.value.code == "VALIDATION_FAILED"
    assert service.daemons.heartbeats == 0


def test_a_hundred_agents_is_the_limit(service, clock):
    _, key = linked_key(service, clock)
    agents = [{"name": f"agent-{n}", "pid": n + 1} for n in range(100)]
    service.heartbeat(claim_of(key), {"agents": agents, "metrics": None})
    assert len(service.list(ME)["daemons"][0]["agents"]) == 100


def test_wrong_revoked_and_foreign_keys_are_the_same_401(service, clock):
    daemon_id, key = linked_key(service, clock)
    other_id, other_key = linked_key(service, clock, OTHER)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    foreign = f"rly_{daemon_id}_{parse_daemon_key(other_key).secret}"  # another user's secret, this daemon's id
    unknown = "rly_dmn_" + "0" * 32 + "_" + "a" * 43
    service.unlink(OTHER, other_id)
    for bad in (forged, foreign, unknown, other_key):
        with pytest.raises(Unauthenticated) as raised:
            service.heartbeat(claim_of(bad), {"agents": [{"name": "intruder"}]})
        assert raised.value.status == 401 and raised.value.code == "DAEMON_KEY_INVALID"
    assert service.daemons.items[daemon_id].last_seen_at is None and service.daemons.items[daemon_id].agents == ()
    assert service.daemons.items[other_id].agents == ()
    service.unlink(ME, daemon_id)
    with pytest.raises(Unauthenticated) as raised:
        service.heartbeat(claim_of(key), {"agents": []})
    assert raised.value.code == "DAEMON_KEY_INVALID"  # revoked: not told apart from a wrong key


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic cmx5Og==", "Bearer rly_nope",
                                    "Bearer rly_dmn_" + "0" * 32 + "_short"])
def test_the_heartbeat_claim_is_a_format_check(header):
    from relay_cloud.domain.daemons import daemon_key_claim

    assert daemon_key_claim(header) is None
    secret = "s" * 43
    claimed = daemon_key_claim(f"bearer rly_dmn_{'a' * 32}_{secret}")
    assert claimed.daemon_id == "dmn_" + "a" * 32 and claimed.key_hash == sha256_hex(secret)


# -- link requests per address (SPEC C14) -------------------------------------------------------------

def test_twenty_link_requests_per_address_then_429_slow_down_until_the_next_window(limited, clock):
    for _ in range(20):
        limited.device_authorization(DEVICE, requesting_ip="203.0.113.9")
    clock.advance(599)
    with pytest.raises(DeviceGrantError) as raised:
        limited.device_authorization(DEVICE, requesting_ip="203.0.113.9")
    assert raised.value.status == 429 and raised.value.body() == {
        "error": "slow_down", "error_description": "Too many link requests from this address; retry in 1 seconds"}
    assert len(limited.links.requests) == 20  # the refused request stored nothing
    limited.device_authorization(DEVICE, requesting_ip="198.51.100.7")  # per address
    clock.advance(1)
    limited.device_authorization(DEVICE, requesting_ip="203.0.113.9")  # a new window
    assert len(limited.links.requests) == 22


def test_ipv6_addresses_count_per_64_and_invalid_requests_do_not_count(limited):
    for _ in range(5):
        with pytest.raises(DeviceGrantError):
            limited.device_authorization({**DEVICE, "client_id": "evil"}, requesting_ip="2001:db8:1:2::1")
    for n in range(20):
        limited.device_authorization(DEVICE, requesting_ip=f"2001:db8:1:2::{n + 1:x}")
    assert oauth_error(lambda: limited.device_authorization(DEVICE, requesting_ip="2001:db8:1:2:ffff::9")) == (
        429, "slow_down")
    limited.device_authorization(DEVICE, requesting_ip="2001:db8:1:3::1")  # the next /64
    assert len(limited.links.requests) == 21


def test_requests_without_an_address_share_one_bucket(limited):
    for _ in range(20):
        limited.device_authorization(DEVICE, requesting_ip=None)
    assert oauth_error(lambda: limited.device_authorization(DEVICE, requesting_ip="")) == (429, "slow_down")
