"""/market/*: market data. Long work (sync) runs as jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import Field, field_validator

from api.deps import CurrentUser, PlatformDep
from api.envelope import ok
from api.routing import api_router
from core.errors import AccessDenied
from domain.market import SYMBOL_PATTERN, Symbol, known_timeframe
from services import jobs, market
from services.views import JobOut, Schema

router = api_router(prefix="/market", tags=["market"])
SYNC = "market_data_sync"
INDICATORS = "market_indicators_calculate"
# A symbol in a path: the same strict pattern as in bodies, so junk is a 422 before any provider sees it.
SymbolPath = Annotated[str, Path(pattern=SYMBOL_PATTERN)]


class SyncTaskIn(Schema):
    symbols: list[Symbol] = Field(min_length=1, max_length=100)
    start_date: date
    end_date: date
    timeframe: str = "1Day"
    idempotency_key: str | None = Field(default=None, max_length=128)


def task_view(job) -> dict:
    """The reference's task shape: ``{taskId, taskType, status, result, error}`` plus the whole job."""
    body = JobOut.of(job)
    return {
        "taskId": body.task_id,
        "taskType": body.task_type,
        "status": body.status,
        "result": body.result,
        "error": body.error,
        "job": body,
    }


async def _submit(platform, user, task_type: str, body: Schema):
    """Start a task job; without an idempotency key every request is a new job."""
    payload = body.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
    key = body.idempotency_key or f"{task_type}-{uuid.uuid4()}"
    job, created = await market.submit_task(platform, user, task_type, payload, key)
    return ok(task_view(job), status=202 if created else 200)


@router.post("/sync-task", status_code=202)
async def submit_sync(body: SyncTaskIn, user: CurrentUser, platform: PlatformDep):
    return await _submit(platform, user, SYNC, body)


async def _task(platform, user, task_id: str, task_type: str):
    """The caller's job of this type; any other id is access denied, as for /jobs."""
    job = await jobs.get(platform, user, task_id)
    if job.task_type != task_type:
        raise AccessDenied("job")
    return job


@router.get("/sync-task/{task_id}")
async def get_sync(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(task_view(await _task(platform, user, task_id, SYNC)))


@router.post("/sync-task/{task_id}/retry", status_code=202)
async def retry_sync(task_id: str, user: CurrentUser, platform: PlatformDep):
    await _task(platform, user, task_id, SYNC)
    return ok(task_view(await jobs.retry(platform, user, task_id)), status=202)


@router.get("/search")
async def search(
    _user: CurrentUser,
    platform: PlatformDep,
    keyword: str = Query(min_length=1, max_length=64),
    limit: int = Query(10, ge=1, le=50),
):
    return ok(await market.search(platform, keyword, limit))


@router.get("/catalog")
async def catalog(
    _user: CurrentUser,
    platform: PlatformDep,
    limit: int = Query(100, ge=1, le=200),
    market_name: str | None = Query(None, alias="market"),
    asset_class: str | None = Query(None, alias="assetClass"),
):
    return ok(await market.catalog(platform, limit, market_name, asset_class))


@router.get("/catalog/{symbol}")
async def catalog_item(symbol: SymbolPath, _user: CurrentUser, platform: PlatformDep):
    return ok(await market.catalog_item(platform, symbol))


@router.get("/symbols")
async def symbols(_user: CurrentUser, platform: PlatformDep):
    return ok(await market.symbols(platform))


async def _quote(platform, user, symbol: str):
    found, hit = await market.quote(platform, user, symbol)
    return ok({"quote": market.quote_view(found), "metadata": {"cacheHit": hit, "source": platform.market.source}})


@router.get("/quote/{symbol}")
async def quote(symbol: SymbolPath, user: CurrentUser, platform: PlatformDep):
    return await _quote(platform, user, symbol)


@router.get("/latest/{symbol}")
async def latest(symbol: SymbolPath, user: CurrentUser, platform: PlatformDep):
    return await _quote(platform, user, symbol)


class QuotesIn(Schema):
    symbols: list[Symbol] = Field(min_length=1, max_length=50)


@router.post("/quotes")
async def batch_quotes(body: QuotesIn, user: CurrentUser, platform: PlatformDep):
    items = await market.quotes(platform, user, body.symbols)
    return ok({"items": items, "timestamp": datetime.now(UTC).isoformat()})


@router.get("/provider-health")
async def provider_health(_user: CurrentUser, platform: PlatformDep):
    return ok(await market.provider_health(platform))


@router.get("/history/{symbol}")
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
    return ok({"symbol": symbol.upper(), "timeframe": timeframe, "source": platform.market.source, "candles": candles})


class BoundaryIn(Schema):
    symbols: list[Symbol] = Field(min_length=1, max_length=1000)
    timeframe: str = "1Day"

    _known_timeframe = field_validator("timeframe")(known_timeframe)


@router.post("/boundary/check")
async def boundary_check(body: BoundaryIn, _user: CurrentUser, platform: PlatformDep):
    return ok(await market.boundary_check(platform, body.symbols, body.timeframe))


class IndicatorTaskIn(Schema):
    symbol: Symbol
    start_date: date
    end_date: date
    timeframe: str = "1Day"
    indicators: list[dict] = Field(min_length=1, max_length=20)
    idempotency_key: str | None = Field(default=None, max_length=128)


@router.post("/indicators/calculate-task", status_code=202)
async def submit_indicators(body: IndicatorTaskIn, user: CurrentUser, platform: PlatformDep):
    return await _submit(platform, user, INDICATORS, body)


@router.get("/indicators/calculate-task/{task_id}")
async def get_indicators(task_id: str, user: CurrentUser, platform: PlatformDep):
    return ok(task_view(await _task(platform, user, task_id, INDICATORS)))
