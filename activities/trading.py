"""The paper ledger's jobs: ``trading_refresh_prices``, ``trading_pending_process``,
``trading_daily_stats_calculate``, ``trading_batch_execute`` and ``trading_risk_monitor``, each the one
activity of its job's JobWorkflowV2 (job id in, result out).

They run for an admin's request or a system schedule, over every account or the ones named. Each account's
writes are one transaction under its row lock, like the API's, so a job run again after a lost worker repeats
nothing that committed: a filled order is no longer pending, a mark or a day's statistics are written over.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.client import Client

from activities.jobs import append_log, job_payload
from core.errors import AppError
from core.settings import Settings
from db.engine import Database
from db.models import (
    TradingAccount,
    TradingCashFlow,
    TradingDailyStat,
    TradingOrder,
    TradingPosition,
    TradingTrade,
)
from db.models.trading import assess, fill, mark_positions
from domain import broker, ledger
from integrations.market_data import MarketDataProvider
from workflows.dispatch import follow_order

P = TypeVar("P", bound=BaseModel)
log = logging.getLogger(__name__)
# A broker order younger than this may still be having its workflow started by the API that wrote it.
LOST_START_GRACE = timedelta(seconds=10)
MAX_FOLLOWED_PER_RUN = 1_000


class TradingActivities:
    def __init__(self, db: Database, market: MarketDataProvider, temporal: Client, settings: Settings) -> None:
        self._db = db
        self._market = market
        self._temporal = temporal
        self._settings = settings

    @activity.defn(name="trading_refresh_prices")
    async def refresh_prices(self, job_id: str) -> dict[str, Any]:
        """Positions marked at the payload's prices, or at the latest quote of each symbol held."""
        payload = await self._payload(job_id, ledger.RefreshPricesPayload)
        prices: dict[str, Decimal]
        failed: dict[str, str] = {}
        if payload.price_updates is not None:
            prices = dict(payload.price_updates)
        else:
            prices, failed = await self._quotes(await self._held_symbols(payload.account_id))
        marked = await mark_positions(self._db, prices, payload.account_id)
        await append_log(self._db, job_id, f"marked {marked} positions in {len(prices)} symbols")
        return {
            "updatedPositions": marked,
            "prices": {symbol: float(price) for symbol, price in sorted(prices.items())},
            "failedSymbols": failed,
        }

    @activity.defn(name="trading_pending_process")
    async def process_pending(self, job_id: str) -> dict[str, Any]:
        """Pending limit orders of paper accounts, oldest first, filled at their limit price where the latest quote
        reached it; an order the account can no longer pay for (or hold) fails with the reason. A broker
        account's pending order whose workflow is not running (its start was lost) has it started again."""
        payload = await self._payload(job_id, ledger.PendingProcessPayload)
        async with self._db.reading() as session:
            pending = list(
                await session.scalars(
                    select(TradingOrder)
                    .join(TradingAccount, TradingAccount.id == TradingOrder.account_id)
                    .where(
                        TradingOrder.status == ledger.PENDING,
                        TradingOrder.price.is_not(None),
                        TradingAccount.broker == broker.PAPER,
                    )
                    .order_by(TradingOrder.created_at, TradingOrder.id)
                    .limit(payload.max_trades)
                )
            )
        quotes, failed = await self._quotes({order.symbol for order in pending})
        outcomes: dict[str, int] = defaultdict(int)
        for order in pending:
            market = quotes.get(order.symbol)
            if market is None or order.price is None or not ledger.crosses(order.side, order.price, market):
                outcomes["waiting"] += 1
                continue
            outcomes[await self._filled(order.id, order.account_id, market)] += 1
            activity.heartbeat(dict(outcomes))
        await append_log(self._db, job_id, f"{len(pending)} pending orders: {dict(outcomes)}")
        followed = await self._follow_broker_orders()
        return {
            "processed": len(pending),
            **{k: outcomes[k] for k in ("filled", "failed", "waiting", "skipped")},
            "failedSymbols": failed,
            "brokerOrdersFollowed": followed,
        }

    async def _follow_broker_orders(self) -> int:
        """Every pending order of a broker account older than a moment, its workflow started where it is not
        running (a running one is kept); how many were."""
        before = datetime.now(UTC) - LOST_START_GRACE
        async with self._db.reading() as session:
            rows = (
                await session.execute(
                    select(TradingOrder.id, TradingOrder.user_id)
                    .join(TradingAccount, TradingAccount.id == TradingOrder.account_id)
                    .where(
                        TradingOrder.status == ledger.PENDING,
                        TradingAccount.broker != broker.PAPER,
                        TradingOrder.created_at < before,
                    )
                    .order_by(TradingOrder.created_at)
                    .limit(MAX_FOLLOWED_PER_RUN)
                )
            ).all()
        followed = 0
        for order_id, user_id in rows:
            try:
                await follow_order(self._temporal, self._settings, order_id, user_id)
                followed += 1
            except Exception:  # this order's workflow is tried again on the next run; the others go on
                log.warning("could not start the workflow of broker order %s", order_id, exc_info=True)
            activity.heartbeat(f"{followed} broker orders followed")
        return followed

    async def _filled(self, order_id: str, account_id: str, market: Decimal) -> str:
        """The order filled at its limit price in one transaction under its account's lock: "filled"; "failed"
        when the ledger refuses it (written as the order's reason); "skipped" when, read again under the lock,
        it is no longer pending, its price (changed meanwhile) is no longer reached, or its account is inactive."""
        async with self._db.session() as session:
            account = await session.get(TradingAccount, account_id, with_for_update=True)
            order = await session.get(TradingOrder, order_id, with_for_update=True)
            if account is None or not account.is_active or order is None or order.status != ledger.PENDING:
                return "skipped"
            if order.price is None or not ledger.crosses(order.side, order.price, market):
                return "skipped"
            try:
                await fill(session, account, order, order.price)
                return "filled"
            except ledger.LedgerError as error:  # refused before it wrote anything
                order.status, order.failure_reason = ledger.FAILED, f"{error.code}: {error}"[:200]
                return "failed"

    @activity.defn(name="trading_daily_stats_calculate")
    async def daily_stats(self, job_id: str) -> dict[str, Any]:
        """Each account's book at the end of the target day (now, for today), stored over any earlier one."""
        payload = await self._payload(job_id, ledger.DailyStatsPayload)
        today = datetime.now(UTC).date()
        day = payload.target_date or today
        account_ids = await self._account_ids(payload.account_ids)
        for number, account_id in enumerate(account_ids, 1):
            async with self._db.session() as session:
                await _store_day(session, account_id, day, live=day >= today)
            activity.heartbeat(f"{number} of {len(account_ids)} accounts")
        await append_log(self._db, job_id, f"daily statistics of {day} for {len(account_ids)} accounts")
        return {"targetDate": day.isoformat(), "accounts": len(account_ids)}

    @activity.defn(name="trading_batch_execute")
    async def batch_execute(self, job_id: str) -> dict[str, Any]:
        """Each trade of the batch in its own transaction under its account's lock, in the order given. Its
        order's id is derived from the job and its place in the batch, so a run again after a lost worker skips
        the trades an earlier run wrote and answers them as they ended."""
        payload = await self._payload(job_id, ledger.BatchExecutePayload)
        requests = payload.trade_requests
        quotes, _ = await self._quotes({r.symbol for r in requests if r.price is None})
        results = []
        for index, request in enumerate(requests):
            order_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"quantpoly:{job_id}:{index}"))
            results.append({"index": index, **await self._executed(order_id, request, quotes.get(request.symbol))})
            activity.heartbeat(f"{index + 1} of {len(requests)} trades")
        filled = sum(1 for r in results if r["status"] == ledger.FILLED)
        await append_log(self._db, job_id, f"{filled} of {len(requests)} trades filled")
        return {"requested": len(requests), "filled": filled, "failed": len(requests) - filled, "results": results}

    async def _executed(self, order_id: str, request: ledger.TradeRequest, quote: Decimal | None) -> dict[str, Any]:
        async with self._db.session() as session:
            earlier = await session.get(TradingOrder, order_id)
            if earlier is not None:
                return _order_result(earlier)
            account = await session.get(TradingAccount, request.account_id, with_for_update=True)
            if account is None:
                return {"orderId": None, "status": ledger.FAILED, "errorCode": "ACCOUNT_NOT_FOUND"}
            if not account.is_active:
                return {"orderId": None, "status": ledger.FAILED, "errorCode": "ACCOUNT_INACTIVE"}
            if account.broker != broker.PAPER:  # its orders are the broker's to fill
                return {"orderId": None, "status": ledger.FAILED, "errorCode": "BROKER_ACCOUNT"}
            price = request.price
            if price is None:
                if quote is None:
                    return {"orderId": None, "status": ledger.FAILED, "errorCode": "QUOTE_UNAVAILABLE"}
                price = ledger.slipped(request.side, quote, account.slippage_bps)
            order = TradingOrder(
                id=order_id,
                account_id=account.id,
                user_id=account.user_id,
                symbol=request.symbol,
                side=request.side,
                order_type=ledger.MARKET if request.price is None else ledger.LIMIT_ORDER,
                quantity=ledger.exact(request.quantity),
                price=None if request.price is None else ledger.exact(request.price),
                status=ledger.PENDING,
            )
            session.add(order)
            await session.flush()
            try:
                await fill(session, account, order, price)
            except ledger.LedgerError as error:  # refused before it wrote anything: kept as a failed order
                order.status, order.failure_reason = ledger.FAILED, f"{error.code}: {error}"[:200]
            return _order_result(order)

    @activity.defn(name="trading_risk_monitor")
    async def risk_monitor(self, job_id: str) -> dict[str, Any]:
        """A risk assessment of each account named (or of every account), stored as its latest."""
        payload = await self._payload(job_id, ledger.RiskMonitorPayload)
        account_ids = await self._account_ids(payload.account_ids)
        levels: Counter[str] = Counter()
        high = []
        for number, account_id in enumerate(account_ids, 1):
            async with self._db.session() as session:
                account = await session.get(TradingAccount, account_id)
                if account is None:
                    continue
                assessed = await assess(session, account)
            levels[assessed.risk_level] += 1
            if assessed.risk_level == "high":
                high.append(account_id)
            activity.heartbeat(f"{number} of {len(account_ids)} accounts")
        await append_log(self._db, job_id, f"assessed {sum(levels.values())} accounts: {dict(levels)}")
        return {"assessed": sum(levels.values()), "levels": dict(levels), "highRiskAccountIds": high}

    @activity.defn(name="trading_account_cleanup")
    async def account_cleanup(self, job_id: str) -> dict[str, Any]:
        """Inactive accounts (of those named, or all) whose ledger has not moved for ``days_threshold`` days,
        each deleted with its ledger in one transaction under its lock (checked again there)."""
        payload = await self._payload(job_id, ledger.AccountCleanupPayload)
        before = datetime.now(UTC) - timedelta(days=payload.days_threshold)
        deleted = []
        account_ids = await self._account_ids(payload.account_ids)
        for account_id in account_ids:
            async with self._db.session() as session:
                account = await session.get(TradingAccount, account_id, with_for_update=True)
                if account is None or account.is_active or await _last_activity(session, account) >= before:
                    continue
                await session.delete(account)
            deleted.append(account_id)
        await append_log(self._db, job_id, f"deleted {len(deleted)} of {len(account_ids)} accounts")
        return {"deleted": deleted, "kept": len(account_ids) - len(deleted), "daysThreshold": payload.days_threshold}

    # --- shared -----------------------------------------------------------------------------------------------

    async def _account_ids(self, wanted: list[str] | None) -> list[str]:
        """The accounts named that exist, or every account."""
        async with self._db.reading() as session:
            query = select(TradingAccount.id)
            if wanted is not None:
                query = query.where(TradingAccount.id.in_(wanted))
            return list(await session.scalars(query.order_by(TradingAccount.id)))

    async def _payload(self, job_id: str, model: type[P]) -> P:
        return (await job_payload(self._db, job_id, model))[1]

    async def _held_symbols(self, account_id: str | None) -> set[str]:
        async with self._db.reading() as session:
            query = select(TradingPosition.symbol, TradingPosition.quantity)
            if account_id is not None:
                query = query.where(TradingPosition.account_id == account_id)
            return {symbol for symbol, quantity in await session.execute(query) if quantity > 0}

    async def _quotes(self, symbols: set[str]) -> tuple[dict[str, Decimal], dict[str, str]]:
        """The latest price of each symbol, and the code of each the provider could not quote."""
        prices: dict[str, Decimal] = {}
        failed: dict[str, str] = {}
        for symbol in sorted(symbols)[: ledger.MAX_SYMBOLS_PER_REFRESH]:
            try:
                quote = await asyncio.to_thread(self._market.quote, symbol)
            except AppError as error:
                failed[symbol] = error.code
                continue
            prices[symbol] = ledger.exact(Decimal(str(quote.price)))
        return prices, failed


async def _last_activity(session: AsyncSession, account: TradingAccount) -> datetime:
    """When the account last changed: itself, an order or a cash flow."""
    moments = [account.updated_at]
    for column, owner in (
        (TradingOrder.updated_at, TradingOrder.account_id),
        (TradingCashFlow.created_at, TradingCashFlow.account_id),
    ):
        latest = await session.scalar(select(func.max(column)).where(owner == account.id))
        if latest is not None:
            moments.append(latest)
    return max(moments)


def _order_result(order: TradingOrder) -> dict[str, Any]:
    code = order.failure_reason.split(":", 1)[0] if order.failure_reason else None
    return {"orderId": order.id, "status": order.status, "errorCode": code}


async def _store_day(session: AsyncSession, account_id: str, day: date, *, live: bool) -> None:
    """The account's book at the end of ``day`` replayed from its ledger: cash after the day's last flow,
    holdings after its trades at the cost the ledger gave them, marked at each symbol's last trade price that
    day or before (today's: the positions' current marks, price refreshes included)."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    end = start + timedelta(days=1)
    cash = await session.scalar(
        select(TradingCashFlow.balance_after)
        .where(TradingCashFlow.account_id == account_id, TradingCashFlow.created_at < end)
        .order_by(TradingCashFlow.sequence.desc())
        .limit(1)
    )
    trades = (
        await session.execute(
            select(
                TradingTrade.symbol,
                TradingTrade.side,
                TradingTrade.quantity,
                TradingTrade.price,
                TradingTrade.created_at,
            )
            .where(TradingTrade.account_id == account_id, TradingTrade.created_at < end)
            .order_by(TradingTrade.created_at, TradingTrade.id)
        )
    ).all()
    holdings = ledger.holdings_after((symbol, side, quantity, price) for symbol, side, quantity, price, _ in trades)
    marks = {symbol: price for symbol, _, _, price, _ in trades}
    if live:
        current = await session.execute(
            select(TradingPosition.symbol, TradingPosition.last_price).where(TradingPosition.account_id == account_id)
        )
        marks.update({symbol: price for symbol, price in current if price is not None})
    open_ = [ledger.Marked(s, h.quantity, h.avg_price, marks.get(s)) for s, h in holdings.items() if h.quantity > 0]
    market_value = sum((p.market_value for p in open_), ledger.ZERO)
    todays = [(quantity, price) for _, _, quantity, price, at in trades if at >= start]
    stat = TradingDailyStat(
        account_id=account_id,
        day=day,
        user_id=await session.scalar(select(TradingAccount.user_id).where(TradingAccount.id == account_id)),
        cash_balance=cash if cash is not None else ledger.ZERO,
        market_value=market_value,
        equity=(cash if cash is not None else ledger.ZERO) + market_value,
        unrealized_pnl=sum((p.unrealized_pnl for p in open_), ledger.ZERO),
        realized_pnl=sum((h.realized_pnl for h in holdings.values()), ledger.ZERO),
        trade_count=len(todays),
        turnover=sum((ledger.exact(q * p) for q, p in todays), ledger.ZERO),
        created_at=datetime.now(UTC),
    )
    await session.merge(stat)
