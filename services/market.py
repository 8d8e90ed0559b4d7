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
from services.schemas.market import (
    AssetOut,
    BatchQuoteOut,
    BoundaryCheckOut,
    CandleOut,
    ProviderHealthOut,
    QuoteOut,
)

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


def asset_view(asset: Asset) -> AssetOut:
    return AssetOut.model_validate(asset)


def quote_out(quote: Quote) -> QuoteOut:
    return QuoteOut.model_validate({**asdict(quote), "timestamp": quote.timestamp.isoformat()})


def quote_view(quote: Quote) -> dict[str, Any]:
    """The quote as the stream pushes it: the same fields, in the API's camelCase."""
    return quote_out(quote).model_dump(by_alias=True)


async def _call(function, *args):
    """Provider calls block (HTTP, files): run them off the event loop."""
    return await asyncio.to_thread(function, *args)


async def search(platform: Platform, keyword: str, limit: int) -> list[AssetOut]:
    needle = keyword.strip().lower()
    assets = await _call(platform.market.assets)
    found = [a for a in assets if needle in a.symbol.lower() or needle in a.name.lower()]
    found.sort(key=lambda a: (a.symbol.lower() != needle, not a.symbol.lower().startswith(needle), a.symbol))
    return [asset_view(a) for a in found[:limit]]


async def catalog(platform: Platform, limit: int, market: str | None, asset_class: str | None) -> list[AssetOut]:
    assets = await _call(platform.market.assets)
    if market:
        assets = [a for a in assets if a.exchange.lower() == market.lower()]
    if asset_class:
        assets = [a for a in assets if a.asset_class == asset_class]
    return [asset_view(a) for a in assets[:limit]]


async def catalog_item(platform: Platform, symbol: str) -> AssetOut:
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


async def quotes(platform: Platform, user: User, symbols_: list[str]) -> list[BatchQuoteOut]:
    wait = platform.quote_limiter.acquire(user.id)
    if wait is not None:
        raise RateLimited("too many quote requests; slow down", retry_after=wait)
    cleaned = [_symbol(s) for s in symbols_]
    return list(await asyncio.gather(*(_batch_item(platform, s) for s in cleaned)))


async def _batch_item(platform: Platform, symbol: str) -> BatchQuoteOut:
    try:
        found, hit = await cached_quote(platform, symbol)
    except AppError as error:
        code = "QUOTE_NOT_AVAILABLE" if error.code == "ASSET_NOT_FOUND" else error.code
        return BatchQuoteOut(
            symbol=symbol, status="error", quote=None, error_code=code, cache_hit=False, source=platform.market.source
        )
    return BatchQuoteOut(
        symbol=symbol,
        status="ok",
        quote=quote_out(found),
        error_code=None,
        cache_hit=hit,
        source=platform.market.source,
    )


async def history(
    platform: Platform, symbol: str, start: date, end: date, timeframe: str, limit: int | None
) -> list[CandleOut]:
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
        CandleOut(
            timestamp=row.timestamp.isoformat(),
            open_price=row.open,
            high_price=row.high,
            low_price=row.low,
            close_price=row.close,
            volume=row.volume,
        )
        for row in frame.head(MAX_HISTORY_BARS).itertuples()
    ]


async def provider_health(platform: Platform) -> ProviderHealthOut:
    return ProviderHealthOut.model_validate(await _call(platform.market.health))


async def boundary_check(platform: Platform, expected: list[str], timeframe: str) -> BoundaryCheckOut:
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
    return BoundaryCheckOut(
        consistent=not missing and not extra,
        missing_ids=missing,
        extra_ids=extra,
        mismatch_count=len(missing) + len(extra),
        before_count=len(wanted),
        after_count=len(stored),
    )
