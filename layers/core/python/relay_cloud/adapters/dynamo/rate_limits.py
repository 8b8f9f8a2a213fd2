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
        item = RateLimitItem(keys.rate_limit_pk(scope, sha256_hex(subject)), keys.rate_limit_sk(window))
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
