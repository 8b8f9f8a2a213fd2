"""The token-refresh sweep (SPEC C3) against in-memory fakes: injectable clock and sleep, no sockets."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.providers import PermanentRefreshError, TokenSet, UpstreamUnavailable
from relay_cloud.domain.errors import DependencyUnavailable
from relay_cloud.domain.providers import (
    DEVICE_FLOW,
    WORKSPACE_LOGIN,
    ProviderSpec,
    Registry,
    health,
    refresh_due_at,
)
from relay_cloud.services import refresh as r
from relay_cloud.services.refresh import Credential, DueCredential, RefreshService
from tests.fakes import Clock

NOW = 1_800_000_000  # a multiple of 300: the start of a bucket
BUCKET = r.BUCKET_SECONDS


# ----------------------------------------------------------------------------------------- fakes


class FakeStore:
    """The RefreshStore port with DynamoDB's conditional semantics, in memory."""

    def __init__(self):
        self.items: dict[tuple[str, str], dict] = {}
        self.cursor_value: int | None = None
        self.queried: list[int] = []
        self.events: list[str] = []
        self.fail_store_tokens = 0  # raise DependencyUnavailable this many times

    def add(self, user, provider="acme", *, due, generation=1, expires=None, tokens=None, method=DEVICE_FLOW,
            lease_until=None, status="valid"):
        tokens = tokens or {"access_token": f"at-{user}", "refresh_token": f"rt-{user}", "token_type": "bearer",
                            "scope": "read"}
        self.items[(user, provider)] = {
            "user_id": user, "provider": provider, "method": method, "purpose": "oauth_tokens",
            "ciphertext": FakeVault.wrap(tokens), "key_version": 1, "generation": generation, "status": status,
            "refresh_due_at": due, "indexed": due is not None, "token_expires_at": expires if expires else due,
            "attempts": 0, "lease_owner": "other" if lease_until else None, "lease_until": lease_until,
            "failure_reason": None, "last_refreshed_at": None, "token_issued_at": None,
        }
        return self.items[(user, provider)]

    def tokens(self, user, provider="acme") -> dict:
        return FakeVault.unwrap(self.items[(user, provider)]["ciphertext"])

    def _credential(self, item) -> Credential:
        return Credential(item["user_id"], item["provider"], item["method"], item["purpose"], item["ciphertext"],
                          item["key_version"], item["generation"], item["status"],
                          item["refresh_due_at"] if item["indexed"] else None, item["token_expires_at"],
                          item["attempts"], item["lease_owner"])

    # port

    def due(self, bucket, now):
        self.queried.append(bucket)
        page = sorted((i for i in self.items.values()
                       if i["indexed"] and r.bucket_of(i["refresh_due_at"]) == bucket and i["refresh_due_at"] <= now),
                      key=lambda i: i["refresh_due_at"])
        for item in page:
            yield DueCredential(item["user_id"], item["provider"], item["generation"], item["refresh_due_at"], bucket)

    def get(self, user_id, provider):
        item = self.items.get((user_id, provider))
        return self._credential(item) if item else None

    def acquire(self, user_id, provider, *, generation, owner, now, lease_until, require_due=True):
        item = self.items.get((user_id, provider))
        if (item is None or (item["lease_until"] is not None and item["lease_until"] >= now)
                or item["generation"] != generation or not item["indexed"]
                or (require_due and item["refresh_due_at"] > now)):
            return None
        item.update(lease_owner=owner, lease_until=lease_until)
        self.events.append("lease")
        return self._credential(item)

    def store_tokens(self, credential, update, *, owner, now):
        if self.fail_store_tokens:
            self.fail_store_tokens -= 1
            raise DependencyUnavailable("db down", code="DATABASE_UNAVAILABLE")
        item = self.items.get((credential.user_id, credential.provider))
        if item is None or item["lease_owner"] != owner:
            return r.LEASE_LOST
        item.update(ciphertext=update.ciphertext, key_version=update.key_version, generation=item["generation"] + 1,
                    token_issued_at=update.issued_at, token_expires_at=update.expires_at,
                    refresh_due_at=update.due_at, indexed=update.due_at is not None, last_refreshed_at=now,
                    status="valid", failure_reason=None, lease_owner=None, lease_until=None, attempts=0)
        self.events.append("stored")
        return r.STORED

    def reschedule(self, credential, *, owner, due_at, attempts, now):
        item = self.items.get((credential.user_id, credential.provider))
        if item is None or item["lease_owner"] != owner:
            return False
        item.update(refresh_due_at=due_at, indexed=True, attempts=attempts, lease_owner=None, lease_until=None)
        return True

    def record_failure(self, credential, *, owner, status, reason, now):
        item = self.items.get((credential.user_id, credential.provider))
        if item is None or item["lease_owner"] != owner:
            return False
        item.update(status=status, failure_reason=reason, refresh_due_at=None, indexed=False, attempts=0,
                    lease_owner=None, lease_until=None)
        return True

    def cursor(self):
        return self.cursor_value

    def set_cursor(self, bucket, now):
        self.cursor_value = bucket


class FakeVault:
    def __init__(self, events=None):
        self.calls: list[str] = []
        self.events = events if events is not None else []

    @staticmethod
    def wrap(payload: dict) -> bytes:
        return b"sealed:" + json.dumps(payload).encode()[::-1]

    @staticmethod
    def unwrap(ciphertext: bytes) -> dict:
        assert ciphertext.startswith(b"sealed:")
        return json.loads(ciphertext[len(b"sealed:"):][::-1])

    def decrypt(self, ctx, ciphertext, *, actor, reason):
        self.calls.append(f"decrypt:{ctx.provider}")
        assert (ctx.credential_id, ctx.purpose) == ("default", "oauth_tokens") and actor and reason
        return json.dumps(self.unwrap(ciphertext)).encode()

    def seal(self, ctx, plaintext):
        self.calls.append(f"seal:{ctx.provider}")
        self.events.append("seal")
        return type("Sealed", (), {"ciphertext": self.wrap(json.loads(plaintext)), "key_version": 1,
                                   "new_data_key": None})()


class FakeUpstream:
    """Answers from a script: a TokenSet, an exception, or a callable(refresh_token)."""

    def __init__(self, *script, events=None):
        self.script = list(script)
        self.calls: list[str] = []
        self.events = events if events is not None else []
        self.rotation = 0

    def refresh(self, spec, refresh_token):
        self.calls.append(refresh_token)
        self.events.append("upstream")
        step = self.script.pop(0) if self.script else "rotate"
        if step == "rotate":
            self.rotation += 1
            return TokenSet(f"at-new-{self.rotation}", f"rt-new-{self.rotation}", expires_in=3600, scope="read")
        if isinstance(step, Exception):
            raise step
        return step


def acme(**changes) -> ProviderSpec:
    spec = ProviderSpec("acme", "Acme", "#000", "test", methods=(DEVICE_FLOW,), vault_allowed=True,
                        token_url="https://idp.test/token", client_id="client")
    return replace(spec, **changes)


CLAUDE = ProviderSpec("claude-sub", "Claude subscription", "#111", "test", methods=(WORKSPACE_LOGIN,),
                      vault_allowed=False)


@pytest.fixture
def clock():
    return Clock(NOW)


@pytest.fixture
def slept(clock):
    naps: list[float] = []

    def sleep(seconds):
        naps.append(seconds)
        clock.advance(seconds)

    sleep.naps = naps
    return sleep


@pytest.fixture
def store():
    return FakeStore()


def service(store, clock, sleep, upstream=None, vault=None, registry=None, **kwargs):
    return RefreshService(registry or Registry([acme(), CLAUDE]), store, vault or FakeVault(),
                          upstream or FakeUpstream(), clock, sleep, "unit", **kwargs)


# -------------------------------------------------------------------------------------- selection


def test_bucket_size_matches_the_key_module():
    assert r.BUCKET_SECONDS == keys.REFRESH_BUCKET_SECONDS
    assert r.bucket_of(NOW + 299) == keys.refresh_bucket(NOW + 299) == NOW


def test_first_sweep_looks_back_a_bounded_number_of_buckets_and_only_at_due_items(store, clock, slept):
    store.add("now", due=NOW + 10)
    store.add("later-in-bucket", due=NOW + 200)  # same bucket, not yet due
    store.add("three-back", due=NOW - 3 * BUCKET + 7)
    store.add("outside", due=NOW - (r.DEFAULT_LOOKBACK_BUCKETS + 1) * BUCKET)
    upstream = FakeUpstream()
    report = service(store, clock, slept, upstream).sweep(NOW + 60)

    assert store.queried == [NOW - k * BUCKET for k in range(r.DEFAULT_LOOKBACK_BUCKETS, -1, -1)]
    assert sorted(upstream.calls) == ["rt-now", "rt-three-back"]
    assert (report.due, report.refreshed, report.failed, report.rescheduled) == (2, 2, 0, 0)
    assert report.items_read == 3  # two index items and the cursor
    assert report.cursor == NOW == store.cursor_value
    assert store.items[("later-in-bucket", "acme")]["generation"] == 1  # untouched


def test_the_cursor_reaches_back_past_the_default_look_back_after_an_outage(store, clock, slept):
    store.cursor_value = NOW - 40 * BUCKET  # the last sweep that ran stopped there
    store.add("old", due=NOW - 39 * BUCKET + 1)
    report = service(store, clock, slept).sweep(NOW)
    assert report.refreshed == 1 and report.buckets == 41 and report.cursor == NOW


def test_a_long_outage_is_caught_up_over_several_sweeps_without_losing_anything(store, clock, slept):
    store.cursor_value = NOW - (r.MAX_BUCKETS_PER_SWEEP + 10) * BUCKET
    store.add("ancient", due=store.cursor_value + 5)
    store.add("recent", due=NOW - 2 * BUCKET)
    svc = service(store, clock, slept)
    first = svc.sweep(NOW)
    assert first.refreshed == 1 and first.buckets == r.MAX_BUCKETS_PER_SWEEP
    assert first.cursor == NOW - 10 * BUCKET  # the first bucket it did not reach
    second = svc.sweep(NOW)
    assert second.refreshed == 1 and second.cursor == NOW


def test_a_credential_leased_elsewhere_pins_the_cursor_until_it_is_resolved(store, clock, slept):
    store.add("held", due=NOW - 2 * BUCKET, lease_until=NOW + 60)  # a crashed or slow sweep holds it
    svc = service(store, clock, slept)
    first = svc.sweep(NOW)
    assert (first.due, first.busy, first.refreshed, first.cursor) == (1, 1, 0, NOW - 2 * BUCKET)
    clock.advance(BUCKET)
    second = svc.sweep()
    assert second.refreshed == 1 and second.cursor == NOW + BUCKET


def test_a_spent_time_budget_leaves_the_rest_in_its_bucket(store, clock, slept):
    for n in range(3):
        store.add(f"u{n}", due=NOW - BUCKET + n)
    upstream = FakeUpstream()
    original = upstream.refresh

    def slow(spec, token):
        clock.advance(20)
        return original(spec, token)

    upstream.refresh = slow
    report = service(store, clock, slept, upstream).sweep(NOW, budget_s=30)
    assert report.refreshed == 2 and report.budget_exhausted and report.cursor == NOW - BUCKET
    assert service(store, clock, slept, upstream).sweep(NOW + 60).refreshed == 1


def test_workers_refresh_in_parallel_with_the_same_outcome(store, clock, slept):
    for n in range(30):
        store.add(f"u{n}", due=NOW - n)
    report = service(store, clock, slept, workers=4).sweep(NOW)
    assert (report.due, report.refreshed, report.items_read) == (30, 30, 31)


# ---------------------------------------------------------------------------------- the 10 % rule


def test_refresh_is_due_with_ten_percent_of_the_lifetime_left():
    assert refresh_due_at(1000, 2000) == 1900
    assert refresh_due_at(0, 3600) == 3240
    assert refresh_due_at(5, None) is None


def test_new_tokens_are_scheduled_at_ten_percent_of_their_lifetime_left(store, clock, slept):
    store.add("u", due=NOW - 5)
    upstream = FakeUpstream(TokenSet("at-2", "rt-2", expires_in=7200))
    assert service(store, clock, slept, upstream).refresh_one("u", "acme") == r.REFRESHED
    item = store.items[("u", "acme")]
    assert item["token_expires_at"] == NOW + 7200
    assert item["refresh_due_at"] == NOW + 7200 - 720 and item["indexed"]
    assert health(status=item["status"], expires_at=item["token_expires_at"], refresh_due=item["refresh_due_at"],
                  now=NOW) == "valid"


def test_a_token_without_expiry_leaves_the_index(store, clock, slept):
    store.add("u", due=NOW - 5)
    service(store, clock, slept, FakeUpstream(TokenSet("at-2", "rt-2", expires_in=None))).refresh_one("u", "acme")
    assert store.items[("u", "acme")]["indexed"] is False


# ------------------------------------------------------------------------------------- persisting


def test_a_rotated_refresh_token_is_stored_before_success_is_reported(store, clock, slept):
    events: list[str] = []
    store.events = events
    store.add("u", due=NOW - 5, generation=4)
    upstream = FakeUpstream(events=events)
    outcome = service(store, clock, slept, upstream, FakeVault(events)).refresh_one("u", "acme")

    assert outcome == r.REFRESHED
    assert events == ["lease", "upstream", "seal", "stored"]  # nothing between the provider and the store
    assert upstream.calls == ["rt-u"]
    assert store.tokens("u") == {"access_token": "at-new-1", "refresh_token": "rt-new-1", "token_type": "bearer",
                                 "scope": "read"}
    item = store.items[("u", "acme")]
    assert (item["generation"], item["lease_owner"], item["last_refreshed_at"]) == (5, None, NOW)


def test_a_provider_that_does_not_rotate_keeps_the_old_refresh_token(store, clock, slept):
    store.add("u", due=NOW - 5)
    upstream = FakeUpstream(TokenSet("at-2", None, expires_in=600, scope=None))
    assert service(store, clock, slept, upstream).refresh_one("u", "acme") == r.REFRESHED
    assert store.tokens("u") == {"access_token": "at-2", "refresh_token": "rt-u", "token_type": "bearer",
                                 "scope": "read"}


def test_storing_is_retried_and_success_is_never_reported_unstored(store, clock, slept):
    store.add("u", due=NOW - 5)
    store.fail_store_tokens = 2
    assert service(store, clock, slept).refresh_one("u", "acme") == r.REFRESHED
    assert store.tokens("u")["refresh_token"] == "rt-new-1"

    store.add("v", due=NOW - 5)
    store.fail_store_tokens = 99
    assert service(store, clock, slept).refresh_one("v", "acme") == r.ERROR
    assert store.tokens("v")["refresh_token"] == "rt-v"


def test_a_reconnect_during_the_refresh_wins_and_nothing_is_overwritten(store, clock, slept):
    store.add("u", due=NOW - 5)
    upstream = FakeUpstream()
    original = upstream.refresh

    def reconnect_meanwhile(spec, token):
        store.add("u", due=NOW + 9999, generation=7, tokens={"access_token": "fresh", "refresh_token": "rt-fresh"})
        return original(spec, token)

    upstream.refresh = reconnect_meanwhile
    assert service(store, clock, slept, upstream).refresh_one("u", "acme") == r.SUPERSEDED
    assert store.tokens("u")["refresh_token"] == "rt-fresh"


def test_only_one_of_two_callers_gets_the_lease(store, clock, slept):
    store.add("u", due=NOW - 5)
    svc = service(store, clock, slept)
    first = svc.store.get("u", "acme")
    assert svc.store.acquire("u", "acme", generation=first.generation, owner="a", now=NOW, lease_until=NOW + 120)
    assert svc.refresh_one("u", "acme") == r.BUSY
    assert svc.upstream.calls == []


def test_refresh_one_does_nothing_before_the_due_time(store, clock, slept):
    store.add("u", due=NOW + 100)
    svc = service(store, clock, slept)
    assert svc.refresh_one("u", "acme") == r.NOT_DUE
    assert svc.refresh_one("nobody", "acme") == r.NOT_CONNECTED
    assert svc.upstream.calls == []
    assert svc.refresh_one("u", "acme", force=True) == r.REFRESHED


# ---------------------------------------------------------------------------------------- retries


def test_transient_errors_are_retried_with_backoff_then_succeed(store, clock, slept):
    store.add("u", due=NOW - 5)
    upstream = FakeUpstream(UpstreamUnavailable("acme"), UpstreamUnavailable("acme"), "rotate")
    assert service(store, clock, slept, upstream).refresh_one("u", "acme") == r.REFRESHED
    assert slept.naps == [0.25, 0.5]
    assert upstream.calls == ["rt-u"] * 3


def test_transient_errors_past_the_budget_reschedule_with_growing_backoff_without_failing(store, clock, slept):
    store.add("u", due=NOW - 5)
    upstream = FakeUpstream(*[UpstreamUnavailable("acme")] * 1000)
    svc = service(store, clock, slept, upstream)
    started = clock.now
    assert svc.refresh_one("u", "acme") == r.RESCHEDULED
    assert slept.naps == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0] and sum(slept.naps) <= r.RETRY_BUDGET_SECONDS
    item = store.items[("u", "acme")]
    assert item["status"] == "valid" and item["failure_reason"] is None and item["lease_owner"] is None
    assert item["refresh_due_at"] == int(started + sum(slept.naps)) + 300 and item["attempts"] == 1

    delays = []
    for _ in range(5):
        clock.now = item["refresh_due_at"]
        before = int(clock.now)
        report = svc.sweep()
        assert report.rescheduled == 1 and report.failed == 0
        delays.append(item["refresh_due_at"] - before)
    assert [round(d, -2) for d in delays] == [600, 1200, 2400, 3600, 3600]  # +10, +20, +40 min, then hourly
    assert item["status"] == "valid"

    upstream.script = ["rotate"]
    clock.now = item["refresh_due_at"]
    assert svc.sweep().refreshed == 1
    assert item["attempts"] == 0


def test_an_unreachable_vault_reschedules_instead_of_failing(store, clock, slept):
    store.add("u", due=NOW - 5)

    class DownVault(FakeVault):
        def decrypt(self, *args, **kwargs):
            raise DependencyUnavailable("kms down", code="KMS_UNAVAILABLE")

    svc = service(store, clock, slept, vault=DownVault())
    assert svc.refresh_one("u", "acme") == r.RESCHEDULED
    assert svc.upstream.calls == []


# -------------------------------------------------------------------------------- permanent errors


@pytest.mark.parametrize(("revoked", "status"), [(True, "revoked"), (False, "refresh_failed")])
def test_a_permanent_error_is_recorded_with_its_reason_and_the_ciphertext_kept(store, clock, slept, revoked, status):
    store.add("u", due=NOW - 5)
    before = store.items[("u", "acme")]["ciphertext"]
    upstream = FakeUpstream(PermanentRefreshError("invalid_grant: token was revoked", revoked=revoked))
    report = service(store, clock, slept, upstream).sweep(NOW)
    assert (report.failed, report.refreshed, report.rescheduled) == (1, 0, 0)
    assert upstream.calls == ["rt-u"]  # never retried
    item = store.items[("u", "acme")]
    assert item["status"] == status
    assert item["failure_reason"] == "Acme refused the refresh: invalid_grant: token was revoked"
    assert item["indexed"] is False and item["ciphertext"] == before and item["lease_owner"] is None
    assert health(status=item["status"], expires_at=item["token_expires_at"], refresh_due=None, now=NOW) == status
    assert service(store, clock, slept, upstream).sweep(NOW + BUCKET).due == 0  # out of the index


def test_a_provider_whose_terms_forbid_the_vault_never_reaches_the_vault(store, clock, slept):
    store.add("u", "claude-sub", due=NOW - 5)
    vault, upstream = FakeVault(), FakeUpstream()
    report = service(store, clock, slept, upstream, vault).sweep(NOW)
    assert report.failed == 1
    assert vault.calls == [] and upstream.calls == []
    item = store.items[("u", "claude-sub")]
    assert item["status"] == "refresh_failed" and "terms do not let the cloud hold its tokens" in item["failure_reason"]


def test_a_provider_missing_from_the_registry_is_marked_failed_with_a_reason(store, clock, slept):
    store.add("u", "gone", due=NOW - 5)
    vault = FakeVault()
    assert service(store, clock, slept, vault=vault).refresh_one("u", "gone") == r.FAILED
    item = store.items[("u", "gone")]
    assert item["status"] == "refresh_failed" and item["failure_reason"] == (
        "provider 'gone' is no longer configured; reconnect")
    assert vault.calls == []


def test_stored_tokens_without_a_refresh_token_fail_with_a_reason(store, clock, slept):
    store.add("u", due=NOW - 5, tokens={"access_token": "at"})
    upstream = FakeUpstream()
    assert service(store, clock, slept, upstream).refresh_one("u", "acme") == r.FAILED
    assert store.items[("u", "acme")]["failure_reason"] == "no refresh token is stored; reconnect"
    assert upstream.calls == []


def test_the_failure_reason_is_bounded(store, clock, slept):
    store.add("u", due=NOW - 5)
    upstream = FakeUpstream(PermanentRefreshError("x" * 5000, revoked=False))
    service(store, clock, slept, upstream).refresh_one("u", "acme")
    assert len(store.items[("u", "acme")]["failure_reason"]) == r.FAILURE_REASON_LIMIT


def test_the_reschedule_backoff_schedule():
    assert [r.reschedule_delay(n) for n in range(6)] == [300, 600, 1200, 2400, 3600, 3600]


def test_unreadable_stored_tokens_fail_with_a_reason(store, clock, slept):
    store.add("u", due=NOW - 5)
    store.items[("u", "acme")]["ciphertext"] = b"sealed:not json"
    upstream = FakeUpstream()
    assert service(store, clock, slept, upstream).refresh_one("u", "acme") == r.FAILED
    assert store.items[("u", "acme")]["failure_reason"] == "the stored tokens can no longer be read; reconnect"
    assert upstream.calls == []
