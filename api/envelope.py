"""The reference envelope: ``{success, message, data}`` and ``{success: false, error: {code, message}}``.

Routes answer through ``ok``/``page``/``error`` and declare what they answer: ``response_model=Envelope[X]``
(or ``Envelope[Page[X]]``, ``Ack`` when there is no data) for the success and ``responses=errors(...)`` for
every error status of their own. The statuses any route of a kind can answer (401 with a session, 413 with a
body, 422 with parameters) are added to every route by ``api.errors.document_common_errors``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.schemas.base import Schema

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    """A success with data."""

    success: Literal[True] = True
    message: str = "ok"
    data: T


class Ack(BaseModel):
    """A success without data: the reference leaves ``data`` out rather than sending null."""

    success: Literal[True] = True
    message: str = "ok"


class Page(Schema, Generic[T]):
    items: list[T]
    total: int = Field(ge=0)
    page: int = Field(ge=1)
    page_size: int = Field(ge=1)


class ErrorBody(BaseModel):
    code: str = Field(description="Stable UPPER_SNAKE code, e.g. VALIDATION_ERROR or STRATEGY_ACCESS_DENIED")
    message: str
    # Validation errors list their fields; other errors carry what helps the caller (retryAfter, checks).
    details: Any = Field(default=None, description="Present only when there is something to add")
    retryable: bool | None = Field(default=None, description="Present on upstream market-data failures")


class ErrorEnvelope(BaseModel):
    success: Literal[False] = False
    error: ErrorBody


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(by_alias=True, mode="json")
    if isinstance(data, list):
        return [_plain(item) for item in data]
    if isinstance(data, dict):
        return {key: _plain(value) for key, value in data.items()}
    return data


def ok(
    data: Any = None, *, message: str = "ok", status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"success": True, "message": message}
    if data is not None:
        body["data"] = _plain(data)
    return JSONResponse(body, status_code=status, headers=headers)


def page(items: list[Any], total: int, page_number: int, page_size: int) -> JSONResponse:
    return ok(Page[Any](items=items, total=total, page=page_number, page_size=page_size))


def error(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    payload: dict[str, Any] = {"code": code, "message": message, **(extra or {})}
    if details is not None:
        payload["details"] = details
    return JSONResponse({"success": False, "error": payload}, status_code=status, headers=headers)


# What each error status means on this API, with the code a caller most often sees.
ERROR_STATUSES: dict[int, tuple[str, str]] = {
    # The reference's one accepted-but-not-ready answer in an error envelope (a risk assessment not yet made).
    202: ("Not ready yet: what was asked for does not exist until it is made", "PENDING"),
    400: ("The request cannot be carried out as asked", "INVALID_ARGUMENT"),
    401: ("No session, or an invalid or expired one (Bearer token first, then the session cookie)", "MISSING_TOKEN"),
    403: ("Not allowed; a resource that is missing or not the caller's is answered the same way", "FORBIDDEN"),
    404: ("Not found", "NOT_FOUND"),
    409: ("Conflicts with the current state of the resource", "CONFLICT"),
    410: ("This route was removed", "ROUTE_REMOVED"),
    413: ("The request body is larger than the server accepts", "PAYLOAD_TOO_LARGE"),
    422: ("The request failed validation; details name the fields", "VALIDATION_ERROR"),
    429: ("Too many requests; Retry-After says when to try again", "RATE_LIMIT_EXCEEDED"),
    502: ("The market-data provider failed", "UPSTREAM_UNAVAILABLE"),
    503: ("A service the request needs is unavailable", "SERVICE_UNAVAILABLE"),
    504: ("The market-data provider timed out", "UPSTREAM_TIMEOUT"),
}


def error_response(status: int, code: str | None = None) -> dict[str, Any]:
    """One entry of a route's ``responses``: the error envelope, what the status means and an example."""
    description, default_code = ERROR_STATUSES[status]
    example = {"success": False, "error": {"code": code or default_code, "message": description}}
    return {"model": ErrorEnvelope, "description": description, "content": {"application/json": {"example": example}}}


def errors(*statuses: int, denied: str | None = None, codes: Mapping[int, str] | None = None) -> dict[int | str, Any]:
    """``responses=`` for a route's own error statuses. ``denied`` names the context whose 403 is
    ``<CONTEXT>_ACCESS_DENIED``; ``codes`` gives another status its usual code."""
    examples = dict(codes or {})
    if denied:
        examples.setdefault(403, f"{denied.upper()}_ACCESS_DENIED")
    return {status: error_response(status, examples.get(status)) for status in statuses}
