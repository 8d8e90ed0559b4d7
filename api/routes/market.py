"""/market/*: market data. Long work (sync) runs as jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Path, Query

from api.deps import CurrentUser, PlatformDep
from api.envelope import Envelope, errors, ok
from api.routing import api_router
from core.errors import AccessDenied
from domain.market import SYMBOL_PATTERN
from services import jobs, market
from services.schemas.market import (
    AssetOut,
    BatchQuotesOut,
    BoundaryCheckOut,
    BoundaryIn,
    HistoryOut,
    IndicatorTaskIn,
    MarketTaskOut,
    ProviderHealthOut,
    QuoteAnswerOut,
    QuotesIn,
    SyncTaskIn,
)

router = api_router(prefix="/market", tags=["market"])
SYNC = "market_data_sync"
INDICATORS = "market_indicators_calculate"
# A symbol in a path: the same strict pattern as in bodies, so junk is a 422 before any provider sees it.
SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN)]

# Every provider failure keeps its code and says whether trying again can help (`retryable`).
UPSTREAM = (429, 502, 504)
UPSTREAM_CODES = {429: "UPSTREAM_RATE_LIMITED", 502: "UPSTREAM_UNAVAILABLE", 504: "UPSTREAM_TIMEOUT"}
PROVIDER_ERRORS = errors(*UPSTREAM, codes=UPSTREAM_CODES)
ASSET_ERRORS = errors(404, *UPSTREAM, codes={404: "ASSET_NOT_FOUND", **UPSTREAM_CODES})
# Quotes are limited per user (RATE_LIMIT_EXCEEDED) on top of the provider's own limits.
QUOTE_ERRORS = errors(404, *UPSTREAM, codes={**UPSTREAM_CODES, 404: "ASSET_NOT_FOUND", 429: "RATE_LIMIT_EXCEEDED"})
# A job that cannot be started (Temporal unreachable) is a 503 TASK_ORCHESTRATION_UNAVAILABLE.
TASK_SUBMIT_ERRORS = errors(400, 409, 422, 503, codes={409: "IDEMPOTENCY_CONFLICT", 422: "MARKET_RANGE_TOO_LARGE"})
TASK_ERRORS = errors(403, denied="job")


async def _submit(platform, user, task_type: str, body: SyncTaskIn | IndicatorTaskIn):
    """Start a task job; without an idempotency key every request is a new job."""
    payload = body.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
    key = body.idempotency_key or f"{task_type}-{uuid.uuid4()}"
    job, created = await market.submit_task(platform, user, task_type, payload, key)
    return ok(MarketTaskOut.of(job), status=202 if created else 200)


@router.post("/sync-task", status_code=202, response_model=Envelope[MarketTaskOut], responses=TASK_SUBMIT_ERRORS)
async def submit_sync(body: SyncTaskIn, user: CurrentUser, platform: PlatformDep):
    return await _submit(platform, user, SYNC, body)


async def _task(platform, user, task_id: str, task_type: str):
    """The caller's job of this type; any other id is access denied, as for /jobs."""
    job = await jobs.get(platform, user, task_id)
    if job.task_type != task_type:
        raise AccessDenied("job")
    return job


@router.get("/sync-task/{task_id}", response_model=Envelope[MarketTaskOut], responses=TASK_ERRORS)
async def get_sync(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(MarketTaskOut.of(await _task(platform, user, task_id, SYNC)))


@router.post(
    "/sync-task/{task_id}/retry",
    status_code=202,
    response_model=Envelope[MarketTaskOut],
    responses=errors(403, 409, 503, denied="job", codes={409: "INVALID_TRANSITION"}),
)
async def retry_sync(task_id: str, user: CurrentUser, platform: PlatformDep):
    await _task(platform, user, task_id, SYNC)
    return ok(MarketTaskOut.of(await jobs.retry(platform, user, task_id)), status=202)


@router.get("/search", response_model=Envelope[list[AssetOut]], responses=PROVIDER_ERRORS)
async def search(
    _user: CurrentUser,
    platform: PlatformDep,
    keyword: str = Query(min_length=1, max_length=64),
    limit: int = Query(10, ge=1, le=50),
):
    return ok(await market.search(platform, keyword, limit))


@router.get("/catalog", response_model=Envelope[list[AssetOut]], responses=PROVIDER_ERRORS)
async def catalog(
    _user: CurrentUser,
    platform: PlatformDep,
    limit: int = Query(100, ge=1, le=200),
    market_name: str | None = Query(None, alias="market"),
    asset_class: str | None = Query(None, alias="assetClass"),
):
    return ok(await market.catalog(platform, limit, market_name, asset_class))


@router.get("/catalog/{symbol}", response_model=Envelope[AssetOut], responses=ASSET_ERRORS)
async def catalog_item(symbol: SymbolPath, _user: CurrentUser, platform: PlatformDep):
    return ok(await market.catalog_item(platform, symbol))


@router.get("/symbols", response_model=Envelope[list[str]], responses=PROVIDER_ERRORS)
async def symbols(_user: CurrentUser, platform: PlatformDep):
    return ok(await market.symbols(platform))


async def _quote(platform, user, symbol: str):
    found, hit = await market.quote(platform, user, symbol)
    answer = {"quote": market.quote_out(found), "metadata": {"cache_hit": hit, "source": platform.market.source}}
    return ok(QuoteAnswerOut.model_validate(answer))


@router.get("/quote/{symbol}", response_model=Envelope[QuoteAnswerOut], responses=QUOTE_ERRORS)
async def quote(symbol: SymbolPath, user: CurrentUser, platform: PlatformDep):
    return await _quote(platform, user, symbol)


@router.get("/latest/{symbol}", response_model=Envelope[QuoteAnswerOut], responses=QUOTE_ERRORS)
async def latest(symbol: SymbolPath, user: CurrentUser, platform: PlatformDep):
    return await _quote(platform, user, symbol)


@router.post("/quotes", response_model=Envelope[BatchQuotesOut], responses=errors(429))
async def batch_quotes(body: QuotesIn, user: CurrentUser, platform: PlatformDep):
    items = await market.quotes(platform, user, body.symbols)
    return ok(BatchQuotesOut(items=items, timestamp=datetime.now(UTC).isoformat()))


@router.get("/provider-health", response_model=Envelope[ProviderHealthOut])
async def provider_health(_user: CurrentUser, platform: PlatformDep):
    return ok(await market.provider_health(platform))


@router.get(
    "/history/{symbol}",
    response_model=Envelope[HistoryOut],
    responses=errors(400, 404, 422, *UPSTREAM, codes={404: "ASSET_NOT_FOUND", 422: "MARKET_RANGE_TOO_LARGE"}),
)
async def history(
    symbol: SymbolPath,
    _user: CurrentUser,
    platform: PlatformDep,
    start_date: date = Query(alias="startDate"),
    end_date: date = Query(alias="endDate"),
    timeframe: str = "1Day",
    limit: int | None = Query(None, ge=1, le=market.MAX_HISTORY_BARS),
):
    candles = await market.history(platform, symbol, start_date, end_date, timeframe, limit)
    return ok(HistoryOut(symbol=symbol.upper(), timeframe=timeframe, source=platform.market.source, candles=candles))


@router.post("/boundary/check", response_model=Envelope[BoundaryCheckOut])
async def boundary_check(body: BoundaryIn, _user: CurrentUser, platform: PlatformDep):
    return ok(await market.boundary_check(platform, body.symbols, body.timeframe))


@router.post(
    "/indicators/calculate-task", status_code=202, response_model=Envelope[MarketTaskOut], responses=TASK_SUBMIT_ERRORS
)
async def submit_indicators(body: IndicatorTaskIn, user: CurrentUser, platform: PlatformDep):
    return await _submit(platform, user, INDICATORS, body)


@router.get("/indicators/calculate-task/{task_id}", response_model=Envelope[MarketTaskOut], responses=TASK_ERRORS)
async def get_indicators(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(MarketTaskOut.of(await _task(platform, user, task_id, INDICATORS)))
