"""Every route of the API reads JSON bodies strictly: values that no column or model can hold safely are a
422 at the door, before any code of ours sees them.

Python's ``json`` module accepts ``NaN`` and ``Infinity``, turns ``1e999`` into ``inf`` and ``"\\ud800"`` into a
string that cannot be encoded as UTF-8; stored, each of these breaks every later read of the row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute


def _invalid(document: str, reason: str) -> json.JSONDecodeError:
    # FastAPI answers a JSONDecodeError as a 422 validation error naming the body.
    return json.JSONDecodeError(reason, document, 0)


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
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
    if _has_lone_surrogate(value):
        raise _invalid(document, "string with an unpaired surrogate")
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
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler


def api_router(**options: Any) -> APIRouter:
    """The router every context uses."""
    return APIRouter(route_class=StrictJSONRoute, **options)
