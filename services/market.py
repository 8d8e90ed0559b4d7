"""Market data for users (reference §2.9): catalog, quotes with a short cache and a per-user limit,
history straight from the provider, the provider's health, and reconciliation with the bar store."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, date, datetime, time
from typing import Any

from sqlalchemy import select

from core.errors import AppError, InvalidInput, RateLimited
from db.models import MarketBar, User
from domain.market import TIMEFRAMES
from integrations.market_data import Asset, Quote
from services.platform import Platform

MAX_HISTORY_BARS = 50_000


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
    return asset_view(await _call(platform.market.asset, symbol.upper()))


async def symbols(platform: Platform) -> list[str]:
    return [a.symbol for a in await _call(platform.market.assets)]


async def quote(platform: Platform, user: User, symbol: str) -> tuple[Quote, bool]:
    """The quote and whether it came from the cache; at most N requests per window per user."""
    wait = platform.quote_limiter.acquire(user.id)
    if wait is not None:
        raise RateLimited("too many quote requests; slow down", retry_after=wait)
    return await cached_quote(platform, symbol.upper())


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
    return list(await asyncio.gather(*(_batch_item(platform, s.upper()) for s in symbols_)))


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
    if timeframe not in TIMEFRAMES:
        raise InvalidInput(f"timeframe must be one of {', '.join(TIMEFRAMES)}", code="INVALID_ARGUMENT")
    if end < start:
        raise InvalidInput("endDate must not be before startDate", code="INVALID_ARGUMENT")
    first, last = datetime.combine(start, time.min, tzinfo=UTC), datetime.combine(end, time.max, tzinfo=UTC)
    frame = await _call(platform.market.bars, symbol.upper(), timeframe, first, last)
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
