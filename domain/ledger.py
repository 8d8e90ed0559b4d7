"""The paper-trading ledger's rules (reference §2.6), in exact decimals: what a fill does to cash and to a
position, and what it refuses.

A buy pays quantity × price and moves the position's average cost to the weighted average of what it held
and what it bought; a sell receives quantity × price, realizes (price − average cost) × quantity and leaves the
average cost as it was. Cash never goes below zero and no position below zero: a fill that would is refused
and changes nothing. Amounts are rounded to ``SCALE`` once, where they are made, half to even.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from domain import broker
from domain.market import Symbol

# Every stored amount, price and quantity has this many decimal places at most.
PLACES = 8
SCALE = Decimal(1).scaleb(-PLACES)
# The largest magnitude a stored value may reach (NUMERIC(28, 8)).
LIMIT = Decimal(10) ** (28 - PLACES)
ZERO = Decimal(0)

BUY, SELL = "BUY", "SELL"
MARKET, LIMIT_ORDER = "market", "limit"
PENDING, FILLED, CANCELLED, FAILED = "pending", "filled", "cancelled", "failed"
DEPOSIT, WITHDRAW, TRADE_BUY, TRADE_SELL = "deposit", "withdraw", "trade_buy", "trade_sell"


class LedgerError(Exception):
    code = "INVALID_ARGUMENT"


class InvalidAmount(LedgerError):
    """A quantity, price or amount that is not a positive finite number within the ledger's range."""


class InsufficientFunds(LedgerError):
    code = "INSUFFICIENT_FUNDS"


class InsufficientPosition(LedgerError):
    code = "INSUFFICIENT_POSITION"


def exact(value: Decimal | int | str) -> Decimal:
    """``value`` rounded to the ledger's scale."""
    return Decimal(value).quantize(SCALE, rounding=ROUND_HALF_EVEN)


def positive(value: Decimal, name: str) -> Decimal:
    """A quantity, price or amount given by a caller: finite, > 0 once rounded, within the ledger's range."""
    try:
        rounded = exact(value)
    except (InvalidOperation, ValueError):
        raise InvalidAmount(f"{name} must be a number") from None
    if not rounded.is_finite() or rounded <= 0:
        raise InvalidAmount(f"{name} must be greater than 0")
    if rounded >= LIMIT:
        raise InvalidAmount(f"{name} must be less than {LIMIT:,}")
    return rounded


@dataclass(frozen=True)
class Holding:
    """A position as the ledger keeps it: zero quantity when flat."""

    quantity: Decimal = ZERO
    avg_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO


@dataclass(frozen=True)
class Fill:
    """What a fill writes: the cash flow's signed amount and type, the position after it, and the profit the
    trade realized (sells only)."""

    amount: Decimal
    flow_type: str
    holding: Holding
    realized_pnl: Decimal | None


def fill(side: str, quantity: Decimal, price: Decimal, holding: Holding, cash: Decimal) -> Fill:
    """A buy or sell of ``quantity`` at ``price`` against the account's cash and its position in the symbol."""
    quantity, price = positive(quantity, "quantity"), positive(price, "price")
    value = exact(quantity * price)
    if side == BUY:
        if value > cash:
            raise InsufficientFunds(f"the order costs {value} and the account holds {cash}")
        held = holding.quantity + quantity
        average = exact((holding.quantity * holding.avg_price + value) / held)
        after = Holding(held, average, holding.realized_pnl)
        return Fill(-value, TRADE_BUY, after, None)
    if side != SELL:
        raise InvalidAmount(f"side must be {BUY} or {SELL}")
    if quantity > holding.quantity:
        raise InsufficientPosition(f"the order sells {quantity} and the account holds {holding.quantity}")
    realized = exact((price - holding.avg_price) * quantity)
    held = holding.quantity - quantity
    after = Holding(held, holding.avg_price if held else ZERO, holding.realized_pnl + realized)
    return Fill(value, TRADE_SELL, after, realized)


def withdrawal(amount: Decimal, cash: Decimal) -> Decimal:
    """The signed flow of a withdrawal, refused beyond the cash held."""
    amount = positive(amount, "amount")
    if amount > cash:
        raise InsufficientFunds(f"the withdrawal is {amount} and the account holds {cash}")
    return -amount


def slipped(side: str, quote: Decimal, slippage_bps: Decimal) -> Decimal:
    """A market order's price: the quote moved against the trader by the account's slippage."""
    move = quote * slippage_bps / Decimal(10_000)
    return exact(quote + move if side == BUY else quote - move)


def crosses(side: str, limit: Decimal, market: Decimal) -> bool:
    """Whether the market has reached a limit order's price: at or below it for a buy, at or above for a sell."""
    return market <= limit if side == BUY else market >= limit


# --- a broker's order, ended -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settlement:
    """What a terminal order writes: a fill (``quantity`` at ``price``), or the order ``cancelled``/``failed``."""

    outcome: str  # FILLED, CANCELLED or FAILED
    quantity: Decimal | None = None
    price: Decimal | None = None
    reason: str | None = None


def settlement(state: broker.BrokerOrderState, ordered: Decimal) -> Settlement:
    """The ledger's side of a terminal order of ``ordered`` shares."""
    filled = Decimal(state.filled_quantity)
    if filled > 0 and state.filled_avg_price is not None:
        reason = None
        if filled < ordered:
            part = f"{filled.normalize():f} of {ordered.normalize():f}"
            reason = f"partially filled: {part}, then {state.status} at the broker"
        return Settlement(FILLED, filled, Decimal(state.filled_avg_price), reason)
    if state.status == broker.NOT_SENT:
        return Settlement(CANCELLED, reason="cancelled before it was sent to the broker")
    if state.status in (broker.CANCELED, broker.EXPIRED, broker.REPLACED):
        return Settlement(CANCELLED, reason=f"{state.status} at the broker")
    why = state.reason or f"{state.status} by the broker"
    return Settlement(FAILED, reason=why[:200])


# --- what the analytics read ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Marked:
    """An open position at its mark: the last price seen, its average cost until a price has been seen."""

    symbol: str
    quantity: Decimal
    avg_price: Decimal
    last_price: Decimal | None

    @property
    def mark(self) -> Decimal:
        return self.last_price if self.last_price is not None else self.avg_price

    @property
    def market_value(self) -> Decimal:
        return exact(self.quantity * self.mark)

    @property
    def cost_value(self) -> Decimal:
        return exact(self.quantity * self.avg_price)

    @property
    def unrealized_pnl(self) -> Decimal:
        return self.market_value - self.cost_value


def ratio(part: Decimal, whole: Decimal) -> float:
    """part / whole as a float; 0 when the whole is not positive."""
    return float(part / whole) if whole > 0 else 0.0


# The reference's risk score: exposure weighs 60, unrealized losses 30, pending orders 10; out of 100.
LOW_BELOW, HIGH_FROM = 30, 70


@dataclass(frozen=True)
class Risk:
    score: float
    level: str
    exposure_ratio: float  # market value / equity
    pnl_penalty: float  # unrealized loss / equity, at most 1
    pending_order_ratio: float  # pending orders / orders


def risk(equity: Decimal, market_value: Decimal, unrealized: Decimal, pending: int, orders: int) -> Risk:
    """riskScore = min(100, exposureRatio·60 + pnlPenalty·30 + pendingOrderRatio·10), and its level: low below
    30, high from 70, medium between."""
    exposure = ratio(market_value, equity)
    penalty = min(1.0, ratio(max(-unrealized, ZERO), equity))
    pending_ratio = pending / orders if orders else 0.0
    score = round(min(100.0, exposure * 60 + penalty * 30 + pending_ratio * 10), 4)
    level = "low" if score < LOW_BELOW else "high" if score >= HIGH_FROM else "medium"
    return Risk(score, level, exposure, penalty, pending_ratio)


def holdings_after(trades: Iterable[tuple[str, str, Decimal, Decimal]]) -> dict[str, Holding]:
    """Each symbol's holding after ``(symbol, side, quantity, price)`` trades in the order they filled, as the
    ledger moved it (each was checked when it filled, so none is refused here)."""
    held: dict[str, Holding] = {}
    for symbol, side, quantity, price in trades:
        held[symbol] = fill(side, quantity, price, held.get(symbol, Holding()), LIMIT).holding
    return held


# --- the ledger's jobs' payloads ------------------------------------------------------------------------------


class _Payload(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False)


MAX_SYMBOLS_PER_REFRESH = 500
Price = Annotated[Decimal, Field(gt=0, lt=LIMIT)]
MAX_ACCOUNTS_PER_JOB = 1_000


class RefreshPricesPayload(_Payload):
    """``trading_refresh_prices``: positions marked at the given prices, or at the provider's latest quotes
    for every symbol held; in one account or in all."""

    price_updates: dict[Symbol, Price] | None = Field(default=None, max_length=MAX_SYMBOLS_PER_REFRESH)
    account_id: str | None = Field(default=None, min_length=1, max_length=36)


class PendingProcessPayload(_Payload):
    """``trading_pending_process``: pending limit orders, oldest first, filled where the market reached them."""

    max_trades: int = Field(default=100, ge=1, le=10_000)


class DailyStatsPayload(_Payload):
    """``trading_daily_stats_calculate``: each account's book at the end of ``target_date`` (today by default)."""

    account_ids: list[str] | None = Field(default=None, max_length=MAX_ACCOUNTS_PER_JOB)
    target_date: date | None = None


class TradeRequest(_Payload):
    """One trade of a batch: at ``price``, or without one at the latest quote and the account's slippage."""

    account_id: str = Field(min_length=1, max_length=36)
    symbol: Symbol
    side: Literal["BUY", "SELL"]
    quantity: Price
    price: Price | None = None


MAX_BATCH_TRADES = 500


class BatchExecutePayload(_Payload):
    """``trading_batch_execute``: trades on any accounts, each filled (or failed, with why) in its account's
    transaction, in the order given."""

    trade_requests: list[TradeRequest] = Field(min_length=1, max_length=MAX_BATCH_TRADES)


class RiskMonitorPayload(_Payload):
    """``trading_risk_monitor``: a risk assessment of each account named, or of every account."""

    account_ids: list[str] | None = Field(default=None, max_length=MAX_ACCOUNTS_PER_JOB)


class AccountCleanupPayload(_Payload):
    """``trading_account_cleanup``: inactive accounts (of those named, or all) without activity for
    ``days_threshold`` days, deleted with their ledger."""

    account_ids: list[str] | None = Field(default=None, max_length=MAX_ACCOUNTS_PER_JOB)
    days_threshold: int = Field(default=90, ge=1, le=36_500)
