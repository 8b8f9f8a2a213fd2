"""Make moto's DynamoDB writes atomic under threads, as DynamoDB's are.

moto 5 runs ``TransactWriteItems`` by deep-copying the table, applying the items one by one and, when
any condition fails, putting the copy back, all without a lock. Two threads (the local stack's server
threads, or a test's thread pool over in-process moto) then lose writes: a cancelled transaction
restores a copy taken before another transaction committed, so a conditional counter (a plan limit, an
inbox cap) can let more through than its condition allows, or a committed item vanishes.

``install()`` wraps every mutating method of moto's DynamoDB backend in one re-entrant lock, so a
transaction and any other write never interleave. Reads stay unlocked (a read during a transaction may
see part of it, which DynamoDB would not show; nothing here relies on that). Idempotent.
"""

from __future__ import annotations

import functools
import threading

_lock = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
_installed = False


def install() -> None:
    global _installed
    from moto.dynamodb.models import DynamoDBBackend

    with _lock:
        if _installed:
            return
        for name in _WRITES:
            original = getattr(DynamoDBBackend, name, None)
            if original is None:
                continue

            def locked(self, *args, __original=original, **kwargs):
                with _lock:
                    return __original(self, *args, **kwargs)

            setattr(DynamoDBBackend, name, functools.wraps(original)(locked))
        _installed = True


def installed() -> bool:
    return _installed
