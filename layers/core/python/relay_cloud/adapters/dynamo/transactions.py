"""Committing a transaction whose items carry conditions, for repositories that need to know WHICH
conditions failed (the positions), and that share a hot item (a counter) with concurrent transactions."""

from __future__ import annotations

import random
import time

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from relay_cloud.adapters.dynamo.errors import failed_conditions, translated
from relay_cloud.adapters.dynamo.models import Item
from relay_cloud.domain.errors import DependencyUnavailable


def commit(build, *, attempts: int, busy_message: str) -> set[int]:
    """Commit the transaction ``build(tx)`` describes; the positions of the items whose condition failed
    (empty: it committed). DynamoDB cancels a transaction that touches an item another one is writing
    (TransactionConflict, e.g. a shared counter under concurrent writers): that is retried after a short
    random pause, ``attempts`` times in all, then answered 503 with ``busy_message``."""
    for attempt in range(attempts):
        with translated("transaction"):
            try:
                with TransactWrite(connection=Item._get_connection().connection) as tx:
                    build(tx)
                return set()
            except TransactWriteError as exc:
                failed = failed_conditions(exc)
                if failed:
                    return failed
                reasons = exc.cancellation_reasons or []
                if not any(reason is not None and reason.code == "TransactionConflict" for reason in reasons):
                    raise
                if attempt == attempts - 1:
                    raise DependencyUnavailable(busy_message, code="DATABASE_UNAVAILABLE") from exc
        time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")
