"""How commands print: JSON in snake_case by default, a table with --table; domain errors exit 1."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, NoReturn

import click
from pydantic import BaseModel

from core.errors import AppError


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0].keys())
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def emit(value: Any) -> None:
    data = _plain(value)
    if click.get_current_context().find_root().params.get("table"):
        rows = data.get("items", data) if isinstance(data, dict) else data
        if isinstance(rows, dict):  # one record: a field/value table reads better than one wide row
            rows = [{"field": key, "value": value} for key, value in rows.items()]
        click.echo(render_table([r if isinstance(r, dict) else {"value": r} for r in rows]))
    else:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def fail(code: str, message: str, retryable: bool | None = None) -> NoReturn:
    error: dict[str, str | bool] = {"code": code, "message": message}
    if retryable is not None:
        error["retryable"] = retryable
    click.echo(json.dumps({"error": error}), err=True)
    sys.exit(1)


def command_runner(func: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """Run an async command body; an AppError becomes its code and message on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return asyncio.run(func(*args, **kwargs))
        except AppError as error:
            fail(error.code, error.message, getattr(error, "retryable", None))

    return wrapper
