"""Paper trading (reference §2.6): accounts, orders, trades, cash flows and positions, as the front end reads
them. Money, prices and quantities are exact decimals in the ledger and JSON numbers here (front-end contract
§1.7); a request's are read as decimals, so 0.1 is 0.1."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import Field, SecretStr

from domain.market import Symbol
from services.schemas.base import Schema

Side = Literal["BUY", "SELL"]
Broker = Literal["paper", "alpaca"]
OrderStatus = Literal["pending", "filled", "cancelled", "failed"]
FlowType = Literal["deposit", "withdraw", "trade_buy", "trade_sell"]
# Whether a value is > 0 and within the ledger's range is the ledger's to say (400 INVALID_ARGUMENT).
Amount = Decimal
KEY_LENGTH = 128


class AccountIn(Schema):
    account_name: str = Field(min_length=1, max_length=120)
    # A paper account's, recorded as a deposit when positive (a broker account's cash is its cash there).
    initial_capital: Amount | None = None
    slippage_bps: Decimal = Field(default=Decimal(0), ge=0, le=1000)
    # "alpaca": orders go to Alpaca paper trading with these keys, checked now, kept sealed, never shown.
    broker: Broker = "paper"
    api_key: SecretStr | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)
    secret_key: SecretStr | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class AccountUpdateIn(Schema):
    account_name: str | None = Field(default=None, min_length=1, max_length=120)
    is_active: bool | None = None
    slippage_bps: Decimal | None = Field(default=None, ge=0, le=1000)


class AccountOut(Schema):
    id: str
    user_id: str
    account_name: str
    is_active: bool
    slippage_bps: float
    broker: Broker
    created_at: datetime
    updated_at: datetime


class TradeIn(Schema):
    """A buy or sell filled now: at ``price``, or, without one, at the latest quote and the account's slippage.
    A broker account's is sent to the broker: a limit order at ``price``, or a market order."""

    symbol: Symbol
    quantity: Amount
    price: Amount | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class OrderIn(Schema):
    """An order: with a price, a limit order that waits until the market reaches it; without, a market order
    filled now."""

    symbol: Symbol
    side: Side
    quantity: Amount
    price: Amount | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class OrderUpdateIn(Schema):
    """A pending order's new quantity or limit price."""

    quantity: Amount | None = None
    price: Amount | None = None


class FillIn(Schema):
    price: Amount | None = None  # the order's limit price when omitted


class CashIn(Schema):
    amount: Amount
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class OrderOut(Schema):
    id: str
    account_id: str
    user_id: str
    symbol: str
    side: Side
    order_type: Literal["market", "limit"]
    quantity: float
    price: float | None
    status: OrderStatus
    filled_price: float | None
    filled_at: datetime | None
    failure_reason: str | None
    # A broker account's order: Alpaca's id for it and its status there, once sent.
    broker_order_id: str | None
    broker_status: str | None
    created_at: datetime
    updated_at: datetime


class TradeOut(Schema):
    id: str
    account_id: str
    user_id: str
    order_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    realized_pnl: float | None
    created_at: datetime


class CashFlowOut(Schema):
    id: str
    account_id: str
    user_id: str
    amount: float  # signed: withdrawals and buys are negative
    balance_after: float
    flow_type: FlowType
    related_trade_id: str | None
    created_at: datetime


class PositionOut(Schema):
    id: str
    account_id: str
    user_id: str
    symbol: str
    quantity: float
    avg_price: float
    last_price: float | None
    realized_pnl: float
    created_at: datetime
    updated_at: datetime


class FillOut(Schema):
    """What a fill wrote, in one transaction; ``idempotent`` when a repeated key answered it again."""

    order: OrderOut
    trade: TradeOut
    cash_flow: CashFlowOut
    position: PositionOut
    idempotent: bool = False


class OrderPlacedOut(Schema):
    """A new order: filled at once with what the fill wrote, or pending (a limit order, or any order of a
    broker account until the broker fills it)."""

    order: OrderOut
    trade: TradeOut | None = None
    cash_flow: CashFlowOut | None = None
    position: PositionOut | None = None
    idempotent: bool = False


class CashMovedOut(Schema):
    cash_flow: CashFlowOut
    cash_balance: float
    idempotent: bool = False


class OrderDeletedOut(Schema):
    order_id: str


# --- analytics ------------------------------------------------------------------------------------------------


class PositionSummaryOut(Schema):
    position_count: int
    total_market_value: float
    unrealized_pnl: float


class PositionAnalysisOut(Schema):
    symbol: str
    quantity: float
    avg_price: float
    last_price: float  # the latest mark; the average cost until a price has been seen
    market_value: float
    cost_value: float
    unrealized_pnl: float
    unrealized_pnl_ratio: float  # of the cost value
    weight: float  # of the account's market value


class TradeStatsOut(Schema):
    trade_count: int
    turnover: float  # Σ quantity × price over the trades
    buy_count: int
    sell_count: int
    realized_pnl: float


class OverviewOut(Schema):
    account_id: str
    cash_balance: float
    total_market_value: float
    equity: float
    position_count: int
    unrealized_pnl: float
    realized_pnl: float
    order_count: int
    pending_order_count: int
    filled_order_count: int
    cancelled_order_count: int
    failed_order_count: int
    trade_count: int
    turnover: float


class SummaryOut(OverviewOut):
    account_name: str
    is_active: bool
    net_deposits: float  # deposits less withdrawals
    profit_loss: float  # equity less net deposits
    profit_loss_rate: float  # of net deposits (0 without any)


class RiskMetricsOut(Schema):
    account_id: str
    risk_score: float
    risk_level: Literal["low", "medium", "high"]
    exposure_ratio: float  # market value / equity
    leverage: float  # the same ratio, as the reference names it
    pnl_penalty: float
    pending_order_ratio: float
    unrealized_pnl: float
    pending_order_count: int
    evaluated_at: datetime


class RiskAssessmentOut(Schema):
    assessment_id: str
    account_id: str
    risk_score: float
    risk_level: Literal["low", "medium", "high"]
    triggered_rule_ids: list[str]
    evaluated_at: datetime


class EquityPointOut(Schema):
    timestamp: datetime
    cash_balance: float
    market_value: float
    equity: float


class CashFlowSummaryOut(Schema):
    total_inflow: float
    total_outflow: float  # a positive number
    net_flow: float
    flow_count: int


class AggregateOut(Schema):
    user_id: str
    account_count: int
    total_cash_balance: float
    total_market_value: float
    total_unrealized_pnl: float
    total_equity: float
    total_trade_count: int
    total_turnover: float
    pending_order_count: int


class RangeOut(Schema):
    min: float
    max: float
    average: float


class FilterConfigOut(Schema):
    total_accounts: int
    has_positions_count: int
    status_counts: dict[str, int]  # active, inactive
    risk_level_counts: dict[str, int]  # LOW, MEDIUM, HIGH, UNKNOWN (no assessment yet)
    total_assets: RangeOut | None  # equity; None without accounts
    profit_loss: RangeOut | None
    profit_loss_rate: RangeOut | None
    account_type_counts: dict[str, int]


# --- ops (admin) and daily statistics -------------------------------------------------------------------------


class RefreshPricesIn(Schema):
    """Positions marked at these prices (symbol → price), in one account or in all."""

    price_updates: dict[Symbol, Decimal] = Field(max_length=500)
    account_id: str | None = Field(default=None, min_length=1, max_length=36)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class RefreshPricesTaskIn(Schema):
    """A ``trading_refresh_prices`` job: these prices, or without them the latest quote of every symbol held."""

    price_updates: dict[Symbol, Decimal] | None = Field(default=None, max_length=500)
    account_id: str | None = Field(default=None, min_length=1, max_length=36)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class PendingProcessTaskIn(Schema):
    max_trades: int = Field(default=100, ge=1, le=10_000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class DailyStatsTaskIn(Schema):
    account_ids: list[str] | None = Field(default=None, max_length=1_000)
    target_date: date | None = None  # today (UTC) when omitted
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class TradeRequestIn(Schema):
    account_id: str = Field(min_length=1, max_length=36)
    symbol: Symbol
    side: Side
    quantity: Amount
    price: Amount | None = None  # the latest quote and the account's slippage when omitted


class BatchExecuteTaskIn(Schema):
    trade_requests: list[TradeRequestIn] = Field(min_length=1, max_length=500)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class RiskMonitorTaskIn(Schema):
    account_ids: list[str] | None = Field(default=None, max_length=1_000)  # every account when omitted
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class AccountCleanupTaskIn(Schema):
    account_ids: list[str] | None = Field(default=None, max_length=1_000)  # every inactive account when omitted
    days_threshold: int = Field(default=90, ge=1, le=36_500)
    # Absent: 409 CONFIRMATION_REQUIRED gives one, to send back with the same request.
    confirmation_token: str | None = Field(default=None, min_length=1, max_length=128)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=KEY_LENGTH)


class RefreshedOut(Schema):
    updated_positions: int
    prices: dict[str, float]
    idempotent: bool = False


class DailyStatOut(Schema):
    account_id: str
    day: date
    cash_balance: float
    market_value: float
    equity: float
    unrealized_pnl: float
    realized_pnl: float
    trade_count: int  # the day's
    turnover: float  # the day's
    created_at: datetime
