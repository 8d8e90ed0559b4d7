"""Every route of the API reads its input strictly: JSON bodies, query and path values that no column or
model can hold safely are a 422 at the door, before any code of ours sees them.

Python's ``json`` module accepts ``NaN`` and ``Infinity``, turns ``1e999`` into ``inf`` and ``"\\ud800"`` into a
string that cannot be encoded as UTF-8, and PostgreSQL refuses text with NUL in it; stored (or sent to the
database as a filter), each of these breaks the request or every later read of the row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute


def _invalid(document: str, reason: str) -> json.JSONDecodeError:
    # FastAPI answers a JSONDecodeError as a 422 validation error naming the body.
    return json.JSONDecodeError(reason, document, 0)


def unstorable_text(text: str) -> bool:
    """Text no column keeps: an unpaired surrogate (not UTF-8) or NUL (PostgreSQL text refuses it)."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _has_unstorable_text(value: Any) -> bool:
    if isinstance(value, str):
        return unstorable_text(value)
    if isinstance(value, dict):
        return any(_has_unstorable_text(k) or _has_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable_text(item) for item in value)
    return False


def strict_json_loads(raw: bytes | str) -> Any:
    """``json.loads`` that refuses non-finite numbers, oversized integers and lone surrogates."""
    document = raw.decode("utf-8") if isinstance(raw, bytes) else raw

    def finite(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            raise _invalid(document, f"number out of range: {text[:32]}")
        return number

    def integer(text: str) -> int:
        try:
            return int(text)
        except ValueError:  # more digits than Python converts
            raise _invalid(document, "integer too large") from None

    def constant(name: str) -> Any:
        raise _invalid(document, f"{name} is not a JSON number")

    value = json.loads(document, parse_float=finite, parse_int=integer, parse_constant=constant)
    if _has_unstorable_text(value):
        raise _invalid(document, "string with NUL or an unpaired surrogate")
    return value


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = strict_json_loads(await self.body())
            except UnicodeDecodeError as error:  # not UTF-8 at all
                raise _invalid("", "body is not UTF-8") from error
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            _refuse_unstorable_parameters(request)
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def _refuse_unstorable_parameters(request: Request) -> None:
    """Query and path values reach the database as they are: NUL or a lone surrogate is a 422 here."""
    located = [("query", k, v) for k, v in request.query_params.multi_items()]
    located += [("path", k, v) for k, v in request.path_params.items() if isinstance(v, str)]
    bad = [(where, name) for where, name, value in located if unstorable_text(name) or unstorable_text(value)]
    if bad:
        raise RequestValidationError(
            [
                {"type": "string_unstorable", "loc": where_name, "msg": "NUL or an unpaired surrogate", "input": None}
                for where_name in bad
            ]
        )


def api_router(**options: Any) -> APIRouter:
    """The router every context uses."""
    return APIRouter(route_class=StrictJSONRoute, **options)
