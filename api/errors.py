"""Every failure leaves the API in the envelope, with a stable code and no internals."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.envelope import error
from core.errors import AppError

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    410: "ROUTE_REMOVED",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
}


def _field(location: tuple) -> str:
    # Drop the "body"/"query" prefix: the front end knows fields by their JSON names.
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(location[0] if location else "")


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError):
        extra = {"retryable": exc.retryable} if hasattr(exc, "retryable") else None
        return error(exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers, extra=extra)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        if isinstance(exc.detail, dict) and "code" in exc.detail:
            return error(exc.status_code, exc.detail["code"], exc.detail.get("message", ""), headers=exc.headers)
        code = HTTP_CODES.get(exc.status_code, "INTERNAL_ERROR" if exc.status_code >= 500 else "HTTP_ERROR")
        message = exc.detail if isinstance(exc.detail, str) else code.lower().replace("_", " ")
        return error(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        fields = [{"field": _field(tuple(item["loc"])), "message": item["msg"]} for item in exc.errors()]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return error(422, "VALIDATION_ERROR", f"invalid request: {summary}", details=fields)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception):
        # Normally RequestContextMiddleware answers first; this is the last line of defence.
        log.error("unhandled error", exc_info=exc)
        return error(500, "INTERNAL_ERROR", "internal server error")
