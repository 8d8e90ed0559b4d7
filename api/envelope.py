"""The reference envelope: ``{success, message, data}`` and ``{success: false, error: {code, message}}``."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel


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
    return ok({"items": _plain(items), "total": total, "page": page_number, "pageSize": page_size})


def error(
    status: int,
    code: str,
    message: str,
    *,
    details: Any = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    payload: dict[str, Any] = {"code": code, "message": message, **(extra or {})}
    if details is not None:
        payload["details"] = details
    return JSONResponse({"success": False, "error": payload}, status_code=status, headers=headers)
