"""The paper-trading ledger (reference §2.6): accounts, positions, orders, trades and cash flows.

Cash is the sum of an account's cash flows; each flow also carries the balance after it and a sequence number
unique in its account, so the balance is one indexed read and two writers can never both append the same
next flow. Every write to an account runs under its row's lock (on SQLite, the transaction's write lock).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, Exact, IdMixin, TimestampMixin, UTCDateTime, utcnow
from domain import ledger
from domain.broker import PAPER

if TYPE_CHECKING:
    from db.engine import Database


class TradingAccount(IdMixin, TimestampMixin, Base):
    __tablename__ = "trading_accounts"
    __table_args__ = (Index("ix_trading_accounts_user_id_created_at", "user_id", "created_at"),)

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    account_name: Mapped[str] = mapped_column(String(120))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Basis points added to a market buy's quote and taken from a market sell's.
    slippage_bps: Mapped[Decimal] = mapped_column(Exact(), default=ledger.ZERO)
    # "paper" fills in the ledger; "alpaca" sends orders to Alpaca paper trading with the owner's keys, sealed
    # here (core.security.SecretBox) and never shown.
    broker: Mapped[str] = mapped_column(String(16), default=PAPER, server_default=PAPER)
    broker_credentials: Mapped[str | None] = mapped_column(Text, nullable=True)


class TradingPosition(IdMixin, TimestampMixin, Base):
    """An account's holding of a symbol; it stays, at quantity 0, once sold off (its realized profit with it)."""

    __tablename__ = "trading_positions"
    __table_args__ = (UniqueConstraint("account_id", "symbol"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36))
    symbol: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[Decimal] = mapped_column(Exact())
    avg_price: Mapped[Decimal] = mapped_column(Exact())
    # The latest mark (a fill's price or a price refresh); None until the first.
    last_price: Mapped[Decimal | None] = mapped_column(Exact(), nullable=True)
    realized_pnl: Mapped[Decimal] = mapped_column(Exact(), default=ledger.ZERO)


class TradingOrder(IdMixin, TimestampMixin, Base):
    __tablename__ = "trading_orders"
    __table_args__ = (
        Index("ix_trading_orders_account_id_created_at", "account_id", "created_at"),
        Index("ix_trading_orders_status", "status"),
    )

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(8), default=ledger.LIMIT_ORDER)
    quantity: Mapped[Decimal] = mapped_column(Exact())
    # The limit price (a market order's fill price once filled).
    price: Mapped[Decimal | None] = mapped_column(Exact(), nullable=True)
    status: Mapped[str] = mapped_column(String(12), default=ledger.PENDING)
    filled_price: Mapped[Decimal | None] = mapped_column(Exact(), nullable=True)
    filled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    failure_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # A broker account's order: Alpaca's id and last status for it (its client_order_id is our id).
    broker_order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    broker_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # What it was checked at when placed (its limit, or the quote): what a pending broker buy holds back.
    estimated_price: Mapped[Decimal | None] = mapped_column(Exact(), nullable=True)


class TradingTrade(IdMixin, Base):
    __tablename__ = "trading_trades"
    __table_args__ = (Index("ix_trading_trades_account_id_created_at", "account_id", "created_at"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36))
    order_id: Mapped[str] = mapped_column(ForeignKey("trading_orders.id", ondelete="CASCADE"), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal] = mapped_column(Exact())
    price: Mapped[Decimal] = mapped_column(Exact())
    realized_pnl: Mapped[Decimal | None] = mapped_column(Exact(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TradingCashFlow(IdMixin, Base):
    __tablename__ = "trading_cash_flows"
    __table_args__ = (UniqueConstraint("account_id", "sequence"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36))
    sequence: Mapped[int] = mapped_column(Integer)  # 1, 2, ... in the account
    amount: Mapped[Decimal] = mapped_column(Exact())  # signed: withdrawals and buys are negative
    balance_after: Mapped[Decimal] = mapped_column(Exact())
    flow_type: Mapped[str] = mapped_column(String(16))
    related_trade_id: Mapped[str | None] = mapped_column(
        ForeignKey("trading_trades.id", ondelete="CASCADE"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TradingRequest(Base):
    """An idempotency key's first answer: a repeat with the same body gets it again, another body a 409."""

    __tablename__ = "trading_requests"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(120), primary_key=True)  # the route and its account
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the request's body
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TradingRiskAssessment(IdMixin, Base):
    """An account's risk evaluated at a moment: the routes show the latest; none until one is asked for."""

    __tablename__ = "trading_risk_assessments"
    __table_args__ = (Index("ix_trading_risk_assessments_account_id_created_at", "account_id", "created_at"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(36))
    risk_score: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[str] = mapped_column(String(8))
    triggered_rule_ids: Mapped[list[str]] = mapped_column(JSON)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)  # the risk metrics it was computed from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TradingConfirmation(IdMixin, Base):
    """A single-use confirmation of a destructive ops request, bound to the admin who asked, the action and
    its target (a digest of what it would touch), valid for a few minutes. Only its token's digest is kept."""

    __tablename__ = "trading_confirmations"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TradingDailyStat(Base):
    """An account's day as ``trading_daily_stats_calculate`` stored it: its book at the day's end."""

    __tablename__ = "trading_daily_stats"

    account_id: Mapped[str] = mapped_column(ForeignKey("trading_accounts.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(36), index=True)
    cash_balance: Mapped[Decimal] = mapped_column(Exact())
    market_value: Mapped[Decimal] = mapped_column(Exact())
    equity: Mapped[Decimal] = mapped_column(Exact())
    unrealized_pnl: Mapped[Decimal] = mapped_column(Exact())
    realized_pnl: Mapped[Decimal] = mapped_column(Exact())
    trade_count: Mapped[int] = mapped_column(Integer)  # trades of the day
    turnover: Mapped[Decimal] = mapped_column(Exact())  # of the day's trades
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- the ledger's writes, shared by the API's services and the worker's activities ---------------------------
# Each runs in its caller's transaction, which holds the account's lock.


async def _last_flow(session: AsyncSession, account_id: str) -> TradingCashFlow | None:
    return await session.scalar(
        select(TradingCashFlow)
        .where(TradingCashFlow.account_id == account_id)
        .order_by(TradingCashFlow.sequence.desc())
        .limit(1)
    )


async def cash_balance(session: AsyncSession, account_id: str) -> Decimal:
    """The sum of the account's cash flows: the balance after its last one."""
    last = await _last_flow(session, account_id)
    return last.balance_after if last else ledger.ZERO


async def append_flow(
    session: AsyncSession, account: TradingAccount, amount: Decimal, flow_type: str, trade_id: str | None = None
) -> TradingCashFlow:
    """The account's next cash flow."""
    return await _next_flow(session, account, await _last_flow(session, account.id), amount, flow_type, trade_id)


async def _next_flow(
    session: AsyncSession,
    account: TradingAccount,
    last: TradingCashFlow | None,
    amount: Decimal,
    flow_type: str,
    trade_id: str | None,
) -> TradingCashFlow:
    """The flow after ``last``, the account's latest."""
    flow = TradingCashFlow(
        account_id=account.id,
        user_id=account.user_id,
        sequence=(last.sequence if last else 0) + 1,
        amount=amount,
        balance_after=(last.balance_after if last else ledger.ZERO) + amount,
        flow_type=flow_type,
        related_trade_id=trade_id,
        created_at=utcnow(),
    )
    session.add(flow)
    await session.flush()
    return flow


async def position_of(session: AsyncSession, account: TradingAccount, symbol: str) -> TradingPosition:
    """The account's position in the symbol; a new flat one, not yet added to the session, if it has none."""
    position = await session.scalar(
        select(TradingPosition).where(TradingPosition.account_id == account.id, TradingPosition.symbol == symbol)
    )
    if position is None:
        position = TradingPosition(
            account_id=account.id,
            user_id=account.user_id,
            symbol=symbol,
            quantity=ledger.ZERO,
            avg_price=ledger.ZERO,
            realized_pnl=ledger.ZERO,
        )
    return position


async def _planned(
    session: AsyncSession,
    account: TradingAccount,
    side: str,
    symbol: str,
    quantity: Decimal,
    price: Decimal,
    held_cash: Decimal = ledger.ZERO,
    held_quantity: Decimal = ledger.ZERO,
) -> tuple[TradingPosition, TradingCashFlow | None, ledger.Fill]:
    """What a fill would write, against the account's position and its latest cash flow, less what is held
    back of each; the ledger's refusal (``ledger.LedgerError``) if it would overdraw either."""
    position = await position_of(session, account, symbol)
    holding = ledger.Holding(position.quantity - held_quantity, position.avg_price, position.realized_pnl)
    last = await _last_flow(session, account.id)
    cash = (last.balance_after if last else ledger.ZERO) - held_cash
    return position, last, ledger.fill(side, quantity, price, holding, cash)


async def affordable(
    session: AsyncSession, account: TradingAccount, side: str, symbol: str, quantity: Decimal, price: Decimal
) -> None:
    """Refused (``ledger.LedgerError``) if a fill at ``price`` would overdraw the account's cash or position,
    once the account's pending orders have filled at the prices they were placed at (a broker account's: the
    broker may fill them all)."""
    pending = await session.execute(
        select(TradingOrder.side, TradingOrder.symbol, TradingOrder.quantity, TradingOrder.estimated_price).where(
            TradingOrder.account_id == account.id, TradingOrder.status == ledger.PENDING
        )
    )
    held_cash, held_quantity = ledger.ZERO, ledger.ZERO
    for each_side, each_symbol, each_quantity, each_price in pending:
        if each_side == ledger.BUY and each_price is not None:
            held_cash += ledger.exact(each_quantity * each_price)
        elif each_side == ledger.SELL and each_symbol == symbol:
            held_quantity += each_quantity
    await _planned(session, account, side, symbol, quantity, price, held_cash, held_quantity)


@dataclass(frozen=True)
class Filled:
    order: TradingOrder
    trade: TradingTrade
    flow: TradingCashFlow
    position: TradingPosition


async def fill(session: AsyncSession, account: TradingAccount, order: TradingOrder, price: Decimal) -> Filled:
    """The order filled at ``price``: its trade, its cash flow and the position moved, after the ledger's checks
    against the account's cash and holding. Refused (``ledger.LedgerError``), it has written nothing."""
    position, last, done = await _planned(session, account, order.side, order.symbol, order.quantity, price)
    session.add(position)
    now = utcnow()
    order.status, order.filled_price, order.filled_at = ledger.FILLED, ledger.exact(price), now
    if order.price is None:
        order.price = order.filled_price
    trade = TradingTrade(
        account_id=account.id,
        user_id=account.user_id,
        order_id=order.id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        price=order.filled_price,
        realized_pnl=done.realized_pnl,
        created_at=now,
    )
    session.add(trade)
    await session.flush()
    flow = await _next_flow(session, account, last, done.amount, done.flow_type, trade.id)
    position.quantity, position.avg_price = done.holding.quantity, done.holding.avg_price
    position.realized_pnl, position.last_price = done.holding.realized_pnl, order.filled_price
    await session.flush()
    return Filled(order, trade, flow, position)


async def mark_positions(db: Database, prices: dict[str, Decimal], account_id: str | None) -> int:
    """Every open position in these symbols (in one account, or in all) marked at its price, one account per
    transaction under its lock; how many were marked."""
    if not prices:
        return 0
    async with db.reading() as session:
        query = select(TradingPosition.account_id).where(TradingPosition.symbol.in_(list(prices)))
        if account_id is not None:
            query = query.where(TradingPosition.account_id == account_id)
        account_ids = sorted(set(await session.scalars(query)))
    marked = 0
    for each in account_ids:
        async with db.session() as session:
            if await session.get(TradingAccount, each, with_for_update=True) is None:
                continue  # deleted meanwhile
            positions = await session.scalars(
                select(TradingPosition).where(
                    TradingPosition.account_id == each, TradingPosition.symbol.in_(list(prices))
                )
            )
            for position in positions:
                if position.quantity > 0:
                    position.last_price = prices[position.symbol]
                    marked += 1
    return marked


# --- what the API's analytics and the worker's tasks both read -----------------------------------------------


@dataclass(frozen=True)
class Book:
    """An account as the analytics read it."""

    account: TradingAccount
    cash: Decimal
    positions: list[ledger.Marked]  # open ones, by symbol
    realized_pnl: Decimal
    orders: Counter[str]  # by status
    trade_count: int
    buy_count: int
    turnover: Decimal
    net_deposits: Decimal

    @property
    def market_value(self) -> Decimal:
        return sum((p.market_value for p in self.positions), ledger.ZERO)

    @property
    def unrealized_pnl(self) -> Decimal:
        return sum((p.unrealized_pnl for p in self.positions), ledger.ZERO)

    @property
    def equity(self) -> Decimal:
        return self.cash + self.market_value

    @property
    def risk(self) -> ledger.Risk:
        return ledger.risk(
            self.equity,
            self.market_value,
            self.unrealized_pnl,
            self.orders[ledger.PENDING],
            sum(self.orders.values()),
        )


async def book_of(session: AsyncSession, account: TradingAccount) -> Book:
    """The account's book as stored now (sums taken here, in decimals)."""
    positions = list(
        await session.scalars(
            select(TradingPosition).where(TradingPosition.account_id == account.id).order_by(TradingPosition.symbol)
        )
    )
    statuses = await session.execute(
        select(TradingOrder.status, func.count())
        .where(TradingOrder.account_id == account.id)
        .group_by(TradingOrder.status)
    )
    trades = (
        await session.execute(
            select(TradingTrade.side, TradingTrade.quantity, TradingTrade.price).where(
                TradingTrade.account_id == account.id
            )
        )
    ).all()
    moved = await session.scalars(
        select(TradingCashFlow.amount).where(
            TradingCashFlow.account_id == account.id,
            TradingCashFlow.flow_type.in_((ledger.DEPOSIT, ledger.WITHDRAW)),
        )
    )
    return Book(
        account=account,
        cash=await cash_balance(session, account.id),
        positions=[ledger.Marked(p.symbol, p.quantity, p.avg_price, p.last_price) for p in positions if p.quantity > 0],
        realized_pnl=sum((p.realized_pnl for p in positions), ledger.ZERO),
        orders=Counter({status: count for status, count in statuses}),
        trade_count=len(trades),
        buy_count=sum(1 for side, _, _ in trades if side == ledger.BUY),
        turnover=sum((ledger.exact(quantity * price) for _, quantity, price in trades), ledger.ZERO),
        net_deposits=sum(moved, ledger.ZERO),
    )


async def assess(session: AsyncSession, account: TradingAccount) -> TradingRiskAssessment:
    """The account's risk assessed now from its book, stored as its latest. No risk rule applies to paper
    accounts yet, so none is triggered."""
    found = await book_of(session, account)
    measured = found.risk
    row = TradingRiskAssessment(
        account_id=account.id,
        user_id=account.user_id,
        risk_score=measured.score,
        risk_level=measured.level,
        triggered_rule_ids=[],
        metrics={
            "exposureRatio": measured.exposure_ratio,
            "pnlPenalty": measured.pnl_penalty,
            "pendingOrderRatio": measured.pending_order_ratio,
            "unrealizedPnl": float(found.unrealized_pnl),
            "equity": float(found.equity),
        },
        created_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row
