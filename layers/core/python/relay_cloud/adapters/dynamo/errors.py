"""Translate DynamoDB failures (pynamodb/botocore) into typed domain errors, by error code only."""

from __future__ import annotations

from contextlib import contextmanager

from botocore.exceptions import BotoCoreError
from pynamodb.exceptions import PynamoDBException

from relay_cloud.domain.errors import DependencyUnavailable, RelayError

CONDITION_FAILED = "ConditionalCheckFailedException"
TRANSACTION_CANCELED = "TransactionCanceledException"
_TRANSIENT = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "LimitExceededException",
    }
)


def error_code(exc: PynamoDBException) -> str | None:
    """The DynamoDB error code behind a pynamodb exception (None for connection errors and timeouts).

    Not ``exc.cause_response_code``: that raises when the cause is a timeout whose ``response`` is None.
    """
    response = getattr(exc.cause, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


def is_condition_failure(exc: PynamoDBException) -> bool:
    code = error_code(exc)
    if code == CONDITION_FAILED:
        return True
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return code == TRANSACTION_CANCELED and any(
        reason is not None and reason.code == "ConditionalCheckFailed" for reason in reasons
    )


def failed_conditions(exc: PynamoDBException) -> set[int]:
    """The positions, in the transaction, of the items that failed their condition (empty when the
    transaction was cancelled for another reason). pynamodb sends condition checks first, then deletes,
    puts and updates, each kind in the order it was added."""
    reasons = getattr(exc, "cancellation_reasons", None) or []
    return {index for index, reason in enumerate(reasons)
            if reason is not None and reason.code == "ConditionalCheckFailed"}


def translate(exc: PynamoDBException, operation: str) -> RelayError:
    """A typed error for a failed DynamoDB call, chosen by the cause's error code."""
    code = error_code(exc)
    if code is None or code in _TRANSIENT:  # connection failures and timeouts have no code
        return DependencyUnavailable(f"DynamoDB {operation} failed; retry later", code="DATABASE_UNAVAILABLE")
    return RelayError(f"DynamoDB {operation} failed ({code})", code="DATABASE_ERROR")


@contextmanager
def translated(operation: str = "request"):
    """Whatever DynamoDB raises that the caller did not handle becomes a typed error."""
    try:
        yield
    except PynamoDBException as exc:
        raise translate(exc, operation) from exc
    except BotoCoreError as exc:
        raise DependencyUnavailable("The database is unavailable, please retry", code="DATABASE_UNAVAILABLE") from exc
