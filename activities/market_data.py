"""The market_data_sync task: fetch what the bar store lacks, symbols in parallel, resumable."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, Table, bindparam, func, select, type_coerce
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import NullType
from temporalio import activity

from activities.jobs import activity_error, append_log, set_progress
from core.errors import AppError
from core.settings import Settings
from db.engine import Database
from db.models import Job, MarketBar, MarketSyncCoverage
from domain.backtest import BarArrays
from domain.indicators import calculate
from domain.market import (
    MAX_BARS,
    RANGE_TOO_LARGE,
    IndicatorsRequest,
    Span,
    SyncRequest,
    merge_spans,
    missing_spans,
)
from integrations.market_data import MarketDataProvider

INSERT_CHUNK = 1000
READ_PAGE = 20_000  # bars per query when reading a range for the engine: a heartbeat between pages
SETTLE_TIME = timedelta(days=1)
KEPT_BARS = 2_000_000  # bars a worker process keeps for the engine (24 bytes each: about 48 MB)


class KeptArrays:
    """Ranges of bars a worker process has read for the engine, the least recently used dropped first, within
    a budget of bars. A range is kept under its bar count: stored bars are only ever added (a bar is written
    once per source, never updated), so a range that holds as many bars as when it was read holds the same
    ones."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._kept: OrderedDict[tuple[Any, ...], BarArrays] = OrderedDict()
        self._bars = 0

    def get(self, key: tuple[Any, ...]) -> BarArrays | None:
        arrays = self._kept.get(key)
        if arrays is not None:
            self._kept.move_to_end(key)
        return arrays

    def keep(self, key: tuple[Any, ...], arrays: BarArrays) -> None:
        if len(arrays) > self._budget or key in self._kept:
            return
        for array in (arrays.timestamps, arrays.open, arrays.close):
            array.flags.writeable = False  # shared by every run that reads the range
        self._kept[key] = arrays
        self._bars += len(arrays)
        while self._bars > self._budget:
            _, dropped = self._kept.popitem(last=False)
            self._bars -= len(dropped)


class MarketDataActivities:
    def __init__(self, db: Database, provider: MarketDataProvider, settings: Settings) -> None:
        self._db = db
        self._provider = provider
        self._parallelism = settings.market_sync_parallelism
        self._max_bars = settings.market_max_bars_per_request
        self._kept = KeptArrays(KEPT_BARS)

    @activity.defn(name="market_data_sync")
    async def sync(self, job_id: str) -> dict[str, Any]:
        request = await self._request(job_id)
        # Symbols finished by an earlier attempt (a killed worker) are not fetched again.
        done: dict[str, dict[str, Any]] = (
            dict(activity.info().heartbeat_details[0]) if activity.info().heartbeat_details else {}
        )
        if done:
            await append_log(
                self._db, job_id, f"resuming: {len(done)} of {len(request.symbols)} symbols already synced"
            )
        gate = asyncio.Semaphore(self._parallelism)

        async def one(symbol: str) -> None:
            async with gate:
                done[symbol] = await self.sync_symbol(job_id, symbol, request)
            activity.heartbeat(done)
            await set_progress(self._db, job_id, len(done) / len(request.symbols))

        async with heartbeating(done):
            await asyncio.gather(*(one(s) for s in request.symbols if s not in done))
        items = [done[s] for s in request.symbols]
        failures = [i for i in items if i["status"] != "ok"]
        if len(failures) == len(items):
            first = failures[0]
            raise activity_error(
                first["errorCode"], f"no symbol could be synced ({first['symbol']})", retryable=first["retryable"]
            )
        summary = {
            "totalSymbols": len(items),
            "successCount": len(items) - len(failures),
            "failureCount": len(failures),
            "rowCount": sum(i.get("rowCount", 0) for i in items),
            "fetchedCount": sum(i.get("fetchedCount", 0) for i in items),
            "timeframe": request.timeframe,
            "source": self._provider.source,
        }
        return {"summary": summary, "items": items}

    @activity.defn(name="market_indicators_calculate")
    async def indicators(self, job_id: str) -> dict[str, Any]:
        """Bars through the store (syncing what is missing), then every requested indicator."""
        request = await self._request(job_id, IndicatorsRequest)
        item = await self.sync_symbol(job_id, request.symbol, request.as_sync())
        if item["status"] != "ok":
            raise activity_error(item["errorCode"], f"no bars for {request.symbol}", retryable=item["retryable"])
        bars = await self.stored_bars(request.symbol, request.timeframe, request.as_sync())
        results = await asyncio.to_thread(_calculate_all, request, bars)
        await append_log(
            self._db, job_id, f"{request.symbol}: {len(results)} indicators over {len(bars)} {request.timeframe} bars"
        )
        return {
            "symbol": request.symbol,
            "timeframe": request.timeframe,
            "startDate": request.start_date.isoformat(),
            "endDate": request.end_date.isoformat(),
            "source": self._provider.source,
            "dataPoints": len(bars),
            "indicators": results,
        }

    async def stored_bars(self, symbol: str, timeframe: str, request: SyncRequest) -> pd.DataFrame:
        """The stored bars of one symbol in the request's range, in time order."""
        async with self._db.session() as session:
            rows = await session.execute(
                select(MarketBar.timestamp, MarketBar.open, MarketBar.high, MarketBar.low, MarketBar.close)
                .where(
                    MarketBar.symbol == symbol,
                    MarketBar.timeframe == timeframe,
                    MarketBar.source == self._provider.source,
                    MarketBar.timestamp >= request.start,
                    MarketBar.timestamp <= request.end,
                )
                .order_by(MarketBar.timestamp)
            )
            return pd.DataFrame(rows.all(), columns=["timestamp", "open", "high", "low", "close"])

    async def _request(self, job_id: str, model: type[BaseModel] = SyncRequest) -> Any:
        async with self._db.session() as session:
            job = await session.get_one(Job, job_id)
        try:
            # The bound is checked again here: a job may come from a route that did not know it.
            return model.model_validate(job.payload, context={MAX_BARS: self._max_bars})
        except ValidationError as error:
            too_large = [e["msg"] for e in error.errors() if e["type"] == RANGE_TOO_LARGE]
            if too_large:
                raise activity_error("MARKET_RANGE_TOO_LARGE", too_large[0], retryable=False) from None
            raise activity_error("INVALID_ARGUMENT", str(error), retryable=False) from None

    async def sync_symbol(
        self,
        job_id: str,
        symbol: str,
        request: SyncRequest,
        *,
        lines: list[str] | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Fetch and store what the store lacks of one symbol's range; an item of the sync summary.

        Its log line goes to ``lines`` when given (the caller writes it with its own transaction), else to
        the job's log at once. ``on_progress`` hears of each fetch and each stored chunk as it happens."""
        started = time.perf_counter()
        try:
            before, gaps = await self._missing_ranges(symbol, request)
            frames = []
            for a, b in gaps:
                if on_progress:
                    on_progress(f"fetching {symbol} {a:%Y-%m-%d}..{b:%Y-%m-%d}")
                frames.append(await asyncio.to_thread(self._provider.bars, symbol, request.timeframe, a, b))
            fetched = sum(len(f) for f in frames)
            stored = 0
            if gaps:
                await self._store(symbol, request.timeframe, frames, gaps, on_progress)
                # Counted, not taken from the driver: rowcounts of multi-row inserts differ between databases.
                stored = await self.stored_count(symbol, request) - before
        except AppError as error:
            await append_log(self._db, job_id, f"{symbol}: {error.code} {error.message}", level="error")
            retryable = bool(getattr(error, "retryable", False))
            return {"symbol": symbol, "status": "error", "errorCode": error.code, "retryable": retryable}
        line = self._sync_line(symbol, request, gaps, fetched, stored, before + stored, started)
        if lines is None:
            await append_log(self._db, job_id, line)
        else:
            lines.append(line)
        return {
            "symbol": symbol,
            "status": "ok",
            "rowCount": before + stored,
            "fetchedCount": fetched,
            "storedCount": stored,
        }

    async def stored_if_covered(
        self, session: AsyncSession, symbol: str, request: SyncRequest, lines: list[str]
    ) -> int | None:
        """In the caller's transaction: when the store already covers the request's range, the bars stored in
        it (and ``sync_symbol``'s log line to ``lines``); else None, and ``sync_symbol`` fetches what lacks."""
        started = time.perf_counter()
        covered, count = await self._covered_and_counted(session, symbol, request)
        wanted = (request.start, min(request.end, datetime.now(UTC)))
        if wanted[0] < wanted[1] and missing_spans(wanted, covered):
            return None
        lines.append(self._sync_line(symbol, request, [], 0, 0, count, started))
        return count

    def _sync_line(
        self, symbol: str, request: SyncRequest, gaps: list[Span], fetched: int, stored: int, total: int, started: float
    ) -> str:
        elapsed_ms = round((time.perf_counter() - started) * 1000)
        ranges = ", ".join(f"{a:%Y-%m-%d}..{b:%Y-%m-%d}" for a, b in gaps) or "nothing missing"
        return (
            f"{symbol}: fetched {fetched} {request.timeframe} bars from {self._provider.source} ({ranges}) "
            f"in {elapsed_ms} ms, stored {stored}, {total} in range"
        )

    async def stored_arrays(
        self,
        symbol: str,
        timeframe: str,
        request: SyncRequest,
        on_progress: Callable[[int], None],
        count: int | None = None,
    ) -> BarArrays:
        """The stored bars of one symbol in the request's range, in time order, as the engine's arrays. Given
        the ``count`` of bars the range holds (as the caller's transaction counted them), a range this process
        has read with as many bars is not read again; otherwise read in pages, each one reported to
        ``on_progress`` (bars read so far)."""
        key = (self._provider.source, symbol, timeframe, request.start, request.end)
        kept = self._kept.get((*key, count)) if count is not None else None
        if kept is not None:
            return kept
        arrays = await self._read_arrays(symbol, timeframe, request, on_progress)
        self._kept.keep((*key, len(arrays)), arrays)
        return arrays

    async def _read_arrays(
        self, symbol: str, timeframe: str, request: SyncRequest, on_progress: Callable[[int], None]
    ) -> BarArrays:
        stamp = _utc_text(MarketBar.timestamp, self._db.engine.dialect.name)
        pages: list[BarArrays] = []
        after: datetime | None = None  # the last timestamp read: the next page starts after it
        while True:
            since = MarketBar.timestamp >= request.start if after is None else MarketBar.timestamp > after
            async with self._db.reading() as session:
                rows = (
                    await session.execute(
                        select(stamp, MarketBar.open, MarketBar.close)
                        .where(
                            MarketBar.symbol == symbol,
                            MarketBar.timeframe == timeframe,
                            MarketBar.source == self._provider.source,
                            since,
                            MarketBar.timestamp <= request.end,
                        )
                        .order_by(MarketBar.timestamp)
                        .limit(READ_PAGE)
                    )
                ).all()
            pages.append(_arrays(rows))
            on_progress(sum(len(page) for page in pages))
            if len(rows) < READ_PAGE:
                return pages[0] if len(pages) == 1 else BarArrays.joined(pages)
            after = pd.Timestamp(pages[-1].timestamps[-1]).tz_localize(UTC).to_pydatetime()

    async def _missing_ranges(self, symbol: str, request: SyncRequest) -> tuple[int, list[Span]]:
        """Rows already stored in the range, and the parts of the range never fetched (holes included).

        Nothing after now is asked for: no provider has those bars yet."""
        async with self._db.reading() as session:
            covered, count = await self._covered_and_counted(session, symbol, request)
        wanted = (request.start, min(request.end, datetime.now(UTC)))
        gaps = missing_spans(wanted, covered) if wanted[0] < wanted[1] else []
        return count, gaps

    async def stored_count(self, symbol: str, request: SyncRequest) -> int:
        """Bars of the symbol stored in the request's range (what ``stored_arrays`` takes as its ``count``)."""
        async with self._db.reading() as session:
            return await self._counted(session, symbol, request)

    async def _counted(self, session, symbol: str, request: SyncRequest) -> int:
        connection = await session.connection()
        return (await connection.execute(_BAR_COUNT, self._range(symbol, request))).scalar_one()

    def _range(self, symbol: str, request: SyncRequest) -> dict[str, Any]:
        """The bound values of _BAR_COUNT and _COVERED_AND_COUNTED."""
        source = self._provider.source
        return dict(symbol=symbol, timeframe=request.timeframe, source=source, start=request.start, end=request.end)

    async def _covered_and_counted(
        self, session: AsyncSession, symbol: str, request: SyncRequest
    ) -> tuple[list[Span], int]:
        """The ranges already fetched for the symbol and the bars stored in the request's range, in one query
        (each row of coverage carries the count)."""
        connection = await session.connection()
        rows = (await connection.execute(_COVERED_AND_COUNTED, self._range(symbol, request))).all()
        if not rows:  # no coverage: counted on its own (a sync killed before it recorded its range stored some)
            return [], await self._counted(session, symbol, request)
        return [(_aware(start), _aware(end)) for start, end, _ in rows], rows[0][2]

    async def _store(
        self,
        symbol: str,
        timeframe: str,
        frames: list[pd.DataFrame],
        fetched: list[Span],
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Bars and the coverage they prove, in one transaction: a killed worker leaves neither half."""
        rows = [
            {**record, "symbol": symbol, "timeframe": timeframe, "source": self._provider.source}
            for frame in frames
            for record in frame.to_dict("records")
        ]
        async with self._db.session() as session:
            insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
            for offset in range(0, len(rows), INSERT_CHUNK):
                chunk = rows[offset : offset + INSERT_CHUNK]
                # The key (symbol, timeframe, timestamp, source) makes a repeated or resumed sync harmless.
                await session.execute(insert(MarketBar).values(chunk).on_conflict_do_nothing())
                if on_progress:
                    on_progress(f"storing {symbol}: {offset + len(chunk)} of {len(rows)} bars")
            await self._cover(session, symbol, timeframe, fetched)

    async def _cover(self, session, symbol: str, timeframe: str, fetched: list[Span]) -> None:
        # Bars of the current period may still change: only ranges that ended a day ago count as covered.
        settled = datetime.now(UTC) - SETTLE_TIME
        fetched = [(a, min(b, settled)) for a, b in fetched if a < settled]
        if not fetched:
            return
        key = (symbol, timeframe, self._provider.source)
        existing = list(await session.scalars(_coverage_of(*key)))
        spans = merge_spans([(_aware(c.start), _aware(c.end)) for c in existing] + fetched)
        for row in existing:
            await session.delete(row)
        await session.flush()
        session.add_all(
            MarketSyncCoverage(symbol=symbol, timeframe=timeframe, source=self._provider.source, start=a, end=b)
            for a, b in spans
        )


def _calculate_all(request: IndicatorsRequest, bars: pd.DataFrame) -> list[dict[str, Any]]:
    """Each indicator's status, parameters, latest values and series (NaN warm-up as null)."""
    close, high, low = bars["close"].to_numpy(float), bars["high"].to_numpy(float), bars["low"].to_numpy(float)
    stamps = [_aware(t).isoformat() for t in bars["timestamp"]]
    results: list[dict[str, Any]] = []
    for spec in request.indicators:
        try:
            result = calculate(spec.name, close, high=high, low=low, **spec.params())
        except ValueError as error:
            results.append({"name": spec.name, "status": "invalid_parameters", "error": str(error)})
            continue
        series = {key: [None if np.isnan(v) else float(v) for v in values] for key, values in result.values.items()}
        results.append(
            {
                "name": result.name,
                "status": result.status,
                "params": result.params,
                "metadata": {
                    "requiredDataPoints": result.required_data_points,
                    "actualDataPoints": result.actual_data_points,
                },
                "latest": {key: values[-1] for key, values in series.items()} if series else None,
                "series": [
                    {"timestamp": stamp, **{key: values[i] for key, values in series.items()}}
                    for i, stamp in enumerate(stamps)
                ]
                if series
                else [],
            }
        )
    return results


@asynccontextmanager
async def heartbeating(details: Any) -> AsyncIterator[None]:
    """Heartbeat ``details`` while the block runs, so that only a dead worker misses its heartbeat deadline,
    however long one step (a slow fetch, a large query) takes."""
    timeout = activity.info().heartbeat_timeout
    interval = timeout.total_seconds() / 3 if timeout else 10.0

    async def beat() -> None:
        while True:
            activity.heartbeat(details)
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


def _utc_text(column: Any, dialect: str) -> Any:
    """A timestamp column as the text of its naive UTC time ("2024-01-02 15:30:00.000000" from SQLite,
    "2024-01-02T15:30:00.000000" from PostgreSQL), which numpy parses in bulk: reading a range's bars as
    datetimes cost a Python object, and a conversion, per bar."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS.US')
    return type_coerce(column, NullType())  # SQLite stores that text: the driver's value as it is


def _arrays(rows: Sequence[Any]) -> BarArrays:
    """Rows of (UTC time as text, open, close) as the engine's arrays."""
    stamps = np.array([row[0] for row in rows], dtype="datetime64[ns]")
    open_ = np.fromiter((row[1] for row in rows), dtype=float, count=len(rows))
    close = np.fromiter((row[2] for row in rows), dtype=float, count=len(rows))
    return BarArrays(stamps, open_, close)


# Every backtest's claim runs _COVERED_AND_COUNTED: built once, on the tables, with bound values.
_BARS, _COVERAGE = cast(Table, MarketBar.__table__), cast(Table, MarketSyncCoverage.__table__)
_BAR_COUNT = select(func.count()).where(
    _BARS.c.symbol == bindparam("symbol"),
    _BARS.c.timeframe == bindparam("timeframe"),
    _BARS.c.source == bindparam("source"),
    _BARS.c.timestamp >= bindparam("start"),
    _BARS.c.timestamp <= bindparam("end"),
)
_COVERED_AND_COUNTED = select(_COVERAGE.c.start, _COVERAGE.c.end, _BAR_COUNT.scalar_subquery()).where(
    _COVERAGE.c.symbol == bindparam("symbol"),
    _COVERAGE.c.timeframe == bindparam("timeframe"),
    _COVERAGE.c.source == bindparam("source"),
)


def _coverage_of(symbol: str, timeframe: str, source: str) -> Select[MarketSyncCoverage]:
    return select(MarketSyncCoverage).where(
        MarketSyncCoverage.symbol == symbol,
        MarketSyncCoverage.timeframe == timeframe,
        MarketSyncCoverage.source == source,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
