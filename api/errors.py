"""Every failure leaves the API in the envelope, with a stable code and no internals."""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.utils import get_flat_params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import caller_of, current_caller
from api.envelope import error, error_response
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
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMIT_EXCEEDED",
}


def _field(location: tuple) -> str:
    # Drop the "body"/"query" prefix: the front end knows fields by their JSON names.
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(location[0] if location else "")


def app_error_response(exc: AppError):
    extra = {"retryable": exc.retryable} if hasattr(exc, "retryable") else None
    return error(exc.status, exc.code, exc.message, details=exc.details, headers=exc.headers, extra=extra)


def requires_session(route: object) -> bool:
    """Whether the route's dependencies include the caller's session."""
    if not isinstance(route, APIRoute):
        return False
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if dependency.call is current_caller:
            return True
        pending.extend(dependency.dependencies)
    return False


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError):
        return app_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        if isinstance(exc.detail, dict) and "code" in exc.detail:
            return error(exc.status_code, exc.detail["code"], exc.detail.get("message", ""), headers=exc.headers)
        code = HTTP_CODES.get(exc.status_code, "INTERNAL_ERROR" if exc.status_code >= 500 else "HTTP_ERROR")
        message = exc.detail if isinstance(exc.detail, str) else code.lower().replace("_", " ")
        return error(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        # Who is asking comes before what they sent: a caller without a session learns nothing of the body.
        if requires_session(request.scope.get("route")):
            try:
                await caller_of(request)
            except AppError as refused:
                return app_error_response(refused)
        fields = [{"field": _field(tuple(item["loc"])), "message": item["msg"]} for item in exc.errors()]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return error(422, "VALIDATION_ERROR", f"invalid request: {summary}", details=fields)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception):
        # Normally RequestContextMiddleware answers first; this is the last line of defence.
        log.error("unhandled error", exc_info=exc)
        return error(500, "INTERNAL_ERROR", "internal server error")


def common_error_statuses(route: APIRoute) -> list[int]:
    """The statuses a route answers because of what it takes, whatever it does."""
    statuses = []
    if requires_session(route):
        statuses.append(401)
    if route.body_field is not None:
        statuses.append(413)
    if route.body_field is not None or get_flat_params(route.dependant):
        statuses.append(422)
    return statuses


def document_common_errors(router: APIRouter) -> None:
    """Add the common error statuses to the OpenAPI answers of every route of ``router`` (before it is
    included in the app, which builds the served routes from these), so no route can forget them."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        for status in common_error_statuses(route):
            # A route that declares a status itself says more about it (its own example code).
            route.responses.setdefault(status, error_response(status))
