"""Market data for users (reference §2.9): catalog, quotes with a short cache and a per-user limit,
history straight from the provider, the provider's health, and reconciliation with the bar store."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError
from sqlalchemy import select

from core.errors import AppError, InvalidInput, RateLimited
from db.models import Job, MarketBar, User
from domain.market import (
    MAX_BARS,
    RANGE_TOO_LARGE,
    IndicatorsRequest,
    SyncRequest,
    check_range,
    clean_symbol,
    known_timeframe,
)
from integrations.market_data import Asset, Quote
from services import jobs
from services.platform import Platform

MAX_HISTORY_BARS = 50_000
RANGE_TOO_LARGE_CODE = "MARKET_RANGE_TOO_LARGE"
TASK_REQUESTS: dict[str, type[BaseModel]] = {
    "market_data_sync": SyncRequest,
    "market_indicators_calculate": IndicatorsRequest,
}


def _invalid(message: str) -> AppError:
    return AppError(message, code="VALIDATION_ERROR", status=422)


def _symbol(symbol: str) -> str:
    try:
        return clean_symbol(symbol)
    except ValueError as error:
        raise _invalid(str(error)) from None


def _range_too_large(message: str) -> AppError:
    return AppError(message, code=RANGE_TOO_LARGE_CODE, status=422)


async def submit_task(
    platform: Platform, user: User, task_type: str, payload: dict[str, Any], idempotency_key: str
) -> tuple[Job, bool]:
    """A sync or indicators job, refused before it exists when its range covers too many bars."""
    try:
        context = {MAX_BARS: platform.settings.market_max_bars_per_request}
        TASK_REQUESTS[task_type].model_validate(payload, context=context)
    except ValidationError as error:
        too_large = [e["msg"] for e in error.errors() if e["type"] == RANGE_TOO_LARGE]
        if too_large:
            raise _range_too_large(too_large[0]) from None
        # Any other fault is reported, field by field, by the job service's own validation.
    return await jobs.submit(platform, user, task_type, payload, idempotency_key)


def asset_view(asset: Asset) -> dict[str, Any]:
    return {
        "symbol": asset.symbol,
        "name": asset.name,
        "exchange": asset.exchange,
        "currency": asset.currency,
        "assetClass": asset.asset_class,
        "tradable": asset.tradable,
        "fractionable": asset.fractionable,
    }


def quote_view(quote: Quote) -> dict[str, Any]:
    return {
        "symbol": quote.symbol,
        "price": quote.price,
        "previousClose": quote.previous_close,
        "openPrice": quote.open_price,
        "highPrice": quote.high_price,
        "lowPrice": quote.low_price,
        "volume": quote.volume,
        "bidPrice": quote.bid_price,
        "askPrice": quote.ask_price,
        "timestamp": quote.timestamp.isoformat(),
    }


async def _call(function, *args):
    """Provider calls block (HTTP, files): run them off the event loop."""
    return await asyncio.to_thread(function, *args)


async def search(platform: Platform, keyword: str, limit: int) -> list[dict[str, Any]]:
    needle = keyword.strip().lower()
    assets = await _call(platform.market.assets)
    found = [a for a in assets if needle in a.symbol.lower() or needle in a.name.lower()]
    found.sort(key=lambda a: (a.symbol.lower() != needle, not a.symbol.lower().startswith(needle), a.symbol))
    return [asset_view(a) for a in found[:limit]]


async def catalog(platform: Platform, limit: int, market: str | None, asset_class: str | None) -> list[dict[str, Any]]:
    assets = await _call(platform.market.assets)
    if market:
        assets = [a for a in assets if a.exchange.lower() == market.lower()]
    if asset_class:
        assets = [a for a in assets if a.asset_class == asset_class]
    return [asset_view(a) for a in assets[:limit]]


async def catalog_item(platform: Platform, symbol: str) -> dict[str, Any]:
    return asset_view(await _call(platform.market.asset, _symbol(symbol)))


async def symbols(platform: Platform) -> list[str]:
    return [a.symbol for a in await _call(platform.market.assets)]


async def quote(platform: Platform, user: User, symbol: str) -> tuple[Quote, bool]:
    """The quote and whether it came from the cache; at most N requests per window per user."""
    wait = platform.quote_limiter.acquire(user.id)
    if wait is not None:
        raise RateLimited("too many quote requests; slow down", retry_after=wait)
    return await cached_quote(platform, _symbol(symbol))


async def cached_quote(platform: Platform, symbol: str) -> tuple[Quote, bool]:
    cached = platform.quote_cache.get(symbol)
    if cached is not None:
        return cached, True
    fresh = await _call(platform.market.quote, symbol)
    platform.quote_cache.put(symbol, fresh)
    return fresh, False


async def quotes(platform: Platform, user: User, symbols_: list[str]) -> list[dict[str, Any]]:
    wait = platform.quote_limiter.acquire(user.id)
    if wait is not None:
        raise RateLimited("too many quote requests; slow down", retry_after=wait)
    cleaned = [_symbol(s) for s in symbols_]
    return list(await asyncio.gather(*(_batch_item(platform, s) for s in cleaned)))


async def _batch_item(platform: Platform, symbol: str) -> dict[str, Any]:
    try:
        found, hit = await cached_quote(platform, symbol)
    except AppError as error:
        code = "QUOTE_NOT_AVAILABLE" if error.code == "ASSET_NOT_FOUND" else error.code
        return {
            "symbol": symbol,
            "status": "error",
            "quote": None,
            "errorCode": code,
            "cacheHit": False,
            "source": platform.market.source,
        }
    return {
        "symbol": symbol,
        "status": "ok",
        "quote": quote_view(found),
        "errorCode": None,
        "cacheHit": hit,
        "source": platform.market.source,
    }


async def history(
    platform: Platform, symbol: str, start: date, end: date, timeframe: str, limit: int | None
) -> list[dict[str, Any]]:
    """The provider's bars of the range (none after now), the last ``limit`` of them when given."""
    symbol = _symbol(symbol)
    try:
        check_range(start, end, known_timeframe(timeframe), platform.settings.market_max_bars_per_request)
    except PydanticCustomError as error:  # a sane range, but more bars than one request may hold
        raise _range_too_large(error.message()) from None
    except ValueError as error:
        raise InvalidInput(str(error), code="INVALID_ARGUMENT") from None
    first, last = datetime.combine(start, time.min, tzinfo=UTC), datetime.combine(end, time.max, tzinfo=UTC)
    frame = await _call(platform.market.bars, symbol, timeframe, first, last)
    if limit:
        frame = frame.tail(min(limit, MAX_HISTORY_BARS))
    return [
        {
            "timestamp": row.timestamp.isoformat(),
            "openPrice": row.open,
            "highPrice": row.high,
            "lowPrice": row.low,
            "closePrice": row.close,
            "volume": row.volume,
        }
        for row in frame.head(MAX_HISTORY_BARS).itertuples()
    ]


async def provider_health(platform: Platform) -> dict[str, Any]:
    health = await _call(platform.market.health)
    view = {
        "".join(w.capitalize() if i else w for i, w in enumerate(k.split("_"))): v for k, v in asdict(health).items()
    }
    return view


async def boundary_check(platform: Platform, expected: list[str], timeframe: str) -> dict[str, Any]:
    """Which expected symbols the bar store lacks, and which it holds beyond them."""
    wanted = sorted({s.upper() for s in expected})
    async with platform.db.session() as session:
        stored = set(
            await session.scalars(
                select(MarketBar.symbol)
                .distinct()
                .where(MarketBar.timeframe == timeframe, MarketBar.source == platform.market.source)
            )
        )
    missing = [s for s in wanted if s not in stored]
    extra = sorted(stored - set(wanted))
    return {
        "consistent": not missing and not extra,
        "missingIds": missing,
        "extraIds": extra,
        "mismatchCount": len(missing) + len(extra),
        "beforeCount": len(wanted),
        "afterCount": len(stored),
    }
