"""A strategy's performance analysis (job ``strategy_performance_analyze``): the strategy backtested over its
last N days, beside buying and holding the same symbol over the same bars and beside its own earlier
backtests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.jobs import activity_error, append_log
from activities.market_data import MarketDataActivities, heartbeating
from db.engine import Database
from db.models import Backtest, Job, Strategy
from db.models.backtests import latest_symbol_config
from domain import backtest as backtests
from domain import metrics as measures
from domain import strategies as strategy_rules
from domain.backtest import BacktestConfig, BarArrays, InsufficientData

EARLIER = 5  # earlier backtests the analysis compares with
SCHEDULED_DAYS = 30  # the daily run's period, the research route's default
MOST_SCHEDULED = 1_000  # strategies the daily run analyses at most


class PerformanceActivities:
    def __init__(self, db: Database, market: MarketDataActivities, default_symbol: str) -> None:
        self._db = db
        self._market = market
        self._default_symbol = default_symbol

    @activity.defn(name="strategy_performance_analyze")
    async def analyze(self, job_id: str) -> dict[str, Any]:
        """One strategy's analysis (its research route's job), or, for the platform's daily schedule (a job
        without a strategy), every active strategy's over the last ``SCHEDULED_DAYS`` days."""
        async with heartbeating("analyzing"):
            async with self._db.reading() as session:
                job = await session.get_one(Job, job_id)
                strategy = (
                    await session.get(Strategy, job.payload["strategyId"]) if "strategyId" in job.payload else None
                )
            if "strategyId" not in job.payload:
                return await self._every_active(job_id)
            if strategy is None or strategy.user_id != job.user_id:
                raise activity_error("STRATEGY_NOT_FOUND", "the strategy was deleted", retryable=False)
            result = await self._analyzed(job_id, strategy, int(job.payload["request"]["analysisPeriodDays"]))
            await append_log(self._db, job_id, _line(result))
            return result

    async def _analyzed(self, job_id: str, strategy: Strategy, days: int) -> dict[str, Any]:
        config = await self._config(strategy, days)
        span = config.span()
        synced = await self._market.sync_symbol(job_id, span.symbol, config.as_sync())
        if synced["status"] != "ok":
            raise activity_error(
                "BACKTEST_HISTORY_UNAVAILABLE", f"no bars for {span.symbol}", retryable=synced["retryable"]
            )
        bars = await self._market.stored_arrays(span.symbol, span.timeframe, config.as_sync(), lambda _: None)
        return await self._analysis(strategy, config, bars, days)

    async def _every_active(self, job_id: str) -> dict[str, Any]:
        """The daily run: each active strategy analysed apart, a failure recorded beside it, never stopping the
        others (at most ``MOST_SCHEDULED``, the least recently analysed first: by their last change)."""
        async with self._db.reading() as session:
            active = list(
                await session.scalars(
                    select(Strategy)
                    .where(Strategy.status == strategy_rules.ACTIVE)
                    .order_by(Strategy.updated_at)
                    .limit(MOST_SCHEDULED)
                )
            )
        items = []
        for strategy in active:
            try:
                found = await self._analyzed(job_id, strategy, SCHEDULED_DAYS)
            except ApplicationError as error:
                items.append({"strategyId": strategy.id, "userId": strategy.user_id, "errorCode": error.type})
                continue
            keep = ("symbol", "excessReturn", "beatsBuyAndHold")
            items.append(
                {
                    "strategyId": strategy.id,
                    "userId": strategy.user_id,
                    "returnRate": found["strategy"]["returnRate"],
                    "buyAndHoldReturn": found["buyAndHold"]["returnRate"],
                    **{key: found[key] for key in keep},
                }
            )
        failed = sum(1 for item in items if "errorCode" in item)
        await append_log(self._db, job_id, f"analysed {len(items) - failed} active strategies, {failed} failed")
        return {"analysisPeriodDays": SCHEDULED_DAYS, "strategyCount": len(items), "failed": failed, "items": items}

    async def _config(self, strategy: Strategy, days: int) -> BacktestConfig:
        """The config of the strategy's latest backtest on a symbol (its costs and sizing), over the last
        ``days`` days up to yesterday."""
        async with self._db.reading() as session:
            base = await latest_symbol_config(session, strategy.id) or {}
        end = datetime.now(UTC).date() - timedelta(days=1)
        return BacktestConfig.model_validate(
            {
                **base,
                "symbol": base.get("symbol", self._default_symbol),
                "startDate": (end - timedelta(days=days)).isoformat(),
                "endDate": end.isoformat(),
            }
        )

    async def _analysis(self, strategy: Strategy, config: BacktestConfig, bars: BarArrays, days: int) -> dict:
        parameters = strategy_rules.validate_parameters(strategy.template, strategy.parameters)
        try:
            ran = backtests.evaluate(bars, strategy.template, parameters, config)
        except InsufficientData as error:
            raise activity_error(
                "BACKTEST_INSUFFICIENT_DATA", f"{error}: analyze a longer period", retryable=False
            ) from None
        held = buy_and_hold(bars, config)
        earlier = await self._earlier(strategy.id)
        returns = [row["returnRate"] for row in earlier if row["returnRate"] is not None]
        span = config.span()
        return {
            "strategyId": strategy.id,
            "analysisPeriodDays": days,
            "symbol": span.symbol,
            "timeframe": span.timeframe,
            "startDate": span.start_date.isoformat(),
            "endDate": span.end_date.isoformat(),
            "barCount": len(bars),
            "strategy": ran.metrics,
            "buyAndHold": held,
            "excessReturn": ran.metrics["returnRate"] - held["returnRate"],
            "beatsBuyAndHold": ran.metrics["returnRate"] > held["returnRate"],
            "earlier": earlier,
            "earlierAverageReturn": float(np.mean(returns)) if returns else None,
        }

    async def _earlier(self, strategy_id: str) -> list[dict[str, Any]]:
        async with self._db.reading() as session:
            rows = (
                await session.execute(
                    select(Backtest.id, Backtest.created_at, Backtest.metrics)
                    .where(Backtest.strategy_id == strategy_id, Backtest.metrics.is_not(None))
                    .order_by(Backtest.created_at.desc())
                    .limit(EARLIER)
                )
            ).all()
        return [
            {
                "backtestId": backtest_id,
                "createdAt": created_at.isoformat(),
                **{key: (found or {}).get(key) for key in ("returnRate", "sharpeRatio", "maxDrawdown")},
            }
            for backtest_id, created_at, found in rows
        ]


def buy_and_hold(bars: BarArrays, config: BacktestConfig) -> dict[str, Any]:
    """The metrics of buying at the first bar's open (paying the config's commission and slippage) and holding
    to the last close: the engine's own accounting with one entry signal and none to exit."""
    entries = np.zeros(len(bars), dtype=bool)
    entries[0] = True  # decided at the first bar, filled at the second's open, as every signal is
    outcome = backtests.engine.run(bars.open, bars.close, entries, np.zeros(len(bars), dtype=bool), config.execution())
    assert config.periods_per_year is not None  # resolved by the validator
    found = measures.summary(outcome.equity, outcome.trade_pnl, outcome.position > 0, config.periods_per_year)
    return {key: None if isinstance(v, float) and not np.isfinite(v) else v for key, v in found.items()}


def _line(result: dict[str, Any]) -> str:
    return (
        f"{result['symbol']} over {result['analysisPeriodDays']} days: return {result['strategy']['returnRate']:.4%}, "
        f"buy-and-hold {result['buyAndHold']['returnRate']:.4%}"
    )
