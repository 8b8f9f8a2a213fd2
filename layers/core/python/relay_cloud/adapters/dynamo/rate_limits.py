"""Fixed-window rate limits (SPEC C14): one conditional counter item per scope, subject and window.

A hit is ONE conditional UpdateItem that adds 1 only while the window holds fewer than ``limit``, so
concurrent callers can never push a window past its limit (no read-then-write). Items expire (TTL) a
minute after their window ends.

Subjects are stored as their SHA-256, never as given: an address (the usual subject of a public
route) is not kept in plain text, and every key has the same bounded length whatever the subject.
"""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import is_condition_failure, translated
from relay_cloud.adapters.dynamo.models import RateLimitItem
from relay_cloud.domain.daemons import sha256_hex

EXPIRY_GRACE_SECONDS = 60  # a window's item outlives the window by this much (then TTL deletes it)


class RateLimiter:
    def hit(self, scope: str, subject: str, *, limit: int, window_seconds: int, now: int) -> bool:
        """Count one request of ``subject`` in ``scope``; False (nothing counted) when the current window
        already holds ``limit`` requests."""
        window = int(now) // window_seconds
        item = RateLimitItem(*_counter_key(scope, subject, window))
        with translated("update"):
            try:
                item.update(actions=[RateLimitItem.count.add(1), RateLimitItem.type.set("RATE_LIMIT"),
                                     RateLimitItem.expires_at.set((window + 1) * window_seconds
                                                                  + EXPIRY_GRACE_SECONDS)],
                            condition=RateLimitItem.count.does_not_exist() | (RateLimitItem.count < limit))
                return True
            except PynamoDBException as exc:
                if is_condition_failure(exc):
                    return False
                raise

    def count(self, scope: str, subject: str, *, window_seconds: int, now: int) -> int:
        """How many requests of ``subject`` the current window of ``scope`` holds (a strongly consistent
        read, for limits that count only failures but refuse every request once the window is full)."""
        with translated("get"):
            try:
                item = RateLimitItem.get(*_counter_key(scope, subject, int(now) // window_seconds),
                                         consistent_read=True)
            except RateLimitItem.DoesNotExist:
                return 0
        return int(item.count)


def _counter_key(scope: str, subject: str, window: int) -> tuple[str, str]:
    return keys.rate_limit_pk(scope, sha256_hex(subject)), keys.rate_limit_sk(window)
