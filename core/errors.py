"""One error type for every failure a caller can act on; the API turns it into the envelope."""

from __future__ import annotations

from typing import Any


class AppError(Exception):
    status = 400
    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        self.headers = headers or {}


class InvalidInput(AppError):
    status, code = 400, "INVALID_ARGUMENT"


class Unauthorized(AppError):
    status, code = 401, "UNAUTHORIZED"


class Forbidden(AppError):
    status, code = 403, "FORBIDDEN"


class AccessDenied(Forbidden):
    """A missing or foreign resource: the same answer for both so existence never leaks."""

    def __init__(self, context: str) -> None:
        super().__init__(f"{context.lower()} not found or access denied", code=f"{context.upper()}_ACCESS_DENIED")


class NotFound(AppError):
    status, code = 404, "NOT_FOUND"


class Conflict(AppError):
    status, code = 409, "CONFLICT"


class Gone(AppError):
    status, code = 410, "ROUTE_REMOVED"


class RateLimited(AppError):
    status, code = 429, "RATE_LIMIT_EXCEEDED"

    def __init__(self, message: str, *, retry_after: int, code: str | None = None) -> None:
        retry_after = max(1, int(retry_after))
        super().__init__(
            message, code=code, headers={"Retry-After": str(retry_after)}, details={"retryAfter": retry_after}
        )


class ServiceUnavailable(AppError):
    status, code = 503, "SERVICE_UNAVAILABLE"


class UpstreamError(AppError):
    """A market-data provider failed; ``retryable`` tells the caller whether trying again can help."""

    KINDS = {
        "UPSTREAM_TIMEOUT": (504, True),
        "UPSTREAM_RATE_LIMITED": (429, True),
        "UPSTREAM_AUTH_FAILED": (502, False),
        "UPSTREAM_UNAVAILABLE": (502, True),
        "ASSET_NOT_FOUND": (404, False),
    }

    def __init__(self, code: str, message: str) -> None:
        status, self.retryable = self.KINDS[code]
        super().__init__(message, code=code, status=status)
