"""Errors the service itself raises (the ledger's are in ledger.errors).

Each has a stable ``code``: the suffix of its RFC 9457 problem ``type`` (api/problems.py maps
every error to a status and a problem document, in one place).
"""

from __future__ import annotations


class ApiError(Exception):
    code = "api-error"


class Unauthenticated(ApiError):
    """No credential, or one that does not verify."""

    code = "unauthenticated"


class Forbidden(ApiError):
    """The caller is known but may not do this (e.g. read another agency's report)."""

    code = "forbidden"


class MalformedJson(ApiError):
    code = "malformed-json"


class BodyTooLarge(ApiError):
    code = "body-too-large"


class InvalidParameter(ApiError):
    code = "invalid-parameter"


class ResourceNotFound(ApiError):
    code = "not-found"


class ProofPending(ApiError):
    """The entry is logged but no signed checkpoint covers it yet."""

    code = "proof-pending"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(ApiError):
    code = "rate-limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(ApiError):
    code = "unavailable"
