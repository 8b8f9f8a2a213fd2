"""Translate DynamoDB failures (pynamodb/botocore) into typed domain errors, by error code only."""

from __future__ import annotations

from contextlib import contextmanager

from botocore.exceptions import BotoCoreError
from pynamodb.exceptions import PynamoDBException

from relay_cloud.domain.errors import DependencyUnavailable

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"


def is_condition_failure(exc: PynamoDBException) -> bool:
    if exc.cause_response_code == CONDITION_FAILED:
        return True
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return exc.cause_response_code == TRANSACTION_CANCELED and any(
        reason is not None and reason.code == "ConditionalCheckFailed" for reason in reasons
    )


@contextmanager
def translated():
    """Anything DynamoDB raises that is not handled by the caller becomes a 503 the client may retry."""
    try:
        yield
    except PynamoDBException as exc:
        raise DependencyUnavailable(
            "The database is unavailable, please retry", code="DATABASE_UNAVAILABLE"
        ) from exc
    except BotoCoreError as exc:
        raise DependencyUnavailable(
            "The database is unavailable, please retry", code="DATABASE_UNAVAILABLE"
        ) from exc
