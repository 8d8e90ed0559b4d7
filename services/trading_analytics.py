"""Paper-trading analytics (reference §2.6), computed from the stored ledger: an account's book (cash, open
positions at their marks, order and trade counts), and what the routes make of it: overview, summary,
position summary and analysis, trade statistics, risk metrics and assessments, the equity curve, cash-flow
summary, and the user's aggregate and filter configuration.

Sums of exact columns are taken here, in decimals (SQLite keeps them as text).
"""

from __future__ import annotations

import statistics
from collections import Counter
from decimal import Decimal

from sqlalchemy import select

from core.errors import AppError
from db.base import utcnow
from db.models import (
    TradingCashFlow,
    TradingRiskAssessment,
    TradingTrade,
    User,
)
from db.models.trading import Book, assess, book_of
from domain import ledger
from services.platform import Platform
from services.schemas.trading import (
    AggregateOut,
    CashFlowSummaryOut,
    EquityPointOut,
    FilterConfigOut,
    OverviewOut,
    PositionAnalysisOut,
    PositionSummaryOut,
    RangeOut,
    RiskAssessmentOut,
    RiskMetricsOut,
    SummaryOut,
    TradeStatsOut,
)
from services.trading import accounts_of, owned_account

# The most points an equity curve answers: the latest ones.
MAX_CURVE_POINTS = 5_000


async def book(platform: Platform, user: User, account_id: str) -> Book:
    async with platform.db.reading() as session:
        return await book_of(session, await owned_account(session, user, account_id))


async def _books(platform: Platform, user: User) -> list[Book]:
    async with platform.db.reading() as session:
        return [await book_of(session, account) for account in await accounts_of(session, user)]


def overview(found: Book) -> OverviewOut:
    return OverviewOut(**_overview_fields(found))


def _overview_fields(found: Book) -> dict:
    return {
        "account_id": found.account.id,
        "cash_balance": found.cash,
        "total_market_value": found.market_value,
        "equity": found.equity,
        "position_count": len(found.positions),
        "unrealized_pnl": found.unrealized_pnl,
        "realized_pnl": found.realized_pnl,
        "order_count": sum(found.orders.values()),
        "pending_order_count": found.orders[ledger.PENDING],
        "filled_order_count": found.orders[ledger.FILLED],
        "cancelled_order_count": found.orders[ledger.CANCELLED],
        "failed_order_count": found.orders[ledger.FAILED],
        "trade_count": found.trade_count,
        "turnover": found.turnover,
    }


def summary(found: Book) -> SummaryOut:
    profit = found.equity - found.net_deposits
    return SummaryOut(
        **_overview_fields(found),
        account_name=found.account.account_name,
        is_active=found.account.is_active,
        net_deposits=found.net_deposits,
        profit_loss=profit,
        profit_loss_rate=ledger.ratio(profit, found.net_deposits),
    )


def position_summary(found: Book) -> PositionSummaryOut:
    return PositionSummaryOut(
        position_count=len(found.positions),
        total_market_value=found.market_value,
        unrealized_pnl=found.unrealized_pnl,
    )


def position_analysis(found: Book) -> list[PositionAnalysisOut]:
    total = found.market_value
    return [
        PositionAnalysisOut(
            symbol=p.symbol,
            quantity=p.quantity,
            avg_price=p.avg_price,
            last_price=p.mark,
            market_value=p.market_value,
            cost_value=p.cost_value,
            unrealized_pnl=p.unrealized_pnl,
            unrealized_pnl_ratio=ledger.ratio(p.unrealized_pnl, p.cost_value),
            weight=ledger.ratio(p.market_value, total),
        )
        for p in found.positions
    ]


def trade_stats(found: Book) -> TradeStatsOut:
    return TradeStatsOut(
        trade_count=found.trade_count,
        turnover=found.turnover,
        buy_count=found.buy_count,
        sell_count=found.trade_count - found.buy_count,
        realized_pnl=found.realized_pnl,
    )


def risk_metrics(found: Book) -> RiskMetricsOut:
    measured = found.risk
    return RiskMetricsOut(
        account_id=found.account.id,
        risk_score=measured.score,
        risk_level=measured.level,
        exposure_ratio=measured.exposure_ratio,
        leverage=measured.exposure_ratio,
        pnl_penalty=measured.pnl_penalty,
        pending_order_ratio=measured.pending_order_ratio,
        unrealized_pnl=found.unrealized_pnl,
        pending_order_count=found.orders[ledger.PENDING],
        evaluated_at=utcnow(),
    )


async def equity_curve(platform: Platform, user: User, account_id: str, limit: int) -> list[EquityPointOut]:
    """One point per cash flow, oldest first (the latest ``limit``): the cash after it, and the positions it
    left valued at each symbol's last trade price so far."""
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        rows = await session.execute(
            select(
                TradingCashFlow.created_at,
                TradingCashFlow.balance_after,
                TradingTrade.symbol,
                TradingTrade.side,
                TradingTrade.quantity,
                TradingTrade.price,
            )
            .outerjoin(TradingTrade, TradingTrade.id == TradingCashFlow.related_trade_id)
            .where(TradingCashFlow.account_id == account_id)
            .order_by(TradingCashFlow.sequence)
        )
        held: dict[str, Decimal] = {}
        marks: dict[str, Decimal] = {}
        points = []
        for at, cash, symbol, side, quantity, price in rows:
            if symbol is not None:
                held[symbol] = held.get(symbol, ledger.ZERO) + (quantity if side == ledger.BUY else -quantity)
                marks[symbol] = price
            value = sum((ledger.exact(q * marks[s]) for s, q in held.items()), ledger.ZERO)
            points.append(EquityPointOut(timestamp=at, cash_balance=cash, market_value=value, equity=cash + value))
    return points[-limit:]


async def cash_flow_summary(platform: Platform, user: User, account_id: str) -> CashFlowSummaryOut:
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        amounts = list(
            await session.scalars(select(TradingCashFlow.amount).where(TradingCashFlow.account_id == account_id))
        )
    inflow = sum((a for a in amounts if a > 0), ledger.ZERO)
    outflow = -sum((a for a in amounts if a < 0), ledger.ZERO)
    return CashFlowSummaryOut(
        total_inflow=inflow, total_outflow=outflow, net_flow=inflow - outflow, flow_count=len(amounts)
    )


async def aggregate(platform: Platform, user: User) -> AggregateOut:
    books = await _books(platform, user)
    return AggregateOut(
        user_id=user.id,
        account_count=len(books),
        total_cash_balance=sum((b.cash for b in books), ledger.ZERO),
        total_market_value=sum((b.market_value for b in books), ledger.ZERO),
        total_unrealized_pnl=sum((b.unrealized_pnl for b in books), ledger.ZERO),
        total_equity=sum((b.equity for b in books), ledger.ZERO),
        total_trade_count=sum(b.trade_count for b in books),
        total_turnover=sum((b.turnover for b in books), ledger.ZERO),
        pending_order_count=sum(b.orders[ledger.PENDING] for b in books),
    )


def _range(values: list[float]) -> RangeOut | None:
    return RangeOut(min=min(values), max=max(values), average=statistics.fmean(values)) if values else None


async def filter_config(platform: Platform, user: User) -> FilterConfigOut:
    """Counts and ranges over the user's accounts for the accounts page's filters; risk levels are those of
    each account's latest assessment (UNKNOWN before its first)."""
    books = await _books(platform, user)
    levels = await _latest_levels(platform, [b.account.id for b in books])
    risk_counts = Counter({"LOW": 0, "MEDIUM": 0, "HIGH": 0, "UNKNOWN": 0})
    for b in books:
        risk_counts[levels.get(b.account.id, "unknown").upper()] += 1
    profits = [b.equity - b.net_deposits for b in books]
    return FilterConfigOut(
        total_accounts=len(books),
        has_positions_count=sum(1 for b in books if b.positions),
        status_counts={
            "active": sum(1 for b in books if b.account.is_active),
            "inactive": sum(1 for b in books if not b.account.is_active),
        },
        risk_level_counts=dict(risk_counts),
        total_assets=_range([float(b.equity) for b in books]),
        profit_loss=_range([float(p) for p in profits]),
        profit_loss_rate=_range([ledger.ratio(p, b.net_deposits) for p, b in zip(profits, books, strict=True)]),
        account_type_counts={"paper": 0, **Counter(b.account.broker for b in books)},
    )


async def _latest_levels(platform: Platform, account_ids: list[str]) -> dict[str, str]:
    if not account_ids:
        return {}
    async with platform.db.reading() as session:
        rows = await session.execute(
            select(TradingRiskAssessment.account_id, TradingRiskAssessment.risk_level)
            .where(TradingRiskAssessment.account_id.in_(account_ids))
            .order_by(TradingRiskAssessment.created_at)
        )
        return {account_id: level for account_id, level in rows}  # the latest of each wins


# --- risk assessments -----------------------------------------------------------------------------------------


class AssessmentPending(AppError):
    """No assessment yet: the reference answers 202 with this code until one is evaluated."""

    status, code = 202, "RISK_ASSESSMENT_PENDING"


def _assessment(row: TradingRiskAssessment) -> RiskAssessmentOut:
    return RiskAssessmentOut(
        assessment_id=row.id,
        account_id=row.account_id,
        risk_score=row.risk_score,
        risk_level=row.risk_level,
        triggered_rule_ids=row.triggered_rule_ids,
        evaluated_at=row.created_at,
    )


async def latest_assessment(platform: Platform, user: User, account_id: str) -> RiskAssessmentOut:
    async with platform.db.reading() as session:
        await owned_account(session, user, account_id)
        row = await session.scalar(
            select(TradingRiskAssessment)
            .where(TradingRiskAssessment.account_id == account_id)
            .order_by(TradingRiskAssessment.created_at.desc())
            .limit(1)
        )
    if row is None:
        raise AssessmentPending("no risk assessment of this account yet: evaluate one")
    return _assessment(row)


async def evaluate_assessment(platform: Platform, user: User, account_id: str) -> RiskAssessmentOut:
    """An assessment of the account now, stored as its latest (see ``db.models.trading.assess``)."""
    async with platform.db.session() as session:
        return _assessment(await assess(session, await owned_account(session, user, account_id)))
