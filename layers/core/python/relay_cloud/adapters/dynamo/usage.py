"""Per-user usage counters of plan-limited resources (SPEC C8), as participants of a caller's transaction.

A counter (``pk=USER#<user_id>``, ``sk=USAGE#<resource>``, ``count``) moves only in the same transaction
as the items it counts: the repository that adds a repo (or, next, the workflow that reserves a
workspace's plan slot) puts its items and calls ``reserve`` on the same ``TransactWrite``; removing
them calls ``release``. So the limit holds under any concurrency and the count never drifts.

Each call adds exactly one update to the transaction. pynamodb sends condition checks, then deletes,
then puts, then updates, so the counter's position among the cancellation reasons is the number of
condition checks + deletes + puts before it (the caller knows its own transaction's shape).
"""

from __future__ import annotations

from pynamodb.transactions import TransactWrite

from relay_cloud.adapters.dynamo import keys
from relay_cloud.adapters.dynamo.errors import translated
from relay_cloud.adapters.dynamo.models import UsageItem


def _counter(user_id: str, resource: str) -> UsageItem:
    return UsageItem(keys.user_pk(user_id), keys.usage_sk(resource))


def reserve(tx: TransactWrite, user_id: str, resource: str, limit: int | None) -> None:
    """One more ``resource`` for the user, refused (the transaction fails its condition) when ``limit``
    are already counted; ``limit=None`` (unlimited) still counts, without a condition."""
    # UpdateItem may create the counter, and pynamodb's defaults apply only to puts: name its type.
    actions = [UsageItem.count.add(1), UsageItem.type.set("USAGE")]
    condition = None if limit is None else (UsageItem.count.does_not_exist() | (UsageItem.count < limit))
    tx.update(_counter(user_id, resource), actions=actions, condition=condition)


def release(tx: TransactWrite, user_id: str, resource: str) -> None:
    """One ``resource`` fewer. Unconditional: the caller's own conditions (the counted item still exists)
    make a release happen once per reservation."""
    tx.update(_counter(user_id, resource), actions=[UsageItem.count.add(-1), UsageItem.type.set("USAGE")])


class UsageRepository:
    def used(self, user_id: str, resource: str) -> int:
        with translated("get"):
            try:
                item = UsageItem.get(keys.user_pk(user_id), keys.usage_sk(resource), consistent_read=True)
            except UsageItem.DoesNotExist:
                return 0
        return max(0, int(item.count or 0))
