"""The token-refresh sweep (SPEC C3): refresh OAuth connections before they expire, exactly once.

How a sweep finds work
    A connection that can be refreshed carries ``refresh_due_at`` (when at most 10 % of its token's
    lifetime is left) and the index keys ``gsi2pk = REFRESH#<5-minute bucket>`` /
    ``gsi2sk = <due_at>#<user>#<provider>``. A sweep queries buckets, never scans: from the *sweep
    cursor* (the oldest bucket that may still hold due work) through the current bucket, and in the
    current bucket only ``gsi2sk <= now``. Every item a query returns is due, so the reads per due
    credential are one index item (plus one cursor read per sweep).

    The cursor is what makes the look-back bounded *and* lossless: a sweep that leaves something behind
    (lease held by another sweep, time budget spent, an error) sets the cursor to that bucket; one that
    drains everything moves it to the current bucket. So a steady-state sweep queries one or two
    buckets, and after an outage of any length the next sweeps catch up from where the last one
    stopped (at most ``MAX_BUCKETS_PER_SWEEP`` buckets each) instead of forgetting old buckets. Without a
    cursor (first run) the look-back is ``DEFAULT_LOOKBACK_BUCKETS``.

Exactly once under concurrency (refresh tokens are single-use upstream)
    Only the holder of a conditional lease calls the provider: an UpdateItem sets ``lease_owner`` /
    ``lease_until`` if no live lease exists, the generation is the one we saw, and the refresh is still
    due. Its ``ALL_NEW`` answer is the authoritative item (ciphertext included), so no GetItem follows.
    After the provider answers, the new tokens are persisted FIRST (new ciphertext, generation + 1, new
    schedule, lease cleared) with the condition ``lease_owner = me``, and only then is success reported.

Failures
    * 429/5xx/network (``DependencyUnavailable``): retried with exponential backoff inside a small time
      budget per credential; when it runs out, the lease is released and the credential re-scheduled
      into a later bucket (+5, +10, +20, +40, then every 60 min), status untouched: never stranded,
      never marked failed for a blip.
    * ``PermanentRefreshError``: ``refresh_failed`` (or ``revoked``) with the provider's reason, removed
      from the index, ciphertext kept (the user reconnects).
    * A provider gone from the registry, or whose terms no longer allow the vault: ``refresh_failed``
      with a clear reason, decided before the vault is touched.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Protocol

from relay_cloud.domain.errors import DependencyUnavailable, VaultError
from relay_cloud.domain.providers import DEVICE_FLOW, refresh_due_at

logger = logging.getLogger(__name__)

BUCKET_SECONDS = 300  # relay_cloud.adapters.dynamo.keys.REFRESH_BUCKET_SECONDS (asserted in tests)
DEFAULT_LOOKBACK_BUCKETS = 12  # first run (no cursor yet): one hour back
MAX_BUCKETS_PER_SWEEP = 288  # catching up after an outage: at most a day of buckets per sweep
LEASE_SECONDS = 120  # > retry budget + HTTP timeout + persisting; a crashed holder frees it by then
RETRY_BUDGET_SECONDS = 10.0  # per credential, across attempts (transient upstream errors)
RETRY_INITIAL_BACKOFF = 0.25
RETRY_MAX_BACKOFF = 2.0
PERSIST_ATTEMPTS = 4  # new tokens in hand, the old refresh token already spent: try hard to store them
RESCHEDULE_BASE_SECONDS = 300  # +5, +10, +20, +40 min ...
RESCHEDULE_MAX_SECONDS = 3600  # ... then hourly
MIN_REFRESH_INTERVAL = 60  # never schedule the next refresh sooner than this (tiny lifetimes)
FAILURE_REASON_LIMIT = 400
ACTOR = "system:token-refresh"
PURPOSE = "oauth_tokens"
CONNECTION_ID = "default"

# Outcomes of one credential.
REFRESHED = "refreshed"
RESCHEDULED = "rescheduled"
FAILED = "failed"  # refresh_failed or revoked: recorded on the item
BUSY = "busy"  # another holder has the lease, or the item changed since it was read
NOT_DUE = "not_due"
NOT_CONNECTED = "not_connected"
SUPERSEDED = "superseded"  # reconnected, disconnected or shredded while we refreshed: nothing stored
ERROR = "error"  # our own dependency (DynamoDB, KMS) failed before the provider was called

# Results of RefreshStore.store_tokens.
STORED, LEASE_LOST, STALE_KEY = "stored", "lease_lost", "stale_key"


def bucket_of(at: int) -> int:
    return at - at % BUCKET_SECONDS


def reschedule_delay(attempts: int) -> int:
    """Backoff before the next try after ``attempts`` sweeps in a row ran out of retry budget."""
    return min(RESCHEDULE_BASE_SECONDS * 2 ** max(attempts, 0), RESCHEDULE_MAX_SECONDS)


# ------------------------------------------------------------------------------------------- ports


@dataclass(frozen=True)
class DueCredential:
    """One entry of the due index (a projection: no secret)."""

    user_id: str
    provider: str
    generation: int
    due_at: int
    bucket: int


@dataclass(frozen=True)
class Credential:
    """A leased (or read) connection, as the refresher needs it."""

    user_id: str
    provider: str
    method: str | None
    purpose: str
    ciphertext: bytes | None = field(repr=False)  # None: a workspace_login connection (never refreshed)
    key_version: int | None
    generation: int
    status: str | None
    refresh_due_at: int | None
    token_expires_at: int | None
    attempts: int = 0
    lease_owner: str | None = None


@dataclass(frozen=True)
class TokenUpdate:
    ciphertext: bytes = field(repr=False)
    key_version: int = 0
    issued_at: int = 0
    expires_at: int | None = None
    due_at: int | None = None  # None: no longer refreshable (leaves the index)


class RefreshStore(Protocol):
    """relay_cloud.adapters.dynamo.refresh_store.DynamoRefreshStore; every write is conditional."""

    def due(self, bucket: int, now: int) -> Iterator[DueCredential]: ...

    def get(self, user_id: str, provider: str) -> Credential | None: ...

    def acquire(self, user_id: str, provider: str, *, generation: int, owner: str, now: int, lease_until: int,
                require_due: bool = True) -> Credential | None: ...

    def store_tokens(self, credential: Credential, update: TokenUpdate, *, owner: str, now: int) -> str:
        """STORED, LEASE_LOST (reconnected, disconnected, lease taken over) or STALE_KEY (the data key
        version sealed under was rotated away meanwhile: seal again)."""

    def reschedule(self, credential: Credential, *, owner: str, due_at: int, attempts: int, now: int) -> bool: ...

    def record_failure(self, credential: Credential, *, owner: str, status: str, reason: str, now: int) -> bool: ...

    def cursor(self) -> int | None: ...

    def set_cursor(self, bucket: int, now: int) -> None: ...


# ------------------------------------------------------------------------------------------ report


@dataclass
class SweepReport:
    due: int = 0  # due credentials the index returned
    refreshed: int = 0
    failed: int = 0
    rescheduled: int = 0
    items_read: int = 0  # DynamoDB items read by the sweep (index items + the cursor)
    busy: int = 0
    superseded: int = 0
    errors: int = 0
    buckets: int = 0  # buckets queried
    cursor: int | None = None  # where the next sweep starts
    budget_exhausted: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    def count(self, outcome: str) -> None:
        attribute = {REFRESHED: "refreshed", FAILED: "failed", RESCHEDULED: "rescheduled", BUSY: "busy",
                     NOT_DUE: "busy", SUPERSEDED: "superseded", ERROR: "errors"}.get(outcome)
        if attribute:
            setattr(self, attribute, getattr(self, attribute) + 1)


# A credential whose outcome is one of these is no longer in the bucket it was read from.
_RESOLVED = frozenset({REFRESHED, FAILED, RESCHEDULED, SUPERSEDED, NOT_CONNECTED})


# ----------------------------------------------------------------------------------------- service


class RefreshService:
    def __init__(self, registry, store: RefreshStore, vault, upstream, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, owner_id: str = "refresher", *, workers: int = 1,
                 retry_budget_s: float = RETRY_BUDGET_SECONDS) -> None:
        self.registry = registry
        self.store = store
        self.vault = vault
        self.upstream = upstream
        self.clock = clock
        self.sleep = sleep
        self.owner_id = owner_id
        self.workers = max(1, workers)
        self.retry_budget_s = retry_budget_s

    def _now(self) -> int:
        return int(self.clock())

    # -- the sweep -------------------------------------------------------------------------------

    def sweep(self, now: int | None = None, *, budget_s: float | None = None) -> SweepReport:
        """Refresh every credential due at ``now``; ``budget_s`` bounds the time spent (Lambda timeout)."""
        now = self._now() if now is None else int(now)
        started = self.clock()
        report = SweepReport()
        current = bucket_of(now)
        cursor = self.store.cursor()
        report.items_read += 1
        start = current - DEFAULT_LOOKBACK_BUCKETS * BUCKET_SECONDS if cursor is None else min(int(cursor), current)
        buckets = list(range(start, current + 1, BUCKET_SECONDS))
        leftovers: list[int] = []
        if len(buckets) > MAX_BUCKETS_PER_SWEEP:
            leftovers.append(buckets[MAX_BUCKETS_PER_SWEEP])  # catch up over the next sweeps
            buckets = buckets[:MAX_BUCKETS_PER_SWEEP]
        report.buckets = len(buckets)

        lock = threading.Lock()
        position = {"bucket": None}

        def entries() -> Iterator[DueCredential]:
            for bucket in buckets:
                position["bucket"] = bucket
                yield from self.store.due(bucket, now)

        source = entries()

        def over_budget() -> bool:
            return budget_s is not None and self.clock() - started >= budget_s

        def work() -> None:
            while True:
                with lock:
                    if over_budget():
                        if not report.budget_exhausted and buckets:
                            report.budget_exhausted = True  # what was not reached waits in its bucket
                            leftovers.append(position["bucket"] if position["bucket"] is not None else buckets[0])
                        return
                    try:
                        entry = next(source)
                    except StopIteration:
                        return
                    except DependencyUnavailable:
                        report.errors += 1  # the query failed: this bucket and later ones wait
                        leftovers.append(position["bucket"] if position["bucket"] is not None else buckets[0])
                        return
                    report.due += 1
                    report.items_read += 1
                outcome = self._refresh_entry(entry, now)
                with lock:
                    report.count(outcome)
                    if outcome not in _RESOLVED:
                        leftovers.append(entry.bucket)

        if self.workers == 1:
            work()
        else:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="refresh") as pool:
                for future in [pool.submit(work) for _ in range(self.workers)]:
                    future.result()

        report.cursor = min(leftovers) if leftovers else current
        try:
            self.store.set_cursor(report.cursor, self._now())
        except DependencyUnavailable:
            report.errors += 1  # the old cursor stays: the next sweep only looks further back
        return report

    def _refresh_entry(self, entry: DueCredential, now: int) -> str:
        try:
            return self._lease_and_refresh(entry.user_id, entry.provider, entry.generation, require_due=True,
                                           at_least=now)
        except DependencyUnavailable as exc:
            logger.warning("refresh skipped: %s", exc.code, extra={"user_id": entry.user_id, "provider": entry.provider})
            return ERROR
        except Exception as exc:  # one bad item never stops the sweep; the cursor keeps its bucket
            logger.error("refresh crashed: %s", type(exc).__name__,
                         extra={"user_id": entry.user_id, "provider": entry.provider})
            return ERROR

    # -- one credential --------------------------------------------------------------------------

    def refresh_one(self, user_id: str, provider: str, *, force: bool = False) -> str:
        """Refresh one connection now if it is due (any time with ``force``): one consistent read, then
        the same lease as the sweep, so it never races a sweep or another caller into a second refresh."""
        credential = self.store.get(user_id, provider)
        if credential is None:
            return NOT_CONNECTED
        if credential.refresh_due_at is None:
            return NOT_DUE  # not refreshable (API key, failed, revoked, or no refresh token)
        if not force and credential.refresh_due_at > self._now():
            return NOT_DUE
        return self._lease_and_refresh(user_id, provider, credential.generation, require_due=not force)

    def _lease_and_refresh(self, user_id: str, provider: str, generation: int, *, require_due: bool,
                           at_least: int = 0) -> str:
        owner = f"{self.owner_id}#{secrets.token_hex(6)}"  # unique per lease, even within one process
        now = max(self._now(), at_least)  # a sweep's ``now`` is when it selected the item as due
        credential = self.store.acquire(user_id, provider, generation=generation, owner=owner, now=now,
                                        lease_until=now + LEASE_SECONDS, require_due=require_due)
        if credential is None:
            return BUSY
        return self._refresh_leased(credential, owner)

    def _refresh_leased(self, credential: Credential, owner: str) -> str:
        spec = self.registry.get(credential.provider)
        if spec is None:
            return self._fail(credential, owner, "refresh_failed",
                              f"provider {credential.provider!r} is no longer configured; reconnect")
        if not spec.vault_allowed:  # decided before the vault is touched
            return self._fail(credential, owner, "refresh_failed",
                              f"{spec.display_name}'s terms do not let the cloud hold its tokens; "
                              "connect it with its own login on your machine")
        if credential.method != DEVICE_FLOW or not spec.token_url:
            return self._fail(credential, owner, "refresh_failed",
                              f"{spec.display_name} connections made with {credential.method} cannot be refreshed")

        ctx = _context(credential)
        try:
            secret = json.loads(self.vault.decrypt(ctx, credential.ciphertext, actor=ACTOR,
                                                   reason="refresh the access token"))
        except (VaultError, ValueError):  # tampered, shredded, or not the JSON we store
            return self._fail(credential, owner, "refresh_failed", "the stored tokens can no longer be read; reconnect")
        except DependencyUnavailable:
            return self._reschedule(credential, owner)
        refresh_token = secret.get("refresh_token") if isinstance(secret, dict) else None
        if not refresh_token:
            return self._fail(credential, owner, "refresh_failed", "no refresh token is stored; reconnect")

        from relay_cloud.adapters.providers import PermanentRefreshError

        try:
            tokens = self._call_with_retries(spec, refresh_token)
        except PermanentRefreshError as exc:
            return self._fail(credential, owner, "revoked" if exc.revoked else "refresh_failed",
                              f"{spec.display_name} refused the refresh: {exc.reason}")
        if tokens is None:
            return self._reschedule(credential, owner)
        return self._persist(credential, owner, secret, tokens)

    def _call_with_retries(self, spec, refresh_token: str):
        """The provider's new TokenSet, or None when transient errors outlasted the budget."""
        started = self.clock()
        delay = RETRY_INITIAL_BACKOFF
        while True:
            try:
                return self.upstream.refresh(spec, refresh_token)
            except DependencyUnavailable:  # UpstreamUnavailable: 429, 5xx, network
                if self.clock() - started + delay > self.retry_budget_s:
                    return None
                self.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_BACKOFF)

    def _persist(self, credential: Credential, owner: str, previous: dict, tokens) -> str:
        """Store the new tokens before anything else sees them; the old refresh token is spent."""
        now = self._now()
        rotated = tokens.refresh_token or previous.get("refresh_token")
        payload = {"access_token": tokens.access_token, "refresh_token": rotated,
                   "token_type": tokens.token_type or previous.get("token_type") or "bearer",
                   "scope": tokens.scope if tokens.scope is not None else previous.get("scope")}
        expires_at = now + int(tokens.expires_in) if tokens.expires_in else None
        due = refresh_due_at(now, expires_at) if rotated and expires_at is not None else None
        if due is not None:
            due = max(due, now + MIN_REFRESH_INTERVAL)
        last_error: Exception | None = None
        for attempt in range(PERSIST_ATTEMPTS):
            try:
                sealed = self.vault.seal(_context(credential), json.dumps(payload, separators=(",", ":")).encode())
                if sealed.new_data_key is not None:
                    # The user's data keys are gone (account deleted): there is nothing to store into.
                    logger.warning("refresh dropped: no data key", extra=_log_keys(credential))
                    return SUPERSEDED
                stored = self.store.store_tokens(
                    credential,
                    TokenUpdate(sealed.ciphertext, sealed.key_version, issued_at=now, expires_at=expires_at, due_at=due),
                    owner=owner, now=now,
                )
            except DependencyUnavailable as exc:
                last_error = exc
                self.sleep(min(RETRY_INITIAL_BACKOFF * 2 ** attempt, RETRY_MAX_BACKOFF))
                continue
            if stored == STORED:
                return REFRESHED
            if stored == LEASE_LOST:
                # Reconnected, disconnected, or our lease was taken over: the item is not ours to write.
                logger.warning("refresh dropped: lease lost", extra=_log_keys(credential))
                return SUPERSEDED
            last_error = None  # STALE_KEY: a rotation retired the key version; seal under the new one
        logger.error("refresh could not be stored: %s", getattr(last_error, "code", "key_rotation"),
                     extra=_log_keys(credential))
        return ERROR

    def _reschedule(self, credential: Credential, owner: str) -> str:
        now = self._now()
        due = now + reschedule_delay(credential.attempts)
        if self.store.reschedule(credential, owner=owner, due_at=due, attempts=credential.attempts + 1, now=now):
            return RESCHEDULED
        return SUPERSEDED

    def _fail(self, credential: Credential, owner: str, status: str, reason: str) -> str:
        reason = reason[:FAILURE_REASON_LIMIT]
        if self.store.record_failure(credential, owner=owner, status=status, reason=reason, now=self._now()):
            logger.info("refresh failed permanently", extra={**_log_keys(credential), "status": status})
            return FAILED
        return SUPERSEDED


def _context(credential: Credential):
    from relay_cloud.adapters.vault import VaultContext

    return VaultContext(credential.user_id, credential.provider, CONNECTION_ID, credential.purpose or PURPOSE)


def _log_keys(credential: Credential) -> dict:
    return {"user_id": credential.user_id, "provider": credential.provider}
