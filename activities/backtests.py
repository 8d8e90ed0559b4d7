"""The two steps of a backtest's workflow: bars through the market-data store, then the engine."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError
from temporalio import activity

from activities.jobs import activity_error, append_log, set_progress
from activities.market_data import MarketDataActivities, heartbeating
from core.settings import Settings
from db.engine import Database
from db.models import Backtest, Job
from domain import backtest as backtests
from domain import jobs as job_states
from domain.backtest import BacktestConfig, InsufficientData
from workflows.backtest import LOAD_BARS_ACTIVITY, RUN_ACTIVITY


class BacktestActivities:
    def __init__(self, db: Database, market: MarketDataActivities, settings: Settings) -> None:
        self._db = db
        self._market = market
        self._engines = ThreadPoolExecutor(settings.worker_engine_threads, thread_name_prefix="engine")

    @activity.defn(name=LOAD_BARS_ACTIVITY)
    async def load_bars(self, job_id: str) -> dict[str, Any]:
        """Sync what the store lacks of the backtest's range, and check there are bars enough to trade."""
        async with heartbeating("loading bars"):
            return await self._load_bars(job_id)

    async def _load_bars(self, job_id: str) -> dict[str, Any]:
        backtest, config = await self._backtest(job_id)
        bars = len(config.prices) if config.prices is not None else await self._synced(job_id, config)
        needed = backtests.minimum_bars(backtest.template, backtest.parameters)
        if bars < needed:
            raise activity_error(
                "BACKTEST_INSUFFICIENT_DATA",
                f"{bars} {config.timeframe} bars of {config.symbol} in range; {backtest.template} needs {needed}",
                retryable=False,
            )
        if bars > backtests.MAX_BARS:
            raise activity_error(
                "BACKTEST_INVALID_CONFIG",
                f"{bars} bars in range, at most {backtests.MAX_BARS}: shorten the range or use a longer timeframe",
                retryable=False,
            )
        await set_progress(self._db, job_id, 0.4)
        return {"backtestId": backtest.id, "barCount": bars}

    async def _synced(self, job_id: str, config: BacktestConfig) -> int:
        """Bars of the config's range in the store, after syncing what it lacked."""
        item = await self._market.sync_symbol(job_id, config.symbol, config.as_sync())
        if item["status"] != "ok":
            raise activity_error(
                "BACKTEST_HISTORY_UNAVAILABLE",
                f"no bars for {config.symbol} ({item['errorCode']})",
                retryable=item["retryable"],
            )
        return item["rowCount"]

    @activity.defn(name=RUN_ACTIVITY)
    async def run(self, job_id: str) -> dict[str, Any]:
        """The engine over the stored bars; the result is stored before the job can succeed."""
        async with heartbeating("running"):
            return await self._run(job_id)

    async def _run(self, job_id: str) -> dict[str, Any]:
        backtest, config = await self._backtest(job_id)
        bars = config.inline_bars()  # an inline series replaces the provider's bars, never mixes with them
        if bars is None:
            bars = await self._market.stored_bars(config.symbol, config.timeframe, config.as_sync())
        await set_progress(self._db, job_id, 0.5)
        try:
            computed = await asyncio.get_running_loop().run_in_executor(
                self._engines, backtests.run, bars, backtest.template, backtest.parameters, config
            )
        except InsufficientData as error:
            raise activity_error("BACKTEST_INSUFFICIENT_DATA", str(error), retryable=False) from None
        await set_progress(self._db, job_id, 0.8)
        body = {
            "taskId": backtest.id,
            "strategyId": backtest.strategy_id,
            "template": backtest.template,
            "parameters": backtest.parameters,
            "symbol": config.symbol,
            "timeframe": config.timeframe,
            "startDate": config.start_date.isoformat(),
            "endDate": config.end_date.isoformat(),
            "config": backtest.config,
            **computed,
        }
        await self._store(backtest.id, job_id, body)
        await set_progress(self._db, job_id, 0.95)
        metrics = computed["metrics"]
        await append_log(
            self._db,
            job_id,
            f"{config.symbol} {backtest.template}: {len(bars)} bars, {metrics['tradeCount']} trades, "
            f"return {metrics['returnRate']:.4%}",
        )
        return {"backtestId": backtest.id, "metrics": metrics}

    async def _backtest(self, job_id: str) -> tuple[Backtest, BacktestConfig]:
        async with self._db.session() as session:
            job = await session.get(Job, job_id)
            backtest = await session.get(Backtest, job.payload["backtestId"])
        if backtest is None:
            raise activity_error("BACKTEST_NOT_FOUND", "the backtest was deleted", retryable=False)
        try:
            return backtest, BacktestConfig.model_validate(backtest.config)
        except ValidationError as error:
            raise activity_error("BACKTEST_INVALID_CONFIG", str(error), retryable=False) from None

    async def _store(self, backtest_id: str, job_id: str, body: dict[str, Any]) -> None:
        async with self._db.session() as session:
            job = await session.get(Job, job_id, with_for_update=True)
            backtest = await session.get(Backtest, backtest_id, with_for_update=True)
            # Only the backtest's current run, still running: not one cancelled meanwhile or superseded by a retry.
            if backtest is not None and backtest.job_id == job_id and job.status == job_states.RUNNING:
                backtest.result, backtest.metrics = body, body["metrics"]
