"""Typed errors raised by services and adapters, mapped to HTTP responses once (relay_cloud.http.errors).

Every error carries a machine-readable ``code``; ``details`` are extra public fields of the response
body. Never put a secret in a message or in details.
"""

from __future__ import annotations


class RelayError(Exception):
    status = 500
    code = "INTERNAL_ERROR"
    headers: dict | None = None  # extra response headers, e.g. Retry-After on a 429

    def __init__(self, message: str, *, code: str | None = None, **details):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details

    def body(self) -> dict:
        return {"error": self.message, "code": self.code, **self.details}


class ValidationFailed(RelayError):
    status = 400
    code = "VALIDATION_FAILED"


class Unauthenticated(RelayError):
    status = 401
    code = "SESSION_EXPIRED"


class PaymentRequired(RelayError):
    status = 402
    code = "PLAN_LIMIT_EXCEEDED"


class Forbidden(RelayError):
    status = 403
    code = "FORBIDDEN"


class NotFound(RelayError):
    status = 404
    code = "NOT_FOUND"


class Conflict(RelayError):
    status = 409
    code = "CONFLICT"


class Gone(RelayError):
    """The resource existed but is no longer usable (e.g. a command that expired before it finished)."""

    status = 410
    code = "GONE"


class RateLimited(RelayError):
    status = 429
    code = "RATE_LIMITED"


class DependencyUnavailable(RelayError):
    """An upstream (GitHub, KMS, DynamoDB) failed in a way the caller may retry."""

    status = 503
    code = "DEPENDENCY_UNAVAILABLE"


class VaultError(RelayError):
    """A ciphertext could not be opened: tampered, swapped, or under an unknown key version (fail closed)."""

    status = 500
    code = "VAULT_INTEGRITY"
